from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from geotl.cli.main import cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert "geotl" in result.output


def test_input_error_is_one_line_exit_2(tmp_path: Path) -> None:
    region = tmp_path / "bad.toml"
    region.write_text(
        'name = "x"\nclasses = ["a"]\nbogus = 1\n[imagery]\npaths=["*.tif"]\nbands=["red"]\n'
    )
    result = CliRunner().invoke(cli, ["chip", str(region), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "bad.toml" in lines[0] and "bogus" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["train", "r.toml", "--out", "o", "--max-labels", "0"], "'--max-labels': 0 is not in"),
        (["predict", "m", "s.tif", "-o", "x.geojson", "--frob"], "No such option '--frob'"),
        (["frob"], "No such command 'frob'"),
        (["monitor", "status"], "Missing argument 'REGION.toml'"),
    ],
)
def test_a_mistyped_command_line_is_one_line_exit_2(args: list[str], said: str) -> None:
    # click printed four lines (usage, hint, blank, error): the QGIS plugin and a cron mail
    # show only one
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("geotl: error: "), result.output
    assert said in lines[0] and "--help says more" in lines[0]
    # asking for help by giving nothing still shows it
    assert "Usage:" in CliRunner().invoke(cli, []).output


def test_verbose_may_follow_the_command(tmp_path: Path) -> None:
    """`geotl chip REGION -v` shows the traceback as `geotl -v chip REGION` does."""
    missing = str(tmp_path / "missing.toml")
    for args in (["-v", "chip", missing], ["chip", missing, "-v"], ["chip", "-v", missing]):
        result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" in result.output and "region file not found" in result.output
    quiet = CliRunner().invoke(cli, ["chip", missing, "--out", str(tmp_path / "o"), "-q"])
    assert quiet.exit_code == 2 and "Traceback" not in quiet.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "{model}", "{region}"],
        ["predict", "{model}", "{scene}", "-o", "{tmp}/p.geojson"],
        ["suggest", "{model}", "{region}"],
        ["monitor", "{region}", "--model", "{model}"],
        ["run", "{region}", "--out", "{out}"],
    ],
)
def test_device_cuda_without_cuda_is_refused_before_any_work(
    args: list[str], demo_model: Path, tmp_path: Path
) -> None:
    repo = Path(__file__).resolve().parents[2]
    region = tmp_path / "demo.toml"
    region.write_text(
        (repo / "regions" / "demo-osbs.toml")
        .read_text()
        .replace('"demo-osbs/', f'"{repo}/regions/demo-osbs/')
    )
    out = tmp_path / "out"
    values = {"model": demo_model, "region": region, "out": out, "tmp": tmp_path,
              "scene": repo / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"}  # fmt: skip
    result = CliRunner().invoke(cli, [a.format(**values) for a in args] + ["--device", "cuda"])
    assert result.exit_code == 2, result.output
    assert "no CUDA device is available: use --device cpu" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["demo.toml"]


def test_log_lines_carry_their_time_in_a_log_file_not_for_the_qgis_plugin(tmp_path: Path) -> None:
    import re

    repo = Path(__file__).resolve().parents[2]
    region = tmp_path / "demo.toml"  # a stride beyond the chip: a warning to log
    region.write_text(
        (repo / "regions" / "demo-osbs.toml")
        .read_text()
        .replace('"demo-osbs/', f'"{repo}/regions/demo-osbs/')
        .replace("stride_px = 64", "stride_px = 96")
    )
    res = CliRunner().invoke(cli, ["chip", str(region), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    logged = [ln for ln in res.stderr.splitlines() if " geotl." in ln]
    assert logged and all(
        re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (INFO|WARNING) geotl\.", ln) for ln in logged
    ), logged
    res = CliRunner().invoke(
        cli, ["--progress", "json", "chip", str(region), "--out", str(tmp_path / "b")]
    )
    assert any(ln.startswith("WARNING geotl.") for ln in res.stderr.splitlines()), res.stderr


def test_run_without_test_split_is_refused_before_training(tmp_path: Path) -> None:
    """`geotl run` evaluates on the test split: none is an input error found after chipping.

    It was found by evaluate, after training, naming the run's temporary folder.
    """
    from chips.data import write_boxes, write_region, write_scene

    write_scene(tmp_path / "s.tif")
    x0, y0 = 500_000.0, 4_000_000.0
    write_boxes(tmp_path / "l.geojson", [(x0 + 4, y0 - 12, x0 + 12, y0 - 4)])
    region = write_region(tmp_path / "r.toml", ["s.tif"], "l.geojson", split={"test_fraction": 0.0})
    result = CliRunner().invoke(cli, ["run", str(region), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("geotl: error")]
    assert len(lines) == 1 and "r.toml: the split gives no test chips" in lines[0]
    assert "test_fraction above 0" in lines[0] and ".tmp-" not in lines[0]
    assert "2/4 train" not in result.output
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_run_refuses_an_out_that_holds_the_region(tmp_path: Path) -> None:
    """`geotl run REGION --out DIR --overwrite` with the region's files in DIR deleted them."""
    from chips.data import write_boxes, write_region, write_scene

    write_scene(tmp_path / "s.tif")
    write_boxes(tmp_path / "l.geojson", [(500_004.0, 3_999_988.0, 500_012.0, 3_999_996.0)])
    region = write_region(tmp_path / "r.toml", ["s.tif"], "l.geojson")
    result = CliRunner().invoke(cli, ["run", str(region), "--out", str(tmp_path), "--overwrite"])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path}: holds this region's input" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.geojson", "r.toml", "s.tif"]


def test_quiet_leaves_out_the_summary_line_not_the_output(tmp_path: Path) -> None:
    """`-q` is "only warnings and errors": a cron job's mail was never empty."""
    demo = Path(__file__).resolve().parents[2] / "regions" / "demo-osbs.toml"
    loud = CliRunner().invoke(cli, ["chip", str(demo), "--out", str(tmp_path / "a")])
    quiet = CliRunner().invoke(cli, ["-q", "chip", str(demo), "--out", str(tmp_path / "b")])
    assert loud.exit_code == quiet.exit_code == 0, (loud.output, quiet.output)
    assert "geotl chip:" in loud.stderr
    assert quiet.stderr == ""
    assert quiet.stdout == loud.stdout.replace(str(tmp_path / "a"), str(tmp_path / "b"))


def test_journal_is_known_by_its_stream_not_by_the_variable_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd the journal stamps each line: geotl does not stamp them twice.

    ``JOURNAL_STREAM`` names the journal's socket (device:inode); a service whose stderr
    goes to a file instead keeps geotl's stamps although the variable is set.
    """
    import os
    import socket

    from geotl.cli.main import _is_journal

    journal, _other = socket.socketpair()
    st = os.fstat(journal.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert _is_journal(journal.makefile("w"))
    with open(tmp_path / "log.txt", "w") as log_file:
        assert not _is_journal(log_file)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not _is_journal(journal.makefile("w"))
    journal.close()
    _other.close()

from pathlib import Path

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

"""Training on several processes (DDP over gloo on CPU): ``geotl train --devices N``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import Point

from geotl.cli.main import cli
from geotl.config import load_region
from geotl.models.artefact import read_card
from geotl.train import TrainOptions, train_model
from geotl.train.data import ChipData, make_loader

REPO = Path(__file__).resolve().parents[1]
CRS = "EPSG:32618"
ORIGIN = (500_000.0, 4_000_000.0)
STEPS = ["--steps", "24", "--val-every", "8", "--batch-size", "8"]


@pytest.fixture(scope="module")
def crowns_region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160 px scene at 1 m: bright discs (the labelled crowns) on noisy ground."""
    root = tmp_path_factory.mktemp("ddp-region")
    rng = np.random.default_rng(3)
    size = 160
    img = rng.normal(60, 12, (3, size, size))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    discs = []
    for _ in range(40):
        cx, cy, r = rng.uniform(6, size - 6), rng.uniform(6, size - 6), rng.uniform(3, 6)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[:, inside] = rng.normal([70, 150, 60], 10, (inside.sum(), 3)).T
        discs.append(Point(ORIGIN[0] + cx, ORIGIN[1] - cy).buffer(r))
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8"}
    transform = Affine(1.0, 0, ORIGIN[0], 0, -1.0, ORIGIN[1])
    with rasterio.open(root / "scene.tif", "w", crs=CRS, transform=transform, **profile) as dst:
        dst.write(img.clip(1, 255).astype(np.uint8))
    gpd.GeoDataFrame(geometry=discs, crs=CRS).to_file(root / "crowns.geojson")
    region = root / "region.toml"
    region.write_text(
        """name = "ddp-crowns"
classes = ["tree"]
[imagery]
paths = ["scene.tif"]
bands = ["red", "green", "blue"]
[labels]
path = "crowns.geojson"
[chips]
size_px = 32
stride_px = 32
[split]
block_size_m = 32
val_fraction = 0.2
test_fraction = 0.2
guard_px = 0
[model]
base = "pkg:efficientnet-lite0"
freeze = "partial"
"""
    )
    return region


def test_batch_share_splits_every_step_of_the_one_process_draw() -> None:
    data = [
        ChipData(
            "r",
            np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1),
            *_empty(10),
            [str(i) for i in range(10)],
        )
    ]
    one = [b[0].flatten().tolist() for b in make_loader(data, 4, 0, 0, steps=5)]
    shares = [
        [b[0].flatten().tolist() for b in make_loader(data, 4, 0, 0, steps=5, rank=r, world_size=2)]
        for r in (0, 1)
    ]
    assert len(one) == len(shares[0]) == len(shares[1]) == 5
    assert [a + b for a, b in zip(*shares, strict=True)] == one


def _empty(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, 1, 1), np.uint8), np.ones((n, 1, 1), bool)


def test_two_processes_train_like_one(crowns_region: Path, tmp_path: Path) -> None:
    """2 CPU processes (DDP, gloo): one artefact, by rank 0, with the IoU of one process."""
    torch.set_num_threads(1)
    one = train_model(
        [load_region(crowns_region)],
        tmp_path / "one",
        TrainOptions(steps=24, val_every=8, batch_size=8, seed=0),
    )
    scratch = tmp_path / "tmp"  # where the second rank chips privately; empty afterwards
    scratch.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(scratch),
    }
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "geotl", "train", str(crowns_region), "--out", str(out)]
    res = subprocess.run(
        [*cmd, *STEPS, "--devices", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=420,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.splitlines() == [str(out)]  # one report, from rank 0

    assert res.stderr.count("geotl.train.loop: step ") == 3  # per validation, rank 0 only
    assert sorted(p.name for p in out.iterdir()) == [
        "chips",
        "model.json",
        "model.safetensors",
        "model.stac.json",
    ]
    assert not list(scratch.iterdir())
    two = read_card(out)
    assert two.trained_on is not None and one.trained_on is not None
    assert two.trained_on.model_dump() == {
        "accelerator": "cpu",
        "devices": 2,
        "num_nodes": 1,
        "strategy": "ddp",
        "batch_per_device": 4,
    }
    assert one.trained_on.strategy == "single" and one.trained_on.batch_per_device == 8
    assert two.metrics["steps_run"] == one.metrics["steps_run"] == 24
    # the same chips each step, split in two: within noise of one process (batch-norm
    # statistics over 4 chips instead of 8, other augmentation draws); one process over
    # seeds 0-3 gave 0.615, 0.681, 0.681, 0.676 here
    iou1, iou2 = one.metrics["val_iou"], two.metrics["val_iou"]
    print("val IoU, 1 and 2 processes:", iou1, iou2)
    assert iou1 > 0.5 and abs(iou1 - iou2) < 0.1, (iou1, iou2)
    assert json.loads((out / "model.json").read_text())["trained_on"]["devices"] == 2


def test_batch_that_does_not_split_is_refused(crowns_region: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    res = CliRunner().invoke(
        cli,
        ["train", str(crowns_region), "--out", str(out), "--devices", "4", "--batch-size", "6"],
    )
    assert res.exit_code == 2
    assert "--batch-size 6 does not split over 4 devices" in res.stderr
    assert "use --batch-size 8" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("env", "args", "said"),
    [
        ({}, ["--devices", "2", "--num-nodes", "2"], "start geotl on every machine with torchrun"),
        (
            {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"},
            ["--devices", "2", "--num-nodes", "2"],
            "the launcher started 2 process(es) but --devices 2 --num-nodes 2 make 4",
        ),
        (  # torchrun --nproc-per-node 2 without --devices: the options it needs
            {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"},
            [],
            "--devices 1 --num-nodes 1 make 1, 1 per node: use --devices 2 --num-nodes 1",
        ),
        (  # srun --ntasks-per-node 2 on 2 nodes
            {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "0"},
            ["--devices", "4"],
            "started 4 process(es), 2 per node, but --devices 4 --num-nodes 1 make 4, 4 per "
            "node: use --devices 2 --num-nodes 2",
        ),
        (  # srun -N2 -n4: SLURM says the tasks per node in its compact form only
            {"SLURM_NTASKS": "4", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_PROCID": "0"},
            ["--devices", "4"],
            "started 4 process(es), 2 per node, but --devices 4 --num-nodes 1 make 4, 4 per "
            "node: use --devices 2 --num-nodes 2",
        ),
    ],
)
def test_a_layout_no_launcher_can_start_is_refused_not_waited_for(
    crowns_region: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
    args: list[str], said: str,
) -> None:  # fmt: skip
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_NTASKS",
                "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_PROCID", "MASTER_ADDR",
                "NODE_RANK"):  # fmt: skip
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "m"
    res = CliRunner().invoke(
        cli, ["train", str(crowns_region), "--out", str(out), "--batch-size", "8", *args]
    )
    assert res.exit_code == 2, res.output
    assert said in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_more_cuda_devices_than_the_machine_shows_are_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--devices 2 --device cuda on a one-GPU machine: one line (Lightning: a late traceback)."""
    from geotl.errors import GeotlInputError
    from geotl.train.devices import DeviceLayout

    for key in ("WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    DeviceLayout(1).check(8, "cuda")
    DeviceLayout(2).check(8, "cpu")  # CPU processes: as many as asked
    with pytest.raises(GeotlInputError, match=r"--devices 2 --device cuda: this machine shows 1 "):
        DeviceLayout(2).check(8, "cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(GeotlInputError, match="use --device cpu"):
        DeviceLayout(2).check(8, "cuda")


def test_a_verdict_every_rank_reaches_is_said_once(tmp_path: Path) -> None:
    """Rank 1 reaches rank 0's verdicts on the same val chips: only rank 0 says them.

    At 4 steps the demo region's model (a real NEON plot) does not beat an all-tree map:
    that warning came twice with ``--devices 2``.
    """
    region = REPO / "regions" / "demo-osbs-crowns.toml"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "two"
    args = ["--steps", "4", "--val-every", "2", "--batch-size", "8", "--devices", "2"]
    res = subprocess.run(
        [sys.executable, "-m", "geotl", "train", str(region), "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=420,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    warnings = [
        line.split(" ", 1)[1] for line in res.stderr.splitlines() if " WARNING geotl." in line
    ]
    assert any("does not beat a map of nothing but tree" in w for w in warnings), res.stderr
    assert len(warnings) == len(set(warnings)), warnings


def test_processes_share_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """4 processes on 4 allotted cores of a larger machine: 1 thread each, not cores/4."""
    from geotl.train.devices import DeviceLayout, set_threads_per_process

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    before = torch.get_num_threads()
    try:
        set_threads_per_process(DeviceLayout(4))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_damaged_or_missing_chip_is_one_line_naming_it(
    crowns_region: Path, tmp_path: Path
) -> None:
    """A bad chip file under --chips: one line that names it and says to chip again (exit 2).

    Every rank loads every chip before training; a truncated chip ended ``--devices 2`` with
    rasterio's traceback (exit 1).
    """
    chips = tmp_path / "chips"
    assert CliRunner().invoke(cli, ["chip", str(crowns_region), "--out", str(chips)]).exit_code == 0
    index = gpd.read_parquet(chips / "chips.parquet")
    image = chips / str(index[index["split"] == "train"]["image"].iloc[0])
    image.write_bytes(image.read_bytes()[:600])  # a copy cut short: the header survives
    out = tmp_path / "m"
    args = ["train", str(crowns_region), "--out", str(out), "--chips", str(chips)]
    res = CliRunner().invoke(cli, [*args, "--devices", "2", "--batch-size", "8"])
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]  # after GDAL's own warnings about the file
    assert "Traceback" not in res.stderr and last.startswith("geotl: error: "), res.stderr
    assert f"{image}: chip damaged or cut short" in last
    assert f"geotl chip region.toml --out {chips} --overwrite" in res.stderr
    assert not out.exists()

    image.unlink()
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and f"{image}: chip missing: cut the chips again" in res.stderr
    assert not out.exists()


_RANK = """
import os, sys, torch, torch.distributed as dist
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], rank=rank,
                        world_size=2)
dist.barrier()
if rank == 1:
    os._exit(0)  # gone without a word: killed, out of memory, its machine lost
from geotl.errors import GeotlRuntimeError
from geotl.train.devices import DeviceLayout, process_lost_is_one_line
try:
    with process_lost_is_one_line(DeviceLayout(2)):
        for _ in range(50):
            dist.all_reduce(torch.ones(1000))
except GeotlRuntimeError as exc:
    print(exc)
"""


def test_a_rank_that_is_gone_is_one_line_on_the_others(tmp_path: Path) -> None:
    """Real gloo: rank 1 leaves, rank 0's next collective fails; geotl says it in one line.

    ``geotl train --devices 2`` with its second process killed mid-training printed a
    traceback of 120 lines ending in gloo's ``pair.cc`` read error.
    """
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    ranks = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), port],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in (0, 1)
    ]
    said, err = ranks[0].communicate(timeout=120)
    ranks[1].communicate(timeout=30)
    lines = said.strip().splitlines()
    assert len(lines) == 1, (said, err[-2000:])
    assert lines[0].startswith("training stopped: another of the 2 processes (--devices 2 ")
    assert "no model was written, run the command again" in lines[0]
    assert "pair.cc" not in lines[0] and "GLHF" not in lines[0]


# imported at start-up by the processes Lightning starts (LOCAL_RANK 1; rank 0 runs as 0):
# rank 1 dies as the out-of-memory killer ends a process, before it joins the group
_KILL_RANK_1 = """
import os, signal
if os.environ.get("LOCAL_RANK") == "1":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rank_killed_before_training_is_one_line_naming_it(
    crowns_region: Path, tmp_path: Path
) -> None:
    """Rank 1 SIGKILLed at start: rank 0 says which process, how and what to try (exit 1).

    Lightning's observer SIGKILLed rank 0 too: exit 137, no word a user could act on, and the
    half-built model folder left beside DIR. Rank 0 waited for rank 1 to join the group,
    where no error comes and no signal handler runs.
    """
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_KILL_RANK_1)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]),
        "OMP_NUM_THREADS": "1",
    }
    runs = tmp_path / "runs"
    runs.mkdir()
    out = runs / "m"
    res = subprocess.run(
        [sys.executable, "-m", "geotl", "train", str(crowns_region), "--out", str(out),
         *STEPS, "--devices", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr[-3000:]
    said = [line for line in res.stderr.splitlines() if line.startswith("geotl: ")]
    assert said == [
        "geotl: error: training stopped: process 1 of 2 (--devices 2 --num-nodes 1) was "
        "killed (SIGKILL, most often by the system for want of memory): use fewer --devices "
        "or a smaller --batch-size; no model was written, run the command again"
    ], res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert not list(runs.iterdir())  # neither DIR nor its half-built .tmp-m.* folder


def test_torchrun_processes_failing_alike_say_it_once(crowns_region: Path, tmp_path: Path) -> None:
    """Every process of ``torchrun --nproc-per-node 2`` refuses the layout: one line, not 2.

    torchrun's own summary of the failed processes follows it (geotl cannot hold it back).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "m"
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "geotl",
         "train", str(crowns_region), "--out", str(out), "--batch-size", "8"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert res.returncode != 0
    said = [line for line in res.stderr.splitlines() if line.startswith("geotl: ")]
    assert said == [
        "geotl: error: the launcher started 2 process(es), 2 per node, but --devices 1 "
        "--num-nodes 1 make 1, 1 per node: use --devices 2 --num-nodes 1"
    ], res.stderr[-3000:]
    assert not out.exists()


def test_torchrun_processes_reading_a_bad_region_file_say_it_once(tmp_path: Path) -> None:
    """A region file every process of ``torchrun`` reads is refused once, not once per process."""
    region = tmp_path / "bad.toml"
    region.write_text('name = "bad"\ntask = "segmentation"\nclasses = ["tree"]\n[imagery\n')
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "geotl",
         "train", str(region), "--out", str(tmp_path / "m"), "--devices", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert res.returncode != 0
    said = [line for line in res.stderr.splitlines() if line.startswith("geotl: ")]
    assert len(said) == 1 and str(region) in said[0], res.stderr[-3000:]

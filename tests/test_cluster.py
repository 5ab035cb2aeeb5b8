"""geotl.cluster on a real distributed.LocalCluster of worker processes (never a mock).

One cluster of two worker processes serves the module; scenes are the repo's real demo
scene (400 px) and mosaics of it, the model a randomly initialised real network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from distributed import Client, LocalCluster, get_task_stream

import geotl
from geotl.build import code_digest
from geotl.cli.main import cli
from geotl.cluster import (
    ClusterError,
    ModelRef,
    SceneJob,
    check_worker,
    parse_cluster,
    predict_on_cluster,
)
from geotl.config import load_region
from geotl.monitor import MonitorOptions, run_monitor
from geotl.monitor.state import DB_FILE
from geotl.predict import PredictOptions, predict_scene
from geotl.predict.engine import load_model

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "monitor"))
from monitor_helpers import copy_in, write_region  # noqa: E402
from predict.data import warp, write_texture_model  # noqa: E402

REAL_SCENE = TESTS.parent / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
# small windows: a 400 px scene then holds several blocks with their margins
pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = PredictOptions(
    window_px=32, overlap_px=8, vector_window_px=32, halo_px=8, min_area_m2=0.05, progress=False
)


@contextlib.contextmanager
def _two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Two worker processes, one thread each, offline, with the tests' geotl cache."""
    home = tmp_path_factory.mktemp("workers")
    (home / "tmp").mkdir()
    env = {
        # scratch folders of the worker a test kills stay under the test's folder, not /tmp
        "TMPDIR": str(home / "tmp"),
        # the cache the tests' own process uses (conftest): ONNX exports are made once
        "GEOTL_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "geotl-cache"),
        "TORCH_HOME": str(home / "torch-home"),
        "HF_HUB_OFFLINE": "1",
    }
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env=env,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Two workers shared by the module's tests."""
    with _two_workers(tmp_path_factory) as c:
        yield c


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    write_texture_model(out)
    return out


def _mosaic(path: Path, tiles: int, flip: bool = False) -> Path:
    """``tiles x tiles`` copies of the real scene (mirrored so that seams stay textured)."""
    with rasterio.open(REAL_SCENE) as ds:
        arr, profile = ds.read(), ds.profile
    if flip:
        arr = arr[:, ::-1]
    rows = [
        np.concatenate([arr if (i + j) % 2 == 0 else arr[:, :, ::-1] for j in range(tiles)], 2)
        for i in range(tiles)
    ]
    big = np.concatenate(rows, axis=1)
    profile.update(
        height=big.shape[1], width=big.shape[2], tiled=True, blockxsize=256, blockysize=256
    )
    with rasterio.open(path, "w", **profile) as out:
        out.write(big)
    return path


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(cli, ["-q", *args])


def test_parse_cluster() -> None:
    assert parse_cluster("local:3").local_workers == 3
    assert parse_cluster(" tcp://node-1:8786 ").address == "tcp://node-1:8786"
    # the address as `dask worker` takes it: bare HOST:PORT, a trailing slash
    assert parse_cluster("node-1:8786").address == "tcp://node-1:8786"
    assert parse_cluster("tcp://node-1:8786/").address == "tcp://node-1:8786"
    for bad in ("local:0", "local", "8786", "http://x:1", "tcp://", "node-1:port"):
        with pytest.raises(ClusterError, match="local:"):
            parse_cluster(bad)


def test_predict_on_the_cluster_writes_the_same_files(model: Path, tmp_path: Path) -> None:
    second = _mosaic(tmp_path / "OSBS_mosaic.tif", 2, flip=True)
    scenes = [str(REAL_SCENE), str(second)]
    common = ["--engine", "torch", "--min-area", "0.05", "--no-progress"]

    def outputs(name: str) -> list[str]:
        return ["-o", str(tmp_path / f"{name}.geojson"), "--gpkg", str(tmp_path / f"{name}.gpkg")]

    one = _invoke(["predict", str(model), *scenes, *outputs("one"), *common])
    assert one.exit_code == 0, one.output
    time.sleep(1.1)  # another second on the clock: the GeoPackage's stamps must not follow it
    cluster = ["--cluster", "local:2"]  # a LocalCluster of its own (the others use tcp://)
    many = _invoke(["predict", str(model), *scenes, *outputs("two"), *common, *cluster])
    assert many.exit_code == 0, many.output
    for suffix in (".geojson", ".qml", ".gpkg"):
        one_file, two_file = tmp_path / f"one{suffix}", tmp_path / f"two{suffix}"
        assert one_file.read_bytes() == two_file.read_bytes(), suffix


def test_a_workers_input_error_is_the_same_one_line_error(
    client: Client, model: Path, tmp_path: Path
) -> None:
    """A scene a worker cannot read: exit 2 and the error geotl gives in one process."""
    missing = tmp_path / "missing.tif"
    out = tmp_path / "p.geojson"
    args = ["predict", str(model), str(missing), "-o", str(out), "--no-progress"]
    alone = _invoke(args)
    remote = _invoke([*args, "--cluster", client.scheduler.address])
    assert alone.exit_code == remote.exit_code == 2, remote.output
    assert remote.output.strip() == alone.output.strip()
    assert "missing.tif: file not found" in remote.output and "Exception" not in remote.output
    assert not out.exists()
    # among other scenes: skipped, named by the same message
    both = _invoke([*args[:3], str(REAL_SCENE), *args[3:], "--cluster", client.scheduler.address])
    assert both.exit_code == 1 and "Exception" not in both.output, both.output
    assert "missing.tif: skipped: " in both.output and "file not found" in both.output
    # a file rasterio fails on: its GDAL error, raised from, cannot be unpickled by Dask
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(REAL_SCENE.read_bytes()[:4096])
    args[2], args[4] = str(corrupt), str(tmp_path / "c.geojson")
    alone = _invoke(args)
    remote = _invoke([*args, "--cluster", client.scheduler.address])
    assert alone.exit_code == remote.exit_code == 2, remote.output
    error = alone.output.strip().splitlines()[-1]  # after the local run's band warning
    assert remote.output.strip().splitlines()[-1] == error
    assert "corrupt.tif: read failed" in error and "Exception" not in remote.output


def test_a_single_scenes_error_prints_one_line_in_a_real_process(
    client: Client, model: Path, tmp_path: Path
) -> None:
    """The abandoned task generator, collected after the client closed, printed a traceback."""
    out = tmp_path / "p.geojson"
    args = [str(model), str(tmp_path / "missing.tif"), "-o", str(out), "--no-progress"]
    res = subprocess.run(
        [sys.executable, "-m", "geotl", "predict", *args, "--cluster", client.scheduler.address],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"geotl: error: {tmp_path / 'missing.tif'}: file not found: check the path"
    ], res.stderr
    assert not out.exists()


def test_a_scene_the_workers_cannot_see_is_named_so(
    client: Client, model: Path, tmp_path: Path
) -> None:
    """A scene on the coordinator's disk only: not 'file not found: check the path'."""
    from geotl.cluster import _predict_task

    ref = ModelRef.from_path(model, "torch")
    elsewhere = SceneJob(tmp_path / "local-disk" / "scene.tif", SMALL, seen_here=True)
    with pytest.raises(ClusterError) as caught:
        client.submit(_predict_task, ref, elsewhere, None, pure=False).result()
    text = str(caught.value)
    assert text.startswith(f"{elsewhere.scene}: worker tcp://"), text
    assert f"has no such file at {elsewhere.scene} (the coordinator has)" in text
    assert "every worker sees" in text


def test_blocks_of_a_large_scene_run_on_both_workers_and_join_exactly(
    client: Client, model: Path
) -> None:
    whole = predict_scene(load_model(model, "torch"), REAL_SCENE, SMALL).features
    ref = ModelRef.from_path(model, "torch")
    with get_task_stream(client) as stream:
        [(_, det)] = list(
            predict_on_cluster(
                client, ref, [SceneJob(REAL_SCENE, SMALL)], block_rows=96, progress=False
            )
        )
    assert not isinstance(det, BaseException), det
    blocks = [t for t in stream.data if str(t["key"]).startswith("geotl-")]
    assert len(blocks) == 5 and len({t["worker"] for t in blocks}) == 2
    got = det.features
    assert len(got) == len(whole) > 50
    assert list(got["id"]) == list(whole["id"])
    assert (got["score"].to_numpy() == whole["score"].to_numpy()).all()
    assert (got["area_m2"].to_numpy() == whole["area_m2"].to_numpy()).all()
    assert all(a.equals_exact(b, 0) for a, b in zip(got.geometry, whole.geometry, strict=True))


def test_workers_predict_with_onnx_runtime_without_torch(
    model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Fresh workers (a cluster of their own) load an exported model without torch."""
    artefact = load_model(model, "onnxruntime")
    artefact.engine.engine(256)  # type: ignore[union-attr]  # the export, cached once
    whole = predict_scene(artefact, REAL_SCENE, PredictOptions(progress=False)).features
    with _two_workers(tmp_path_factory) as c:
        ref = ModelRef.from_path(model, "onnxruntime")
        [(_, det)] = predict_on_cluster(
            c, ref, [SceneJob(REAL_SCENE, PredictOptions(progress=False))], progress=False
        )
        assert not isinstance(det, BaseException), det
        assert list(det.features["id"]) == list(whole["id"]) and len(whole) > 50
        # a lambda travels by value (a test function would import this module, and torch)
        assert set(c.run(lambda: "torch" in sys.modules).values()) == {False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_scheduler_exit_2_names_it_and_writes_nothing(
    model: Path, tmp_path: Path
) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    out = tmp_path / "out"
    out.mkdir()
    res = _invoke(
        ["predict", str(model), str(REAL_SCENE), "-o", str(out / "p.geojson"), "--cluster", address]
    )
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and address in lines[0] and "scheduler" in lines[0], res.output
    region = write_region(
        tmp_path / "region",
        "osbs",
        [REAL_SCENE],
        ["red", "green", "blue"],
        ["tree"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
    )
    res = _invoke(
        ["monitor", str(region), "--model", str(model), "--out", str(out), "--cluster", address]
    )
    assert res.exit_code == 2 and address in res.output, res.output
    assert list(out.iterdir()) == []


def _set_version(version: str) -> None:
    """Runs on the workers: pretend to be another geotl release."""
    import geotl.cluster as cluster_module

    geotl.__version__ = version
    cluster_module.__version__ = version


def test_workers_refuse_another_version_or_other_model_files(
    client: Client, model: Path, tmp_path: Path
) -> None:
    ref = ModelRef.from_path(model, "torch")
    job = [SceneJob(REAL_SCENE, SMALL)]
    client.run(_set_version, "0.0.0-other")
    try:
        with pytest.raises(ClusterError, match=r"runs geotl 0\.0\.0-other .* coordinator runs"):
            list(predict_on_cluster(client, ref, job, progress=False))
    finally:
        client.run(_set_version, geotl.__version__)
    moved = ModelRef.from_path(model, "torch")
    gone = tmp_path / "nowhere" / "m"
    missing = moved.__class__(**{**moved.__dict__, "path": str(gone)})
    with pytest.raises(ClusterError, match=r"worker tcp://.* has no model file .*nowhere"):
        client.submit(check_worker, missing, pure=False).result()
    other = moved.__class__(**{**moved.__dict__, "sha256": "0" * 64})
    with pytest.raises(ClusterError, match="sees another model"):
        list(predict_on_cluster(client, other, job, progress=False))


def _set_digest(digest: str | None) -> None:
    """Runs on the workers: pretend to run other code under the same release (None: undo)."""
    import geotl.cluster as cluster_module
    from geotl.build import code_digest

    cluster_module.code_digest = (lambda: digest) if digest else code_digest  # type: ignore[assignment]


def test_workers_refuse_other_code_under_the_same_release(client: Client, model: Path) -> None:
    # geotl installed from two commits of main: one release (0.1.0), other vectorisers
    ref = ModelRef.from_path(model, "torch")
    assert ref.build == code_digest() and len(ref.build) == 12
    client.run(_set_digest, "0" * 12)
    try:
        with pytest.raises(
            ClusterError,
            match=rf"runs geotl {geotl.__version__} built from other code \(digest 0{{12}}\) "
            rf"than the coordinator's \({ref.build}\): install geotl from the same commit",
        ):
            list(predict_on_cluster(client, ref, [SceneJob(REAL_SCENE, SMALL)], progress=False))
    finally:
        client.run(_set_digest, None)
    assert list(predict_on_cluster(client, ref, [SceneJob(REAL_SCENE, SMALL)], progress=False))


def test_the_code_digest_is_the_sources_not_their_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geotl.build as build

    here = build.code_digest()
    for copy in ("a", "b"):
        shutil.copytree(Path(geotl.__file__).parent, tmp_path / copy / "geotl")
    (tmp_path / "b" / "geotl" / "__pycache__" / "stray.py").parent.mkdir(exist_ok=True)
    (tmp_path / "b" / "geotl" / "__pycache__" / "stray.py").write_text("x = 1\n")
    digests = []
    for copy in ("a", "b"):
        monkeypatch.setattr(build, "_PACKAGE", tmp_path / copy / "geotl")
        build.code_digest.cache_clear()
        digests.append(build.code_digest())
    assert digests == [here, here]  # another folder, a cache's stray file: the same code
    vec = tmp_path / "b" / "geotl" / "predict" / "vectorise.py"
    vec.write_text(vec.read_text() + "\n# a one-line change\n")
    build.code_digest.cache_clear()
    assert build.code_digest() != here
    build.code_digest.cache_clear()  # the next caller hashes the real package again


def test_a_refusing_worker_is_named_by_its_address(client: Client, model: Path) -> None:
    """The check that runs on every worker before a job names the worker that refused."""
    ref = ModelRef.from_path(model, "torch")
    client.run(_set_version, "0.0.0-other")
    try:
        with pytest.raises(ClusterError) as caught:
            list(predict_on_cluster(client, ref, [SceneJob(REAL_SCENE, SMALL)], progress=False))
    finally:
        client.run(_set_version, geotl.__version__)
    assert "this process" not in str(caught.value)
    named = str(caught.value).split()[1]
    assert named in client.nthreads(), caught.value  # a worker's address (it said "this process")


def test_a_lost_scheduler_is_one_line_and_writes_nothing(model: Path, tmp_path: Path) -> None:
    """The scheduler dies mid-job: exit 1 with one line naming it (a Dask traceback before)."""
    dask = Path(sys.executable).parent / "dask"
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = subprocess.DEVNULL
    port = address.rsplit(":", 1)[1]
    scheduler = subprocess.Popen(
        [str(dask), "scheduler", "--port", port, "--no-dashboard"],
        stdout=quiet,
        stderr=quiet,
        env=env,
    )
    worker = subprocess.Popen(
        [str(dask), "worker", address, "--nthreads", "1", "--no-dashboard"],
        stdout=quiet,
        stderr=quiet,
        env=env,
    )
    scene = _mosaic(tmp_path / "big.tif", 3)
    out = tmp_path / "out"
    out.mkdir()
    done: dict[str, Any] = {}
    try:
        with Client(address, timeout=60) as watcher:
            watcher.wait_for_workers(1, timeout=60)
            args = ["predict", str(model), str(scene), "-o", str(out / "p.geojson")]
            thread = threading.Thread(
                target=lambda: done.setdefault("res", _invoke([*args, "--cluster", address]))
            )
            thread.start()
            deadline = time.monotonic() + 120
            while not any(
                str(k).startswith("geotl-") for keys in watcher.processing().values() for k in keys
            ):
                assert time.monotonic() < deadline, "no geotl task started"
                time.sleep(0.05)
            scheduler.kill()
            thread.join(timeout=120)
    finally:
        scheduler.kill()
        worker.kill()
        scheduler.wait()
        worker.wait()
    res = done["res"]
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "lost the Dask scheduler" in lines[0], res.output
    assert address in lines[0] and "big.tif" in lines[0]
    assert list(out.iterdir()) == []


def test_a_client_that_lost_its_scheduler_earlier_says_so(client: Client, model: Path) -> None:
    """monitor --every keeps its client: after a lost scheduler, one line, not AttributeError."""
    from geotl.errors import GeotlRuntimeError

    ref = ModelRef.from_path(model, "torch")
    closed = Client(client.scheduler.address, timeout=30)
    closed.close()
    with pytest.raises(GeotlRuntimeError, match=r"lost the Dask scheduler at tcp://"):
        list(predict_on_cluster(closed, ref, [SceneJob(REAL_SCENE, SMALL)], progress=False))


def _kill_a_busy_worker(client: Client, after_s: float) -> str:
    """SIGKILL the process of a worker while it runs a geotl task; its address."""
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any(str(k).startswith("geotl-") for k in keys):
                time.sleep(after_s)
                # still mid-task? (a warm worker may finish within after_s)
                busy = client.processing().get(worker, ())
                if not any(str(k).startswith("geotl-") for k in busy):
                    break
                os.kill(pids[worker], signal.SIGKILL)
                return str(worker)
        time.sleep(0.05)
    raise AssertionError("no geotl task started")


def _two_passes(folder: Path) -> list[Path]:
    """Two dated passes of the real scene (the second mirrored)."""
    return [
        _mosaic(folder / "osbs_20240101.tif", 1),
        _mosaic(folder / "osbs_20240301.tif", 1, flip=True),
    ]


def _folder_region(folder: Path, passes: list[Path]) -> Path:
    """A folder-source region for ``passes`` (they arrive in ``incoming/``)."""
    return write_region(
        folder,
        "osbs",
        passes,
        ["red", "green", "blue"],
        ["tree"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=r"_(\d{8})\.tif$",
        min_area_m2=1.0,
    )


def test_a_worker_killed_mid_pass_is_retried_each_pass_once(
    client: Client, model: Path, tmp_path: Path
) -> None:
    passes = _two_passes(tmp_path)
    outs = {}
    for name in ("here", "cluster"):
        region_file = _folder_region(tmp_path / name, passes)
        for p in passes:
            copy_in(region_file, p)
        outs[name] = (load_region(region_file), tmp_path / name / "out")
    here = run_monitor(outs["here"][0], MonitorOptions(out_dir=outs["here"][1], model_dir=model))
    assert len(here.processed) == 2

    done: dict[str, Any] = {}
    address = client.scheduler.address
    opts = MonitorOptions(out_dir=outs["cluster"][1], model_dir=model, cluster=address)
    thread = threading.Thread(
        target=lambda: done.setdefault("summary", run_monitor(outs["cluster"][0], opts))
    )
    with get_task_stream(client) as stream:
        thread.start()
        killed = _kill_a_busy_worker(client, after_s=0.1)
        thread.join(timeout=600)
    summary = done["summary"]
    assert [p.status for p in summary.passes] == ["done", "done"]
    finished = {
        str(t["key"]): t["worker"] for t in stream.data if str(t["key"]).startswith("geotl-")
    }
    assert len(finished) == 2 and killed not in finished.values()  # the killed task ran again

    rdir_here, rdir_cluster = outs["here"][1] / "osbs", outs["cluster"][1] / "osbs"
    with contextlib.closing(sqlite3.connect(rdir_cluster / DB_FILE)) as db:
        rows = db.execute("SELECT scene_key, status FROM jobs").fetchall()
    assert sorted(r[1] for r in rows) == ["done", "done"] and len({r[0] for r in rows}) == 2
    for rel in ("passes", "changes"):
        names = sorted(p.name for p in (rdir_here / rel).iterdir())
        assert names == sorted(p.name for p in (rdir_cluster / rel).iterdir()) and len(names) == 2
        for n in names:
            assert (rdir_here / rel / n).read_bytes() == (rdir_cluster / rel / n).read_bytes()


def test_monitor_connects_again_after_losing_its_scheduler(
    client: Client, model: Path, tmp_path: Path
) -> None:
    """monitor --every keeps one client: once it lost the scheduler, a round reconnects.

    Before, every later round failed with "lost the Dask scheduler" until a restart by hand.
    """
    from dataclasses import replace

    from geotl.errors import GeotlRuntimeError
    from geotl.monitor.runner import ClusterDetector, Monitor

    passes = _two_passes(tmp_path)
    region_file = _folder_region(tmp_path / "r", passes)
    copy_in(region_file, passes[0])
    opts = MonitorOptions(
        out_dir=tmp_path / "out", model_dir=model, cluster=client.scheduler.address
    )
    with Monitor(load_region(region_file), opts) as monitor:
        detector = monitor.passes.detector
        assert isinstance(detector, ClusterDetector)
        assert [p.status for p in monitor.run_once().passes] == ["done"]
        detector.client.close()  # what a lost scheduler leaves
        copy_in(region_file, passes[1])
        # the scheduler is not back yet: this round fails (exit 1), the loop goes on
        monitor.options = replace(opts, cluster=f"tcp://127.0.0.1:{_free_port()}")
        with pytest.raises(GeotlRuntimeError, match="the next round tries again"):
            monitor.run_once()
        monitor.options = opts  # back at its address: the next round connects again
        assert [p.status for p in monitor.run_once().passes] == ["done"]
        assert detector.client.status == "running"


def test_local_workers_share_the_machine_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask starts workers with OMP_NUM_THREADS=1; a local:N worker takes cores // N."""
    from geotl import cluster

    cores = len(os.sched_getaffinity(0))
    assert cluster._local_share(1) == cores
    assert cluster._local_share(cores * 2) == 1
    monkeypatch.setenv(cluster._THREADS_ENV, "3")
    assert cluster._worker_threads() == 3


def test_a_task_vectorises_in_its_workers_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """local:2 on 2 cores: a large scene's task has no pool of every core (2 x 2 processes)."""
    from geotl import cluster
    from geotl.predict.core import PredictOptions

    monkeypatch.setenv(cluster._THREADS_ENV, "1")
    task = cluster._task_options(PredictOptions())
    assert task.workers == 1 and task.progress is False
    # the tasks are the parallelism: no pool inside a worker, whatever --workers says
    assert cluster._task_options(PredictOptions(workers=3)).workers == 1


def test_a_local_cluster_leaves_port_8787_to_the_user() -> None:
    """Dask's scheduler serves HTTP on 8787 unless told: a user's dashboard there clashed."""
    import warnings

    from geotl.cluster import open_cluster

    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))
        taken.listen()
    except OSError:
        pass  # in use already (another test's cluster): the case itself
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open_cluster("local:1") as client:
                assert client.submit(sum, [1, 2]).result() == 3
        assert not [w for w in caught if "8787" in str(w.message)]
    finally:
        taken.close()


def test_a_scenes_warning_is_said_once_by_the_coordinator_naming_it_as_given(
    client: Client, model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Five blocks on two workers warn of the unnamed bands once, here, as one process."""
    scene = _mosaic(tmp_path / "unnamed.tif", 1)  # no band descriptions, as the NEON file
    given = Path(os.path.relpath(scene))
    ref = ModelRef.from_path(model, "torch")
    with caplog.at_level(logging.WARNING, logger="geotl"):
        [(_, det)] = list(
            predict_on_cluster(client, ref, [SceneJob(given, SMALL)], block_rows=96, progress=False)
        )
    assert not isinstance(det, BaseException), det
    said = [r.getMessage() for r in caplog.records if "does not name its bands" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith(f"{given}: the file does not name its bands"), said
    assert [r.name for r in caplog.records if r.getMessage() == said[0]] == ["geotl.predict.scene"]


def _lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


def test_a_scenes_info_lines_are_said_once_by_the_coordinator_as_one_process_says_them(
    client: Client, model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The count line (the blocks' total, once) and 'resampling on the fly' came from no one.

    The workers log at WARNING: their INFO lines were dropped there, and a remote cluster's
    user never sees a worker's stderr anyway.
    """
    artefact = load_model(model, "torch")
    scene = _mosaic(tmp_path / "blocks.tif", 1)
    fine = warp(REAL_SCENE, tmp_path / "fine.tif", "EPSG:32617", (0.08, 0.08))
    resampled = replace(SMALL, resample=True)
    counted = " polygon(s) from "
    with caplog.at_level(logging.INFO, logger="geotl"):
        predict_scene(artefact, scene, SMALL)
        predict_scene(artefact, fine, resampled)
    # a block re-reads windows in its margins: the blocks' total windows is the work done
    alone = [m.split(" from ")[0] for m in _lines(caplog, logging.INFO, counted)]
    alone_resampling = _lines(caplog, logging.INFO, "on the fly")
    assert len(alone) == 2 and len(alone_resampling) == 1, caplog.text
    caplog.clear()
    ref = ModelRef.from_path(model, "torch")
    jobs = [SceneJob(Path(os.path.relpath(scene)), SMALL), SceneJob(fine, resampled)]
    with caplog.at_level(logging.INFO, logger="geotl"):
        got = list(predict_on_cluster(client, ref, jobs[:1], block_rows=96, progress=False))
        got += list(predict_on_cluster(client, ref, jobs[1:], progress=False))
    assert not [d for _, d in got if isinstance(d, BaseException)], got
    said = [m.split(" from ")[0] for m in _lines(caplog, logging.INFO, counted)]
    assert said == alone, caplog.text  # one line per scene, five blocks' total in the first
    assert _lines(caplog, logging.INFO, "on the fly") == alone_resampling
    assert [r.name for r in caplog.records if counted in r.getMessage()] == [
        "geotl.predict.core"
    ] * 2


def test_a_workers_error_names_the_scene_as_given_after_its_warnings(
    client: Client, model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A relative scene failed as '/abs/path/scene.tif: ...' (one process: 'scene.tif: ...')."""
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(REAL_SCENE.read_bytes()[:4096])
    given = Path(os.path.relpath(corrupt))
    assert given != corrupt
    ref = ModelRef.from_path(model, "torch")
    with caplog.at_level(logging.WARNING, logger="geotl"):
        [(_, error)] = list(
            predict_on_cluster(client, ref, [SceneJob(given, SMALL)], progress=False)
        )
    assert isinstance(error, geotl.errors.RasterError), error
    assert str(error).startswith(f"{given}: read failed"), error  # it named it absolute
    assert error.path == given and not hasattr(error, "worker_log")
    # the band warning one process says before the error, said here too, naming it as given
    said = _lines(caplog, logging.WARNING, "does not name its bands")
    assert len(said) == 1 and said[0].startswith(f"{given}: "), caplog.text
    # a refusing worker names the model as given, and the path it looked at
    copy = tmp_path / "model-copy"
    shutil.copytree(model, copy)
    relative = ModelRef.from_path(os.path.relpath(copy), "torch")
    (copy / "model.safetensors").rename(copy / "moved.safetensors")
    with pytest.raises(ClusterError) as caught:
        client.submit(check_worker, relative, pure=False).result()
    named = f"{os.path.relpath(copy)}/model.safetensors ({copy}/model.safetensors)"
    assert f"has no model file {named}: " in str(caught.value), caught.value


def test_a_worker_starts_no_vectorising_pool_that_would_outlive_it(
    model: Path, tmp_path: Path
) -> None:
    """A non-daemonic worker (dask worker --no-nanny) started --workers' pool.

    SIGKILLed, such a worker left the pool and its forkserver running, and their resource
    tracker warned of leaked semaphores. Here a worker thread of this (non-daemonic)
    process stands for it.
    """
    import multiprocessing

    from geotl.cluster import _predict_task
    from geotl.predict import strips

    strips.close_pools()
    geotl_log = logging.getLogger("geotl")
    handlers, level = list(geotl_log.handlers), geotl_log.level
    ref = ModelRef.from_path(model, "torch")
    job = SceneJob(REAL_SCENE, replace(SMALL, workers=2))
    children = set(multiprocessing.active_children())  # the module's cluster's workers
    try:
        with (
            LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
            Client(cluster) as c,
        ):
            det, _ = c.submit(_predict_task, ref, job, None, pure=False).result()
            assert len(det.features) > 50
            assert not strips._POOLS and set(multiprocessing.active_children()) == children
    finally:
        strips.close_pools()
        geotl_log.handlers[:] = handlers
        geotl_log.setLevel(level)

"""Predicting with ONNX Runtime never imports torch: real ``geotl predict`` processes.

A process that predicts on the CPU (the default engine) starts 1.5-3 s sooner and holds
about 700 MB less without torch (BENCHMARKS.md, issue 10). Only the first run of a model
folder exports it (torch then), once per weights and tile size; every later run, and any
exported ``.onnx`` file, predicts without it and gives the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

from geotl.export import export_onnx

from . import data

# the CLI, then (at exit, whatever the exit code) which of the heavy modules it imported
_RUN = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('IMPORTED', *sorted(m for m in ('torch', "
    "'segmentation_models_pytorch', 'lightning') if m in sys.modules), file=sys.stderr))\n"
    "from geotl.cli.main import main\n"
    "sys.argv[0] = 'geotl'\n"
    "main()\n"
)


def _predict(cache: Path, *args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, "predict", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "GEOTL_CACHE_DIR": str(cache)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("IMPORTED"))
    return set(line.split()[1:])


def test_onnx_runtime_predicts_without_importing_torch(tmp_path: Path) -> None:
    model = tmp_path / "model"
    data.write_texture_model(model)
    scene = data.write_scene(tmp_path / "scene.tif", data.blobs(300, 340, seed=3))
    common = ["--engine", "onnxruntime", "--workers", "2", "--overwrite"]

    cache = tmp_path / "cache"  # this test's own: the first run exports the model
    first = _predict(cache, str(model), str(scene), "-o", str(tmp_path / "a.geojson"), *common)
    assert "torch" in first  # exported to the cache
    again = _predict(cache, str(model), str(scene), "-o", str(tmp_path / "b.geojson"), *common)
    assert again == set(), f"imported {sorted(again)}"
    assert (tmp_path / "a.geojson").read_bytes() == (tmp_path / "b.geojson").read_bytes()
    assert b'"Polygon"' in (tmp_path / "b.geojson").read_bytes()

    # an exported graph predicts without torch too, with the probabilities GeoTIFF
    onnx_path = tmp_path / "model.onnx"
    export_onnx(model, onnx_path, tile_px=256)
    graph = _predict(
        cache, str(onnx_path), str(scene), "-o", str(tmp_path / "c.geojson"),
        "--probabilities", str(tmp_path / "p.tif"), *common,
    )  # fmt: skip
    assert graph == set(), f"imported {sorted(graph)}"
    with rasterio.open(tmp_path / "p.tif") as ds:
        probs = ds.read(1)
    assert probs.shape == (300, 340) and probs.min() >= 0.0 and probs.max() <= 1.0


class _ColumnEngine:
    """Band 0 plus each pixel's column: a map that flipping left-right changes."""

    name = "test"

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return batch[:, :1] + np.arange(batch.shape[-1], dtype=np.float32)


def test_flip_averaging_in_numpy() -> None:
    from geotl.predict.stream import _flip_averaged

    x = np.random.default_rng(0).normal(size=(2, 3, 8, 6)).astype(np.float32)
    got = _flip_averaged(_ColumnEngine(), x)
    # each flip is undone: band 0 comes back where it was, the columns average to 2.5
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, x[:, :1] + 2.5, rtol=0, atol=1e-6)


def test_the_accelerator_band_blends_as_the_cpu_band(monkeypatch) -> None:
    """The torch branch of the band (an accelerator's), run on the CPU: the same sums."""
    import torch
    from rasterio.windows import Window

    import geotl.predict.band as band_mod

    monkeypatch.setattr(band_mod, "on_cpu", lambda device: False)
    on_device = band_mod.BandAccumulator(2, 8, 12, "cpu")  # torch tensors (on the CPU here)
    monkeypatch.undo()
    in_numpy = band_mod.BandAccumulator(2, 8, 12, "cpu")
    assert isinstance(on_device.acc, torch.Tensor) and isinstance(in_numpy.acc, np.ndarray)
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.1, 1.0, (8, 8)).astype(np.float32)
    got: list[list[np.ndarray]] = [[], []]
    for window in (Window(0, 0, 8, 8), Window(4, 0, 8, 8), Window(0, 4, 8, 8), Window(4, 4, 8, 8)):
        probs = rng.uniform(size=(2, 8, 8)).astype(np.float32)
        valid = rng.uniform(size=(8, 8)) > 0.2
        in_numpy.add(probs, weights, valid, window)
        t = (torch.from_numpy(a) for a in (probs, weights, valid))
        on_device.add(*t, window)
        if window.row_off == 0 and window.col_off == 4:  # the first row of windows is done
            for k, band in enumerate((in_numpy, on_device)):
                got[k] += [np.asarray(a) for a in band.finish(4)]
    for k, band in enumerate((in_numpy, on_device)):
        got[k] += [np.asarray(a) for a in band.finish(12)]  # the rest (the band grew)
    assert on_device.top == in_numpy.top == 12
    for a, b in zip(got[0], got[1], strict=True):
        np.testing.assert_array_equal(a, b)

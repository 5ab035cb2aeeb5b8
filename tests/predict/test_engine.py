"""The PyTorch engine: channels-last on the CPU, the same probabilities as the network."""

from __future__ import annotations

import numpy as np
import torch

from geotl.models.network import NetworkSpec, build_network
from geotl.predict.engine import TorchEngine


def test_channels_last_on_cpu_gives_the_networks_probabilities() -> None:
    spec = NetworkSpec(
        encoder="tu-mobilenetv3_small_050",
        in_channels=3,
        num_classes=3,
        encoder_depth=3,
        decoder_channels=(16, 8, 8),
    )
    torch.manual_seed(0)
    net = build_network(spec).eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        want = torch.softmax(net(torch.from_numpy(x)), dim=1)[:, 1:].numpy()
    engine = TorchEngine(net, torch.device("cpu"))
    weights = [p for p in net.parameters() if p.ndim == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    got = engine.tensor_probabilities(x)
    assert got.is_contiguous() and got.shape == (2, 2, 64, 64)  # NCHW for the blending
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    TorchEngine(net, torch.device("cpu"))  # a second engine on the same network: no-op
    np.testing.assert_allclose(engine.probabilities(x), want, atol=1e-5)


def test_batch_default_fills_the_cpu_caches_with_pytorch_only() -> None:
    from geotl.models.artefact import Artefact
    from geotl.predict import PredictOptions

    from . import data

    cpu = data.threshold_artefact()
    assert PredictOptions().batch_for(256, cpu) == 4
    assert PredictOptions().batch_for(512, cpu) == 1
    assert PredictOptions().batch_for(1024, cpu) == 1
    assert PredictOptions(batch_size=3).batch_for(256, cpu) == 3
    cuda = Artefact(cpu.card, cpu.network, cpu.path, torch.device("cuda"))
    assert PredictOptions().batch_for(256, cuda) == 8
    ort = Artefact(cpu.card, cpu.network, cpu.path, cpu.device, engine=object())  # type: ignore[arg-type]
    assert PredictOptions().batch_for(256, ort) == 8


def test_onnx_cache_removes_the_exports_used_longest_ago(tmp_path, monkeypatch) -> None:
    import os

    from geotl.predict.engine import _prune_exports

    folder = tmp_path / "onnx"
    folder.mkdir()
    for name, mtime in (("a", 1000), ("b", 2000), ("c", 3000), ("keep", 500)):
        f = folder / f"{name}.onnx"
        f.write_bytes(b"x" * 1_000_000)
        os.utime(f, (mtime, mtime))
    (folder / "notes.txt").write_text("not an export")
    monkeypatch.setenv("GEOTL_ONNX_CACHE_MB", "2.5")
    _prune_exports(folder, keep=folder / "keep.onnx")
    # 4 MB over 2.5: the two oldest go, the one just written stays whatever its time
    assert sorted(p.name for p in folder.iterdir()) == ["c.onnx", "keep.onnx", "notes.txt"]
    monkeypatch.setenv("GEOTL_ONNX_CACHE_MB", "100")
    _prune_exports(folder, keep=folder / "keep.onnx")
    assert (folder / "c.onnx").exists()


def test_onnx_cache_makes_an_older_export_again_silently(tmp_path, monkeypatch, caplog) -> None:
    """geotl's version stayed 0.1.0 across changes of the export: a cached export without its
    card's hash was reused, and every run said "exported by an older geotl... export it
    again" of a file the user never made."""
    import logging

    import onnx

    from geotl.export.onnx import read_onnx
    from geotl.models.artefact import load_artefact
    from geotl.predict.engine import _cached_export

    from . import data

    monkeypatch.setenv("GEOTL_CACHE_DIR", str(tmp_path / "cache"))
    data.write_constant_model(tmp_path / "m")
    art = load_artefact(tmp_path / "m")
    first = _cached_export(art, 64)
    # the export an older geotl cached under that name: no geotl_card_sha256
    old = onnx.load(str(first.path))
    kept = [(p.key, p.value) for p in old.metadata_props if p.key != "geotl_card_sha256"]
    del old.metadata_props[:]
    for key, value in kept:
        entry = old.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(old, str(first.path))
    assert "geotl_card_sha256" not in read_onnx(first.path).metadata
    # only what the cache says: read_onnx's own note above is logged too when an earlier
    # in-process CLI test of the session set geotl's logger to INFO
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geotl"):
        again = _cached_export(art, 64)
    assert caplog.records == [r for r in caplog.records if "exporting" in r.getMessage()]
    assert not any("older geotl" in r.getMessage() or r.levelno >= logging.WARNING
                   for r in caplog.records), caplog.text  # fmt: skip
    assert again.path == first.path and "geotl_card_sha256" in again.metadata
    assert "geotl_card_sha256" in read_onnx(first.path).metadata  # replaced on disk
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geotl"):
        _cached_export(art, 64)  # now a hit: nothing said, nothing exported
    assert caplog.records == []
    from geotl.export.onnx import EXPORT_FORMAT

    # named by the export's format, not geotl's version (which stays put between releases)
    assert first.path.name.endswith(f"-64px-format{EXPORT_FORMAT}.onnx")

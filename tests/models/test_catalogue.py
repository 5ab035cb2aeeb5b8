import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from geotl.errors import BaseModelError
from geotl.models.adapt import build_adapted_network
from geotl.models.bases import packaged
from geotl.models.bases import torchgeo as torchgeo_kind
from geotl.models.catalogue import (
    get_entry,
    import_weights,
    list_entries,
    load_base,
    torch_hub_checkpoints,
)

torch.set_num_threads(2)

RGB_MOCO = "torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO"


def _fake_resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False, in_chans=3).state_dict()


def test_catalogue_lists_every_torchgeo_weight_and_packages():
    entries = list_entries()
    ids = {e.id for e in entries}
    assert {
        "pkg:efficientnet-lite0",
        "pkg:ukis-csmask-6b",
        "pkg:ukis-csmask-4b",
        "none",
        RGB_MOCO,
    } <= ids
    assert sum(i.startswith("torchgeo:") for i in ids) > 100
    rgb = get_entry(RGB_MOCO)
    assert rgb.encoder == "resnet18" and rgb.bands == ["red", "green", "blue"]
    assert rgb.sha256 == "e3a335e3" and rgb.licence == "CC-BY-4.0" and rgb.commercial_use
    assert not rgb.available_offline
    lite = get_entry("pkg:efficientnet-lite0")
    assert lite.available_offline and len(lite.sha256 or "") == 64 and lite.commercial_use


def test_unknown_id_lists_known_ones():
    with pytest.raises(BaseModelError, match="pkg:efficientnet-lite0"):
        get_entry("imagenet")
    with pytest.raises(BaseModelError, match="unknown torchgeo"):
        get_entry("torchgeo:ResNet18_Weights.NOPE")


def test_unavailable_offline_says_how_to_import():
    with pytest.raises(
        BaseModelError, match=r"geotl models import resnet18_sentinel2_rgb_moco-e3a335e3\.pth"
    ):
        load_base(RGB_MOCO)


def test_vit_refused_for_segmentation():
    with pytest.raises(BaseModelError, match="cannot be used for segmentation"):
        load_base("torchgeo:ViTSmall16_Weights.SENTINEL2_ALL_DINO")


def test_non_commercial_refused_by_name():
    with pytest.raises(BaseModelError, match=r"OAM_RGB_RESNET50_TCD.*CC-BY-NC"):
        load_base("torchgeo:Unet_Weights.OAM_RGB_RESNET50_TCD", require_commercial=True)


@pytest.mark.parametrize(
    ("refused", "alternative"),
    [
        # FTW's non-commercial U-Nets have CC-BY twins: same bands and architecture
        (
            "torchgeo:Unet_Weights.SENTINEL2_2CLASS_NC_FTW",
            "torchgeo:Unet_Weights.SENTINEL2_2CLASS_FTW",
        ),
        (
            "torchgeo:Unet_Weights.SENTINEL2_FTW_PRUE_EFNETB5",
            "torchgeo:Unet_Weights.SENTINEL2_FTW_PRUE_CCBY_EFNETB5",
        ),
        # RGB: the packaged base, offline, before torchgeo weights still to download
        ("torchgeo:Unet_Weights.OAM_RGB_RESNET50_TCD", "pkg:efficientnet-lite0"),
    ],
)
def test_non_commercial_refusal_names_an_alternative_with_the_same_bands(refused, alternative):
    with pytest.raises(BaseModelError) as info:
        load_base(refused, require_commercial=True)
    found = re.search(r"\(e\.g\. ((?:torchgeo|pkg):[\w.\-]+)", str(info.value))
    assert found and found.group(1) == alternative, str(info.value)
    chosen = get_entry(alternative)
    assert chosen.supported and chosen.commercial_use
    assert chosen.bands == get_entry(refused).bands


def test_torchgeo_route_loads_from_torch_cache():
    state = _fake_resnet18_state()
    folder = torch_hub_checkpoints()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "resnet18_sentinel2_rgb_moco-e3a335e3.pth")
    try:
        assert get_entry(RGB_MOCO).available_offline
        base = load_base(RGB_MOCO)
        assert "fc.weight" not in base.encoder_state
        net, spec, plan = build_adapted_network(base, ["red", "green", "blue"], ["tree"])
        assert spec.encoder == "resnet18" and plan is not None and plan.identity
        assert torch.equal(net.encoder.conv1.weight, state["conv1.weight"])
        assert torch.equal(net.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
        # bands adapted: nir new, blue dropped
        net2, _, plan2 = build_adapted_network(base, ["nir", "red", "green"], ["tree"])
        assert torch.equal(net2.encoder.conv1.weight[:, 1], state["conv1.weight"][:, 0])
        assert plan2.dropped == ("blue",)
    finally:
        (folder / "resnet18_sentinel2_rgb_moco-e3a335e3.pth").unlink()


def _fake_weights_enum(url: str, model: str = "resnet18"):
    from torchvision.models._api import Weights, WeightsEnum

    class Fake_Weights(WeightsEnum):
        TINY = Weights(
            url=url,
            transforms=None,
            meta={
                "model": model,
                "in_chans": 3,
                "bands": ["B4", "B3", "B2"],
                "dataset": "SSL4EO-L",
            },
        )

    return Fake_Weights.TINY


def test_import_verifies_sha_and_makes_weights_offline(tmp_path, monkeypatch):
    src = tmp_path / "download.pth"
    torch.save(_fake_resnet18_state(1), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    fake = _fake_weights_enum(f"https://example.invalid/w/resnet18_fake-{digest[:8]}.pth")
    monkeypatch.setattr(
        torchgeo_kind, "torchgeo_weights", lambda: {"torchgeo:Fake_Weights.TINY": fake}
    )
    with pytest.raises(BaseModelError, match="not available offline"):
        load_base("torchgeo:Fake_Weights.TINY")
    target = import_weights(src, "torchgeo:Fake_Weights.TINY")
    assert target == torch_hub_checkpoints() / f"resnet18_fake-{digest[:8]}.pth"
    entry = get_entry("torchgeo:Fake_Weights.TINY")
    assert entry.available_offline and entry.licence == "CC0-1.0"
    base = load_base("torchgeo:Fake_Weights.TINY")
    assert base.entry.sha256 == digest  # the card records the file's whole hash
    assert torch.equal(
        base.encoder_state["conv1.weight"], torch.load(src, weights_only=True)["conv1.weight"]
    )
    target.unlink()


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ("junk", r"is not a PyTorch weights file \(neither a zip nor a pickle checkpoint\)"),
        # text the pickle reader takes for opcodes fails with "KeyError: 101" (the 'e')
        ("text", r"is not a PyTorch weights file \(neither a zip nor a pickle checkpoint\)"),
        ("another architecture", r"is not torchgeo:Fake_Weights\.TINY's weights"),
    ],
)
def test_import_of_weights_without_a_published_hash_must_fit(tmp_path, monkeypatch, what, said):
    # torchgeo publishes some files without a hash prefix: the file must still be the
    # weights of that network, or training would fail later with a traceback
    fake = _fake_weights_enum("https://example.invalid/w/resnet50_fake.pth", model="resnet50")
    monkeypatch.setattr(
        torchgeo_kind, "torchgeo_weights", lambda: {"torchgeo:Fake_Weights.TINY": fake}
    )
    src = tmp_path / "download.pth"
    if what == "junk":
        src.write_text("<html>404 Not Found</html>")
    elif what == "text":
        src.write_text("hello\n")
    else:
        torch.save(_fake_resnet18_state(), src)  # a ResNet-18's tensors for a ResNet-50
    with pytest.raises(BaseModelError, match=r"download\.pth: " + said) as exc:
        import_weights(src, "torchgeo:Fake_Weights.TINY")
    assert "download the file again from https://example.invalid/" in str(exc.value)
    assert not (torch_hub_checkpoints() / "resnet50_fake.pth").exists()


def test_import_again_replaces_other_weights_only_with_overwrite(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from geotl.cli.main import cli

    # torchgeo publishes this file without a hash: another download of other weights would
    # pass every check and silently replace the weights earlier models were trained on
    fake = _fake_weights_enum("https://example.invalid/w/resnet18_nohash.pth")
    monkeypatch.setattr(
        torchgeo_kind, "torchgeo_weights", lambda: {"torchgeo:Fake_Weights.TINY": fake}
    )
    first, second = tmp_path / "first.pth", tmp_path / "second.pth"
    torch.save(_fake_resnet18_state(1), first)
    torch.save(_fake_resnet18_state(2), second)
    target = torch_hub_checkpoints() / "resnet18_nohash.pth"

    def run(*args: str):
        return CliRunner().invoke(
            cli, ["models", "import", *args, "--as", "torchgeo:Fake_Weights.TINY"]
        )

    assert run(str(first)).exit_code == 0
    assert run(str(first)).exit_code == 0  # the same file again: nothing to replace
    result = run(str(second))
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "resnet18_nohash.pth" in result.output and "--overwrite" in result.output
    assert target.read_bytes() == first.read_bytes()
    assert run(str(second), "--overwrite").exit_code == 0
    assert target.read_bytes() == second.read_bytes()


def test_import_of_weights_for_other_bands_names_both_band_counts(tmp_path, monkeypatch):
    import timm

    # a 4-band checkpoint of the right architecture for weights that take red, green, blue
    fake = _fake_weights_enum("https://example.invalid/w/resnet18_bands.pth")
    monkeypatch.setattr(
        torchgeo_kind, "torchgeo_weights", lambda: {"torchgeo:Fake_Weights.TINY": fake}
    )
    src = tmp_path / "download.pth"
    torch.save(timm.create_model("resnet18", pretrained=False, in_chans=4).state_dict(), src)
    with pytest.raises(BaseModelError) as exc:
        import_weights(src, "torchgeo:Fake_Weights.TINY")
    said = str(exc.value)
    assert said.startswith(f"{src}: is not torchgeo:Fake_Weights.TINY's weights: ")
    assert (
        "its first layer takes 4 bands, torchgeo:Fake_Weights.TINY takes 3 (red, green, blue)"
        in said
    )
    assert "catalogue entry is wrong" not in said  # the file is, not the catalogue
    assert not (torch_hub_checkpoints() / "resnet18_bands.pth").exists()


def test_import_refuses_what_nothing_can_verify(tmp_path, monkeypatch):
    # no hash published and a network geotl cannot build: a ResNet's file (or any junk)
    # would be "ready offline" for weights no geotl command can use
    fake = _fake_weights_enum("https://example.invalid/w/vit_nohash.pth", model="vit_small")
    monkeypatch.setattr(
        torchgeo_kind, "torchgeo_weights", lambda: {"torchgeo:Fake_Weights.TINY": fake}
    )
    src = tmp_path / "download.pth"
    torch.save(_fake_resnet18_state(), src)
    with pytest.raises(BaseModelError) as exc:
        import_weights(src, "torchgeo:Fake_Weights.TINY")
    said = str(exc.value)
    assert said.startswith(f"{src}: cannot verify this file as torchgeo:Fake_Weights.TINY")
    assert "vit_small" in said and "geotl models list --supported" in said
    assert not (torch_hub_checkpoints() / "vit_nohash.pth").exists()


def test_list_shows_the_sha256_of_weights_imported_without_a_published_hash(tmp_path, monkeypatch):
    fake = _fake_weights_enum("https://example.invalid/w/resnet18_listed.pth")
    monkeypatch.setattr(
        torchgeo_kind, "torchgeo_weights", lambda: {"torchgeo:Fake_Weights.TINY": fake}
    )
    src = tmp_path / "download.pth"
    torch.save(_fake_resnet18_state(3), src)
    listed = {e.id: e for e in list_entries()}["torchgeo:Fake_Weights.TINY"]
    assert listed.sha256 is None and not listed.available_offline
    target = import_weights(src, "torchgeo:Fake_Weights.TINY")
    listed = {e.id: e for e in list_entries()}["torchgeo:Fake_Weights.TINY"]
    assert listed.available_offline
    assert listed.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    target.unlink()


def test_import_sha_mismatch_names_both_hashes(tmp_path):
    src = tmp_path / "resnet18_sentinel2_rgb_moco-e3a335e3.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(BaseModelError) as exc:
        import_weights(src, RGB_MOCO)
    assert digest in str(exc.value) and "e3a335e3" in str(exc.value)
    assert not (torch_hub_checkpoints() / src.name).exists()
    # a path that is not there: said with the file to fetch and where from
    with pytest.raises(BaseModelError, match="not found: check the path, or download") as exc:
        import_weights(tmp_path / "nowhere.pth", RGB_MOCO)
    assert "resnet18_sentinel2_rgb_moco-e3a335e3.pth from https://" in str(exc.value)


def test_efficientnet_lite0_maps_key_for_key_onto_timm(shared_data):
    import rasterio
    import timm

    base = load_base("pkg:efficientnet-lite0")
    net, spec, plan = build_adapted_network(base, ["red", "green", "blue"], ["tree"])
    assert spec.encoder == "tu-tf_efficientnet_lite0" and plan.identity
    encoder_keys = {k for k in net.encoder.state_dict() if not k.endswith("num_batches_tracked")}
    assert encoder_keys <= set(base.encoder_state)  # every encoder tensor comes from the file
    # the full classifier with the mapped weights recognises an aerial forest scene
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    src = torch.load(packaged.lite0_path(), weights_only=True)
    full.load_state_dict(dict(zip(full.state_dict(), src.values(), strict=True)), strict=True)
    with rasterio.open(Path(__file__).parents[2] / "regions/demo-osbs/imagery/OSBS_029.tif") as ds:
        img = ds.read()[:, :224, :224].astype(np.float32) / 255.0
    x = torch.from_numpy((img - 0.5) / 0.5)[None]
    with torch.no_grad():
        top = full(x).softmax(-1).topk(3).indices[0].tolist()
        feats_full = full.forward_intermediates(x, intermediates_only=True)[-1]
        feats_enc = net.encoder.eval()(x)[-1]
    assert set(top) & {
        970,
        972,
        973,
        975,
        976,
        979,
    }  # alp, cliff, coral reef?, lakeside, promontory, valley
    assert torch.allclose(feats_full, feats_enc, atol=1e-5)


def test_ukis_conversion_matches_onnxruntime():
    import onnxruntime as ort

    from geotl.models import ukis

    net = ukis.build_torch_unet("4b")
    x = np.random.default_rng(0).standard_normal((1, 4, 256, 256)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    ref32 = ort.InferenceSession(
        ukis.onnx_float32_graph("4b"), opts, providers=["CPUExecutionProvider"]
    )
    ref16 = ort.InferenceSession(
        str(ukis.onnx_path("4b")), opts, providers=["CPUExecutionProvider"]
    )
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    assert np.abs(out - ref32.run(None, {"input": x})[0]).max() < 1e-4
    # the shipped graph computes in float16: same answer within float16 rounding
    out16 = ref16.run(None, {"input": x})[0]
    assert np.abs(out - out16).max() < 0.02 * np.abs(out16).max()
    assert (out.argmax(1) == out16.argmax(1)).mean() > 0.99


def test_ukis_base_is_cached_with_sha(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOTL_CACHE_DIR", str(tmp_path))
    base = load_base("pkg:ukis-csmask-4b")
    assert base.entry.bands == ["blue", "green", "red", "nir"]
    cached = list((tmp_path / "ukis-csmask").glob("*.safetensors"))
    assert len(cached) == 1
    record = cached[0].with_suffix(".json").read_text()
    assert hashlib.sha256(cached[0].read_bytes()).hexdigest() in record
    again = load_base("pkg:ukis-csmask-4b")
    assert torch.equal(
        again.encoder_state["_conv_stem.weight"], base.encoder_state["_conv_stem.weight"]
    )
    _net, _, plan = build_adapted_network(again, ["nir", "red", "green"], ["field"])
    assert plan.dropped == ("blue",)


def test_ukis_base_loads_where_the_cache_cannot_be_written(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GEOTL_CACHE_DIR", str(tmp_path))
    (tmp_path / "ukis-csmask").write_text("")  # as a read-only cache: no folder can be made
    base = load_base("pkg:ukis-csmask-4b")
    assert base.encoder_state["_conv_stem.weight"].shape[1] == 4
    assert "converted for this run only" in caplog.text and "GEOTL_CACHE_DIR" in caplog.text


def test_ukis_base_converts_again_over_a_damaged_record(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOTL_CACHE_DIR", str(tmp_path))
    first = load_base("pkg:ukis-csmask-4b")
    (record,) = (tmp_path / "ukis-csmask").glob("*.json")
    record.write_text(record.read_text()[:20])  # cut short by a full disk
    again = load_base("pkg:ukis-csmask-4b")
    assert torch.equal(
        again.encoder_state["_conv_stem.weight"], first.encoder_state["_conv_stem.weight"]
    )
    assert json.loads(record.read_text())["sha256"]  # written whole again


def test_a_file_base_that_is_a_folder_says_so(tmp_path):
    folder = tmp_path / "weights.pth"
    folder.mkdir()
    with pytest.raises(BaseModelError) as exc:
        load_base(f"file:{folder}")
    assert str(exc.value).startswith(f"{folder}: is a folder, not a weights file: ")
    assert "model:<MODEL_DIR>" in str(exc.value)


def test_a_truncated_download_is_called_so(tmp_path, monkeypatch):
    fake = _fake_weights_enum("https://example.invalid/w/resnet18_cut.pth")
    monkeypatch.setattr(
        torchgeo_kind, "torchgeo_weights", lambda: {"torchgeo:Fake_Weights.TINY": fake}
    )
    whole = tmp_path / "whole.pth"
    torch.save(_fake_resnet18_state(), whole)
    cut = tmp_path / "download.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    for attempt in (lambda: import_weights(cut, "torchgeo:Fake_Weights.TINY"),
                    lambda: load_base(f"file:{cut}")):  # fmt: skip
        with pytest.raises(BaseModelError) as exc:
            attempt()
        assert "(a zip checkpoint cut short or damaged)" in str(exc.value)
        assert "miniz" not in str(exc.value)


def test_a_file_base_that_is_no_checkpoint_says_so(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello\n")  # torch.load: "KeyError: 101"
    with pytest.raises(BaseModelError) as exc:
        load_base(f"file:{path}")
    assert str(exc.value) == (
        f"{path}: cannot read weights (neither a zip nor a pickle checkpoint); "
        "give a safetensors or plain state-dict .pth"
    )


def test_a_file_base_of_another_architecture_says_how_to_name_it(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in _fake_resnet18_state().items()}, str(path))
    base = load_base(f"file:{path}")
    with pytest.raises(
        BaseModelError,
        match=r"for encoder tu-tf_efficientnet_lite0: name the architecture .*--encoder NAME",
    ):
        build_adapted_network(base, ["red", "green", "blue"], ["tree"])
    net, _, _ = build_adapted_network(
        load_base(f"file:{path}", encoder="resnet18"), ["red", "green", "blue"], ["tree"],
        encoder="resnet18",
    )  # fmt: skip
    assert net is not None

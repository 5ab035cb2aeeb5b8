import hashlib
import json
from pathlib import Path

import torch
from click.testing import CliRunner

from geotl.cli.main import cli

torch.set_num_threads(2)
DEMO = Path(__file__).resolve().parents[2] / "regions" / "demo-osbs.toml"


def test_models_list_table_and_json():
    runner = CliRunner()
    res = runner.invoke(cli, ["models", "list"])
    assert res.exit_code == 0
    assert (
        "pkg:efficientnet-lite0" in res.stdout
        and "torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO" in res.stdout
    )
    table = res.stdout
    res = runner.invoke(cli, ["models", "list", "--json"])
    ids = [e["id"] for e in json.loads(res.stdout)]
    rows = [line.split()[0] for line in table.splitlines()[1:]]
    assert rows == ids  # whole, to copy: the longest are over 44 characters
    res = runner.invoke(cli, ["models", "list", "--json", "--supported"])
    entries = json.loads(res.stdout)
    assert all(e["supported"] for e in entries) and any(
        e["id"] == "pkg:ukis-csmask-6b" for e in entries
    )


def test_models_import_sha_mismatch_exit_2(tmp_path):
    f = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, f)
    res = CliRunner().invoke(
        cli, ["models", "import", str(f), "--as", "torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO"]
    )
    assert res.exit_code == 2
    assert hashlib.sha256(f.read_bytes()).hexdigest() in res.stderr and "e3a335e3" in res.stderr


def test_train_unknown_base_exit_2(tmp_path):
    res = CliRunner().invoke(
        cli, ["train", str(DEMO), "--out", str(tmp_path / "m"), "--base", "imagenet"]
    )
    assert res.exit_code == 2
    assert "pkg:efficientnet-lite0" in res.stderr and not (tmp_path / "m").exists()


def test_train_offline_torchgeo_says_how_to_import(tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "train",
            str(DEMO),
            "--out",
            str(tmp_path / "m"),
            "--base",
            "torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO",
        ],
    )
    assert res.exit_code == 2 and "geotl models import" in res.stderr


def test_train_missing_chips_dir(tmp_path):
    res = CliRunner().invoke(
        cli, ["train", str(DEMO), "--out", str(tmp_path / "m"), "--chips", str(tmp_path / "nope")]
    )
    assert res.exit_code == 2 and "chips" in res.stderr


def test_train_then_evaluate_cli(demo_chips, tmp_path):
    runner = CliRunner()
    out = tmp_path / "model"
    res = runner.invoke(
        cli,
        [
            "train",
            str(DEMO),
            "--out",
            str(out),
            "--chips",
            str(demo_chips),
            "--steps",
            "4",
            "--val-every",
            "2",
            "--max-labels",
            "5",
            "--freeze",
            "backbone",
            "--no-pixel-model",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == str(out)
    card = json.loads((out / "model.json").read_text())
    assert (
        card["label_budget"] == 5
        and card["regions"][0]["labels_used"] == 5
        and card["freeze"] == "backbone"
    )
    assert card["network"]["arch"] == "unet" and "pixel_model" not in card["metrics"]
    res = runner.invoke(
        cli, ["train", str(DEMO), "--out", str(out), "--chips", str(demo_chips), "--epochs", "1"]
    )
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    metrics_file = tmp_path / "metrics.json"
    res = runner.invoke(
        cli,
        ["evaluate", str(out), str(DEMO), "--chips", str(demo_chips), "--out", str(metrics_file)],
    )
    assert res.exit_code == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert metrics["pixel"] == json.loads(metrics_file.read_text())["pixel"]
    # a person's line on stderr: pixel IoU with its interval, and object F1
    iou, f1 = metrics["pixel"]["mean_iou"], metrics["objects"]["tree"]["f1"]
    assert f"geotl evaluate: test mean IoU {iou:.2f} [" in res.stderr
    assert f"; object F1 {f1:.2f} [" in res.stderr


def test_evaluate_missing_model_dir(tmp_path):
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "none"), str(DEMO)])
    assert res.exit_code == 2 and "model folder not found" in res.stderr


def test_curve_small(demo_chips, tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(tmp_path / "curve"),
            str(DEMO),
            "--chips",
            str(demo_chips),
            "--curve",
            "3,8",
            "--bases",
            "pkg:efficientnet-lite0,none",
            "--steps",
            "2",
        ],
    )
    assert res.exit_code == 0, res.stderr
    table = json.loads(res.stdout)
    assert len(table["rows"]) == 4 and {r["base"] for r in table["rows"]} == {
        "pkg:efficientnet-lite0",
        "none",
    }
    # whether the base's network or the per-pixel model / the base's own weights made a row
    assert all(r["kept"] in ("network", "pixel model", "base weights") for r in table["rows"])
    assert (tmp_path / "curve" / "curve.png").stat().st_size > 1000


def test_curve_into_a_model_folder_of_other_regions_says_how_to_fix(tmp_path):
    """A model trained on several regions holds chips/<region>/: the curve must not say
    '--overwrite' (evaluate has none) nor chip over them."""
    model = tmp_path / "model"
    (model / "chips" / "harv").mkdir(parents=True)
    res = CliRunner().invoke(
        cli, ["evaluate", str(model), str(DEMO), "--curve", "3", "--bases", "none", "--steps", "2"]
    )
    assert res.exit_code == 2
    assert "chips of another region than demo-osbs" in res.stderr
    assert "give --curve a folder of its own" in res.stderr and "--overwrite" not in res.stderr
    assert [p.name for p in (model / "chips").iterdir()] == ["harv"]


def test_curve_refuses_a_base_the_licence_forbids_before_any_work(tmp_path):
    text = DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    region = tmp_path / "commercial.toml"
    region.write_text(text.replace("[model]\n", "[model]\nrequire_commercial_licence = true\n"))
    res = CliRunner().invoke(
        cli,
        [
            "evaluate", str(tmp_path / "curve"), str(region), "--curve", "3",
            "--bases", "pkg:efficientnet-lite0,torchgeo:ResNet50_Weights.SENTINEL2_ALL_SECO_ECO",
        ],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "does not permit commercial use" in res.stderr
    assert not (tmp_path / "curve").exists()  # nothing chipped, nothing trained


def test_train_says_when_a_per_pixel_model_or_the_base_was_kept(demo_model):
    """Which weights the folder holds was only in the log (hidden by -q)."""
    from geotl.cli.train import summary
    from geotl.models.artefact import read_card

    card = read_card(demo_model)
    val = card.metrics["val_iou"]
    assert summary(card) == f"geotl train: {card.model_id}, val IoU {val:.4f}"
    pixel = {"kept": True, "network_val_iou": 0.1234, "val_iou": 0.2}
    kept = card.model_copy(update={"metrics": card.metrics | {"pixel_model": pixel}})
    assert summary(kept).endswith("(the per-pixel model; the network's val IoU 0.1234)")
    base = card.model_copy(update={"metrics": card.metrics | {"kept_base": True}})
    assert "(the base model's own weights" in summary(base)


def test_train_does_not_call_a_training_chip_score_val(demo_model):
    """A region whose split gives no val chips is scored on its training chips."""
    from geotl.cli.train import summary
    from geotl.models.artefact import read_card

    card = read_card(demo_model)
    on_train = card.model_copy(update={"metrics": card.metrics | {"validated_on": "train"}})
    line = summary(on_train)
    assert f"train-chip IoU {card.metrics['val_iou']:.4f} (no val chips" in line
    assert "val IoU" not in line

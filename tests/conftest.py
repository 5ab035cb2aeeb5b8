"""Shared fixtures: paths to the real data in ../shared/data and small helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# run by Debian's system Python (with QGIS) in a subprocess, never imported by pytest
collect_ignore = ["qgis/check_layers.py", "qgis/run_plugin.py", "qgis/check_alerts.py"]

SHARED_DATA = Path(os.environ.get("GEOTL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets of ../shared/data (skip when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never reach a model hub: point torch/HF caches at an empty temporary folder."""
    cache = tmp_path_factory.getbasetemp() / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))
    monkeypatch.setenv("GEOTL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "geotl-cache"))


@pytest.fixture
def titles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The titles matplotlib is asked to draw (quicklooks, contact sheets), in order."""
    from matplotlib.axes import Axes

    said: list[str] = []
    set_title = Axes.set_title

    def record(self: Axes, label: str, *args: Any, **kwargs: Any) -> Any:
        said.append(label)
        return set_title(self, label, *args, **kwargs)

    monkeypatch.setattr(Axes, "set_title", record)
    return said


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: on a busy 2-core machine more threads only spin (10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- train/evaluate: the demo region's chips and one tiny model, shared per session ----

DEMO_REGION = REPO / "regions" / "demo-osbs.toml"


@pytest.fixture(scope="session")
def demo_chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chips of the demo region (64 px), cut once per session."""
    from geotl.chips import chip_region
    from geotl.config import load_region

    out = tmp_path_factory.mktemp("demo") / "chips"
    chip_region(load_region(DEMO_REGION), out)
    return out


@pytest.fixture(scope="session")
def demo_model_options(demo_chips: Path) -> Any:
    """The :class:`~geotl.train.TrainOptions` of :func:`demo_model` (to train it again)."""
    from geotl.train import TrainOptions

    return TrainOptions(
        chips=(demo_chips,),
        epochs=2,
        samples_per_epoch=1,
        seed=0,
        batch_size=8,
        pixel_model=False,  # the U-Net, whatever validation prefers
    )


@pytest.fixture(scope="session")
def demo_model(demo_model_options: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch model of the demo region (efficientnet-lite0 base)."""
    import torch

    from geotl.config import load_region
    from geotl.train import train_model

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("model") / "m"
    train_model([load_region(DEMO_REGION)], out, demo_model_options)
    return out

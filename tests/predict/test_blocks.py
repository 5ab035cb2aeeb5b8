"""Blocks of window rows (geotl.predict.blocks) join into exactly the whole scene."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from geotl.predict import PredictOptions, predict_scene
from geotl.predict.blocks import BlockMarginError, RowBlock, plan_blocks
from geotl.predict.engine import load_model

from .data import write_texture_model

REAL_SCENE = (
    Path(__file__).resolve().parents[2] / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
)
# small windows so that a 400 px scene holds several blocks with their margins
OPTIONS = PredictOptions(
    window_px=32, overlap_px=8, vector_window_px=32, halo_px=8, min_area_m2=0.05, progress=False
)


def test_plan_blocks_cover_the_rows_in_whole_core_windows() -> None:
    for height, n, core in [(400, 4, 32), (1000, 3, 128), (97, 5, 32), (64, 1, 64)]:
        rows = plan_blocks(height, n, core)
        assert rows[0][0] == 0 and rows[-1][1] == height
        assert all(b == c for (_, b), (c, _) in itertools.pairwise(rows))
        assert all(a % core == 0 for a, _ in rows) and len(rows) <= n


@pytest.mark.usefixtures("one_thread")
def test_blocks_of_a_real_scene_equal_the_whole_scene(tmp_path: Path) -> None:
    write_texture_model(tmp_path / "model")
    artefact = load_model(tmp_path / "model", "torch")
    whole = predict_scene(artefact, REAL_SCENE, OPTIONS).features
    assert len(whole) > 50
    parts, retries = [], 0
    for start, stop in plan_blocks(400, 4, 32):
        margin = 8  # too small for some objects: the block must say so, not cut them
        while True:
            try:
                det = predict_scene(
                    artefact, REAL_SCENE, OPTIONS, block=RowBlock(start, stop, margin)
                )
                break
            except BlockMarginError as exc:
                retries += 1
                # the error names the rows the object needs; the next margin covers them
                start_row, stop_row = exc.rows
                assert start_row < max(start - margin, 0) or stop_row > min(stop + margin, 400)
                widened = RowBlock(start, stop, margin).widened(exc.rows)
                assert widened.reliable(400)[0] <= max(start_row, 0)
                assert widened.reliable(400)[1] >= min(stop_row, 400)
                margin = widened.margin_px
        parts.append(det.features)
    joined = pd.concat(parts, ignore_index=True)
    assert retries > 0
    assert list(joined["id"]) == list(whole["id"])
    assert (joined["score"].to_numpy() == whole["score"].to_numpy()).all()
    assert (joined["area_m2"].to_numpy() == whole["area_m2"].to_numpy()).all()
    assert all(a.equals_exact(b, 0) for a, b in zip(joined.geometry, whole.geometry, strict=True))


def test_a_block_refuses_what_does_not_join(tmp_path: Path) -> None:
    write_texture_model(tmp_path / "model")
    artefact = load_model(tmp_path / "model", "torch")
    with pytest.raises(ValueError, match="ground grid"):
        predict_scene(
            artefact,
            REAL_SCENE,
            PredictOptions(ground_grid=False, progress=False),
            block=RowBlock(0, 128, 64),
        )

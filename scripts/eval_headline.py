"""Score one model with whichever geotl is first on PYTHONPATH; print the headline figures.

Used to compare evaluators (BENCHMARKS.md, "Every test pixel and object counted once"):

    PYTHONPATH=<geotl tree> python scripts/eval_headline.py MODEL_DIR REGION.toml CHIPS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from geotl.config import load_region
from geotl.evaluate import evaluate_model


def main() -> None:
    """Print mean IoU, object F1 (with CIs), object counts and pixels counted, as JSON."""
    model, region, chips = sys.argv[1:4]
    m = evaluate_model(Path(model), load_region(Path(region)), chips_dir=Path(chips), n_boot=1000)
    obj = next(iter(m["objects"].values()))
    print(
        json.dumps(
            {
                "mean_iou": m["pixel"]["mean_iou"],
                "ci": m["pixel"]["mean_iou_ci95"],
                "f1": obj["f1"],
                "f1_ci": obj["f1_ci95"],
                "tp": obj["tp"],
                "fp": obj["fp"],
                "fn": obj["fn"],
                "pixels": {k: v["pixels"] for k, v in m["pixel"]["per_class"].items()},
                "chips": m["chips"],
            }
        )
    )


if __name__ == "__main__":
    main()

"""An exported graph in ONNX Runtime as a torch module, for code written for the network.

``geotl evaluate`` scores a model through its torch network; an ``.onnx`` file opened with
:func:`geotl.predict.engine.load_model` gets this module as its network, built on first
use (prediction never needs it, and then never imports torch).
"""

from __future__ import annotations

import numpy as np
import torch

from geotl.predict.engine import OrtEngine

__all__ = ["OrtNetwork"]


class OrtNetwork(torch.nn.Module):
    """An :class:`OrtEngine` as a torch module (normalised in, log-probabilities out).

    Log-probabilities are valid logits (their softmax and argmax are the graph's), so code
    written for the torch network (``geotl evaluate``) runs an exported graph unchanged.
    """

    def __init__(self, engine: OrtEngine) -> None:
        super().__init__()
        self.engine = engine

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[dict[str, torch.Tensor]]:
        """``(B, bands, H, W)`` normalised -> ``(B, 1 + classes, H, W)`` log-probabilities.

        An instance model's border and contact maps come as log-odds (sigmoid logits).
        A detector's graph gives what torchvision's detector gives in eval mode: per
        window a dict of ``boxes``, ``scores`` and ``labels``.
        """
        batch = x.detach().cpu().numpy().astype(np.float32, copy=False)
        if self.engine.card.task == "detection":
            return [
                {"boxes": torch.from_numpy(b), "scores": torch.from_numpy(s),
                 "labels": torch.from_numpy(lab)}
                for b, s, lab in self.engine.detections(batch, self.engine.card.nms_iou)
            ]  # fmt: skip
        scaled = batch * self.engine._std + self.engine._mean
        probs = torch.from_numpy(self.engine.run(scaled.astype(np.float32, copy=False)))
        logits = torch.log(probs.clamp_min(1e-30))
        if self.engine.card.task == "instances":
            # the maps after background + classes are sigmoids: their logits are log-odds
            k = 1 + len(self.engine.card.classes)
            logits[:, k:] -= torch.log1p(-probs[:, k:].clamp_max(1 - 1e-7))
        return logits.to(x.device)

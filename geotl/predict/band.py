"""The band of rows that overlapping windows' probabilities are blended into, on a device.

Windows arrive in raster order, so only the rows between the finished-row frontier and the
bottom of the current row of windows are ever being blended: the band holds those (at most
about one window high), and :meth:`BandAccumulator.finish` hands over the rows no later
window touches and moves the band down. The blending weights come from
:func:`geotl.predict.windows.blend_weights`.

>>> band = BandAccumulator(1, 2, 3, "cpu")
>>> band.add(np.ones((1, 2, 2), np.float32), np.full((2, 2), 0.5, np.float32),
...          np.ones((2, 2), bool), Window(1, 0, 2, 2))
>>> blended, valid = band.finish(1)
>>> blended.tolist(), valid.tolist(), band.top
([[[0.0, 1.0, 1.0]]], [[False, True, True]], 1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.windows import Window

from geotl.models.artefact import on_cpu

if TYPE_CHECKING:
    import torch

__all__ = ["BandAccumulator"]


class BandAccumulator:
    """Blends windows into a band of rows ``(channels + 1, rows, width)`` on a device.

    The last channel sums the weights; :meth:`finish` divides by it.

    On the CPU the band is a numpy array, and so are what is added to it and what
    :meth:`finish` gives: prediction on the CPU never needs torch (and torch would spread
    these small sums over its thread pool, whose spinning threads take the cores from the
    other stages). On an accelerator they are torch tensors on it. Both multiply, then add
    (no fused multiply-add), so both round alike.
    """

    def __init__(self, channels: int, rows: int, width: int, device: str) -> None:
        self.channels, self.width, self.device = channels, width, str(device)
        self.cpu = on_cpu(self.device)
        self.top = 0  # scene row of the band's first row
        self.acc: Any = self._zeros((channels + 1, rows, width))

    def _zeros(self, shape: tuple[int, int, int]) -> Any:
        if self.cpu:
            return np.zeros(shape, dtype=np.float32)
        import torch

        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def add(
        self,
        probs: np.ndarray | torch.Tensor,
        weights: np.ndarray | torch.Tensor,
        valid: np.ndarray | torch.Tensor,
        window: Window,
    ) -> None:
        """Add ``probs (channels, h, w)`` weighted by ``weights * valid`` at ``window``.

        ``window``: where ``probs`` lies in the scene (integer offsets and sizes).
        """
        r0, c0 = window.row_off, window.col_off
        r1, c1 = r0 + window.height, c0 + window.width
        if r1 - self.top > self.acc.shape[1]:  # never for row-ordered plans; safe anyway
            grow = self._zeros((self.channels + 1, r1 - self.top - self.acc.shape[1], self.width))
            if self.cpu:
                self.acc = np.concatenate([self.acc, grow], 1)
            else:
                import torch

                self.acc = torch.cat([self.acc, grow], 1)
        view = self.acc[:, r0 - self.top : r1 - self.top, c0:c1]
        w = weights * valid
        if self.cpu:
            view[:-1] += probs * w
            view[-1] += w
            return
        view[:-1].add_(probs * w)
        view[-1].add_(w)

    def finish(self, rows_end: int) -> tuple[Any, Any]:
        """Blended ``(channels, n, width)`` and valid ``(n, width)`` of rows ``top..rows_end``.

        The band then starts at ``rows_end``. Numpy arrays on the CPU, else tensors.
        """
        n = rows_end - self.top
        keep = self.acc.shape[1] - n
        done = self.acc[:, :n]
        wsum = done[-1]
        valid = wsum > 0
        if self.cpu:
            blended = done[:-1] / np.where(valid, wsum, np.float32(1.0))
        else:
            import torch

            blended = done[:-1] / torch.where(valid, wsum, torch.ones_like(wsum))
        rest = self._zeros(tuple(self.acc.shape))
        if keep > 0:
            rest[:, :keep] = self.acc[:, n:]
        self.acc = rest
        self.top = rows_end
        return blended, valid

"""The band of rows that overlapping windows' probabilities are blended into, on a device.

Windows arrive in raster order, so only the rows between the finished-row frontier and the
bottom of the current row of windows are ever being blended: the band holds those (at most
about one window high), and :meth:`BandAccumulator.finish` hands over the rows no later
window touches and moves the band down. The blending weights come from
:func:`geotl.predict.windows.blend_weights`.

>>> band = BandAccumulator(1, 2, 3, torch.device("cpu"))
>>> band.add(torch.ones(1, 2, 2), torch.full((2, 2), 0.5), torch.ones(2, 2), Window(1, 0, 2, 2))
>>> blended, valid = band.finish(1)
>>> blended.tolist(), valid.tolist(), band.top
([[[0.0, 1.0, 1.0]]], [[False, True, True]], 1)
"""

from __future__ import annotations

import numpy as np
import torch
from rasterio.windows import Window

__all__ = ["BandAccumulator"]


class BandAccumulator:
    """Blends windows into a band of rows ``(channels + 1, rows, width)`` on a device.

    The last channel sums the weights; :meth:`finish` divides by it.

    On the CPU the sums run in numpy on the tensors' memory: torch would spread these small
    sums over its thread pool, whose spinning threads take the cores from the other stages.
    Both multiply, then add (no fused multiply-add), so both round alike.
    """

    def __init__(self, channels: int, rows: int, width: int, device: torch.device) -> None:
        self.channels, self.width, self.device = channels, width, device
        self.cpu = device.type == "cpu"
        self.top = 0  # scene row of the band's first row
        self.acc = torch.zeros((channels + 1, rows, width), dtype=torch.float32, device=device)

    def add(
        self,
        probs: torch.Tensor,
        weights: torch.Tensor,
        valid: torch.Tensor,
        window: Window,
    ) -> None:
        """Add ``probs (channels, h, w)`` weighted by ``weights * valid`` at ``window``.

        ``window``: where ``probs`` lies in the scene (integer offsets and sizes).
        """
        r0, c0 = window.row_off, window.col_off
        r1, c1 = r0 + window.height, c0 + window.width
        if r1 - self.top > self.acc.shape[1]:  # never for row-ordered plans; safe anyway
            grow = torch.zeros(
                (self.channels + 1, r1 - self.top - self.acc.shape[1], self.width),
                dtype=self.acc.dtype,
                device=self.device,
            )
            self.acc = torch.cat([self.acc, grow], 1)
        view = self.acc[:, r0 - self.top : r1 - self.top, c0:c1]
        if self.cpu:
            v = view.numpy()
            w = weights.numpy() * valid.numpy()
            v[:-1] += probs.numpy() * w
            v[-1] += w
            return
        w_t = weights * valid
        view[:-1].add_(probs * w_t)
        view[-1].add_(w_t)

    def finish(self, rows_end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Blended ``(channels, n, width)`` and valid ``(n, width)`` of rows ``top..rows_end``.

        The band then starts at ``rows_end``.
        """
        n = rows_end - self.top
        keep = self.acc.shape[1] - n
        if self.cpu:
            acc = self.acc.numpy()
            wsum = acc[-1, :n]
            ok = wsum > 0
            blended = torch.from_numpy(acc[:-1, :n] / np.where(ok, wsum, 1.0))
            valid = torch.from_numpy(ok)
            rest = np.zeros_like(acc)
            rest[:, :keep] = acc[:, n:]
            self.acc = torch.from_numpy(rest)
        else:
            done = self.acc[:, :n]
            wsum_t = done[-1]
            valid = wsum_t > 0
            blended = done[:-1] / torch.where(valid, wsum_t, torch.ones_like(wsum_t))
            rest_t = torch.zeros_like(self.acc)
            if keep > 0:
                rest_t[:, :keep] = self.acc[:, n:]
            self.acc = rest_t
        self.top = rows_end
        return blended, valid

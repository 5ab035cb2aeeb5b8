"""Training on several devices: how many processes, which one this is, how a batch splits.

``geotl train --devices N [--num-nodes M] [--strategy ddp]`` runs N x M processes through
Lightning's DDP strategy. Every process runs :func:`geotl.train.train_model` from the top
(Lightning re-launches the command for each extra device; ``torchrun`` and ``srun`` start
them all): each loads the same chips and builds the same network from the same seed.

- The region's ``batch_size`` stays the *global* batch: every optimizer step draws the same
  chips as one process would, and rank ``r`` takes its slice of each step's draw
  (:class:`geotl.train.data.BatchShare`). More devices make a step cheaper without changing
  the recipe (steps, learning rate, the chips seen).
- Validation runs on all val chips in every process, so every rank computes the same score
  and early stopping takes the same decision everywhere.
- Only global rank 0 writes the model folder (and chips it into ``DIR/chips``); the other
  ranks chip into a private temporary folder when no ``--chips`` is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from geotl.cores import usable_cores
from geotl.errors import GeotlInputError

__all__ = ["STRATEGIES", "DeviceLayout", "launched_rank", "set_threads_per_process"]

#: Strategies ``--strategy`` accepts (DDP keeps every rank's state, which the best-weights
#: keeper needs; spawn-based strategies would lose it).
STRATEGIES = ("ddp",)

# minimum chips a device's share of a batch must hold: batch norm needs more than one
MIN_CHIPS_PER_DEVICE = 2


@dataclass(frozen=True)
class DeviceLayout:
    """Devices per node, nodes and the strategy that joins them.

    Args:
        devices: devices (GPUs, or CPU processes) per node.
        num_nodes: machines.
        strategy: Lightning strategy when there is more than one process.
    """

    devices: int = 1
    num_nodes: int = 1
    strategy: str = "ddp"

    @property
    def world_size(self) -> int:
        """Processes in all."""
        return self.devices * self.num_nodes

    @property
    def lightning_strategy(self) -> str:
        """What the Trainer is given: the strategy, or ``auto`` for a single process."""
        return self.strategy if self.world_size > 1 else "auto"

    def check(self, batch_size: int, accelerator: str = "cpu") -> None:
        """Refuse layouts the recipe cannot run on.

        Args:
            batch_size: the global batch.
            accelerator: ``cpu`` or ``cuda`` (``--device``).

        Raises:
            GeotlInputError: an unknown strategy, a batch that does not split into
                shares of at least two chips per device, more CUDA devices than this
                machine has, a launcher that started another number of processes, or
                machines and no launcher to start them.

        >>> DeviceLayout(2).check(8)
        >>> DeviceLayout(4, 2).check(8)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        geotl.errors.GeotlInputError: --batch-size 8 does not split over 8 devices (...): use --batch-size 16
        """
        if self.devices < 1 or self.num_nodes < 1:
            raise GeotlInputError(
                f"--devices {self.devices} --num-nodes {self.num_nodes}: both must be at least 1"
            )
        if self.strategy not in STRATEGIES:
            raise GeotlInputError(
                f"--strategy {self.strategy!r}: use one of {', '.join(STRATEGIES)}"
            )
        world = self.world_size
        if batch_size % world or batch_size // world < MIN_CHIPS_PER_DEVICE:
            need = world * MIN_CHIPS_PER_DEVICE
            raise GeotlInputError(
                f"--batch-size {batch_size} does not split over {world} devices (each needs an "
                f"equal share of at least {MIN_CHIPS_PER_DEVICE} chips): use --batch-size "
                f"{max(need, -(-batch_size // world) * world)}"
            )
        if accelerator == "cuda" and self.devices > (visible := torch.cuda.device_count()):
            # Lightning would refuse it only after chipping and loading, with a traceback
            raise GeotlInputError(
                f"--devices {self.devices} --device cuda: this machine shows {visible} CUDA "
                "device(s) (CUDA_VISIBLE_DEVICES): "
                + (f"use --devices {visible} or fewer" if visible else "use --device cpu")
            )
        env = os.environ
        started = env.get("WORLD_SIZE") or (
            env.get("SLURM_NTASKS") if int(env.get("SLURM_NTASKS", "1")) > 1 else None
        )
        if started is not None and int(started) != world:
            raise GeotlInputError(
                f"the launcher started {started} process(es) but --devices {self.devices} "
                f"--num-nodes {self.num_nodes} make {world}: give the launcher's numbers "
                "(--nproc-per-node and --nnodes, or srun's tasks)"
            )
        if (
            self.num_nodes > 1
            and started is None
            and not ("MASTER_ADDR" in env and "NODE_RANK" in env)
        ):
            # Lightning would wait for the other machines at localhost, forever
            raise GeotlInputError(
                f"--num-nodes {self.num_nodes}: start geotl on every machine with torchrun "
                "(--nnodes, --nproc-per-node, --rdzv-endpoint) or srun, or set MASTER_ADDR, "
                "MASTER_PORT and NODE_RANK on each (README, 'Training on several devices')"
            )


def launched_rank(layout: DeviceLayout) -> int:
    """This process's global rank, as its launcher set it (0 when nothing did).

    Read before any process group exists, from the variables ``torchrun`` (``RANK``),
    SLURM (``SLURM_PROCID``, only when more than one task runs) and Lightning's own
    launcher (``NODE_RANK``, ``LOCAL_RANK``) set.
    """
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"])
    return int(env.get("NODE_RANK", "0")) * layout.devices + int(env.get("LOCAL_RANK", "0"))


def set_threads_per_process(layout: DeviceLayout) -> None:
    """On CPU, share the cores between the node's processes (unless ``OMP_NUM_THREADS`` is set).

    Lightning does this for spawned processes only; re-launched ones would each take
    every core and slow each other down. The cores are those this process may run on (a
    SLURM job or ``taskset`` allots fewer than the machine has): sharing the machine's
    count gave each of 4 processes 16 threads on 4 allotted cores of 64.
    """
    if layout.devices > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, usable_cores() // layout.devices))

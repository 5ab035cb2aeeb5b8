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

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from geotl.cores import usable_cores
from geotl.errors import GeotlInputError, GeotlRuntimeError, error_text

__all__ = [
    "STRATEGIES",
    "DeviceLayout",
    "launched_rank",
    "process_lost_is_one_line",
    "set_threads_per_process",
]

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
        per_node = _launched_per_node()
        if started is not None and (int(started) != world or per_node not in (None, self.devices)):
            # the same total in another shape (2 nodes of 2 as --devices 4) failed only
            # after chipping and loading, in Lightning's environment check
            shape = "" if per_node is None else f", {per_node} per node,"
            mine = "" if per_node is None else f", {self.devices} per node"
            raise GeotlInputError(
                f"the launcher started {started} process(es){shape} but --devices "
                f"{self.devices} --num-nodes {self.num_nodes} make {world}{mine}: "
                f"{_launcher_layout(int(started))}"
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


def _launched_per_node() -> int | None:
    """Processes per node as the launcher says, or None when it does not say.

    torchrun's ``LOCAL_WORLD_SIZE`` (its ``--nproc-per-node``), SLURM's
    ``SLURM_NTASKS_PER_NODE`` (``4(x2)``: 2 nodes of 4; ``4,2``, nodes that differ, is None).
    """
    env = os.environ
    said = env.get("LOCAL_WORLD_SIZE") or env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    return int(said) if said.isdigit() and int(said) > 0 else None


def _launcher_layout(started: int) -> str:
    """The options that match what the launcher started, when it says per node.

    ``torchrun --nproc-per-node 2`` without ``--devices`` said "give the launcher's
    numbers" where it could say which.
    """
    per_node = _launched_per_node()
    if per_node is not None and started % per_node == 0:
        return f"use --devices {per_node} --num-nodes {started // per_node}"
    return (
        "give the launcher's numbers (--devices its --nproc-per-node or srun's tasks per "
        "node, --num-nodes its --nnodes or srun's nodes)"
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


# how gloo and NCCL word a peer that is gone: gloo raises a plain RuntimeError
_LOST_PEER = ("gloo", "nccl", "connection reset by peer", "connection closed by peer")


@contextlib.contextmanager
def process_lost_is_one_line(layout: DeviceLayout) -> Iterator[None]:
    """Turn "another training process is gone" into one line (exit 1) instead of a traceback.

    A rank that dies (killed, out of memory, its node lost) leaves the others failing in
    their next collective with the communication library's error: rank 0 printed a
    traceback of 120 lines that named gloo's source file, not the run. The rank that failed
    says its own error; this one says what happened to the run and what to do.

    Raises:
        GeotlRuntimeError: a collective failed because a peer process went away.
    """
    try:
        yield
    except RuntimeError as exc:
        text = str(exc).lower()
        lost = isinstance(exc, torch.distributed.DistError) or any(w in text for w in _LOST_PEER)
        if layout.world_size == 1 or not lost:
            raise
        # gloo's message starts with its source file and ends in advice about its own bugs
        said = re.sub(r"^\[[^\]]*\]\s*", "", error_text(exc, 400)).split(". ")[0][:120]
        raise GeotlRuntimeError(
            f"training stopped: another of the {layout.world_size} processes "
            f"(--devices {layout.devices} --num-nodes {layout.num_nodes}) is gone "
            f"({said}): see its error above or the launcher's log; "
            "no model was written, run the command again"
        ) from exc

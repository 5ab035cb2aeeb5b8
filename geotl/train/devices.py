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
- A process that dies ends the run with one line from rank 0 (which process, how, what to
  try) and no half-built model folder (:class:`_RankWatch`,
  :func:`process_lost_is_one_line`); under ``torchrun`` an error every process reaches is
  said once (:func:`said_once`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from geotl.cores import usable_cores
from geotl.errors import (
    ERROR_PREFIX,
    GeotlError,
    GeotlInputError,
    GeotlRuntimeError,
    error_text,
)

__all__ = [
    "STRATEGIES",
    "DeviceLayout",
    "launched_rank",
    "process_lost_is_one_line",
    "removed_if_forced_out",
    "said_once",
    "set_threads_per_process",
]

log = logging.getLogger(__name__)

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
    def lightning_strategy(self) -> str | DDPStrategy:
        """What the Trainer is given: the strategy, or ``auto`` for a single process.

        DDP's processes that Lightning starts itself are watched by :class:`_RankWatch`,
        not by Lightning's observer, which SIGKILLed this process (exit 137, no word) when
        another one died.
        """
        return _WatchedDDP(self) if self.world_size > 1 else "auto"

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
    ``SLURM_NTASKS_PER_NODE`` (``--ntasks-per-node``: ``4``) or, without that option
    (``srun -N2 -n8``), ``SLURM_TASKS_PER_NODE`` (``4(x2)``: 2 nodes of 4; ``4,2``, nodes
    that differ, is None).
    """
    env = os.environ
    said = (
        env.get("LOCAL_WORLD_SIZE")
        or env.get("SLURM_NTASKS_PER_NODE")
        or env.get("SLURM_TASKS_PER_NODE", "")
    ).split("(")[0]
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

# seconds: how often the watch looks at the processes; how long it leaves this process to
# unwind on its own (its next collective fails at once) before it stops it; how long a
# failed collective waits to learn which process ended
_WATCH_EVERY_S = 0.5
_UNWIND_S = 3.0
_LEARN_S = 2.0
# the exit codes of a geotl process stopped by Ctrl+C or SIGTERM (it says so itself)
_INTERRUPTED = (128 + signal.SIGINT, 128 + signal.SIGTERM)


@contextlib.contextmanager
def process_lost_is_one_line(layout: DeviceLayout) -> Iterator[None]:
    """Turn "another training process is gone" into one line (exit 1) instead of a traceback.

    A rank that dies (killed, out of memory, its node lost) leaves the others failing in
    their next collective with the communication library's error: rank 0 printed a
    traceback of 120 lines that named gloo's source file, not the run. The rank that failed
    says its own error; this one says what happened to the run and what to do. When
    Lightning started the process that ended (``--devices N`` without a launcher), the line
    says which one and how (:class:`_RankWatch`); while this is open, the watch stops a
    process that waits for a dead one where no collective would fail (joining the group).

    Raises:
        GeotlRuntimeError: a collective failed because a peer process went away.
        GeotlError: a process Lightning started here ended (see :func:`_lost`).
    """
    if (watch := _watch_of(layout)) is not None:
        watch.guard(True)
    try:
        yield
    except RuntimeError as exc:
        text = str(exc).lower()
        lost = isinstance(exc, torch.distributed.DistError) or any(w in text for w in _LOST_PEER)
        if layout.world_size == 1 or not lost:
            raise
        watch = _watch_of(layout)  # the launch (in the block) may have started it
        if watch is not None and (ended := watch.wait_for_loss(_LEARN_S)) is not None:
            raise _lost(layout, *ended) from exc
        # gloo's message starts with its source file and ends in advice about its own bugs
        said = re.sub(r"^\[[^\]]*\]\s*", "", error_text(exc, 400)).split(". ")[0][:120]
        raise GeotlRuntimeError(
            _stopped(layout, f"another of the {layout.world_size} processes", f"is gone ({said})")
            + ": see its error above or the launcher's log; no model was written, run the "
            "command again"
        ) from exc
    finally:
        if (watch := _watch_of(layout)) is not None:
            watch.guard(False)


def _watch_of(layout: DeviceLayout) -> _RankWatch | None:
    """The watch of the processes Lightning started for this training (None: none)."""
    watch = _RankWatch.current
    return watch if watch is not None and watch.layout is layout else None


def _stopped(layout: DeviceLayout, which: str, what: str) -> str:
    """``training stopped: WHICH (--devices D --num-nodes N) WHAT``: the lost-process lines."""
    return (
        f"training stopped: {which} (--devices {layout.devices} --num-nodes "
        f"{layout.num_nodes}) {what}"
    )


def _lost(layout: DeviceLayout, rank: int, returncode: int) -> GeotlError:
    """The error for process ``rank`` that ended with ``returncode`` (Popen's: -N for signal N).

    A signal leaves the process no word of its own: SIGKILL is most often the kernel's
    out-of-memory killer (each process holds the chips and a copy of the network), so the
    line says what uses less. An exit code follows the process's own error line: the same
    code here (2: an input error). Exit 1 otherwise.
    """
    which = f"process {rank} of {layout.world_size}"
    again = "no model was written, run the command again"
    if returncode < 0:
        name = _signal_name(-returncode)
        if -returncode == signal.SIGKILL:
            how = (
                f"was killed ({name}, most often by the system for want of memory): use "
                f"fewer --devices or a smaller --batch-size; {again}"
            )
        else:
            how = f"was stopped by {name}: {again}"
        return GeotlRuntimeError(_stopped(layout, which, how))
    said = _stopped(layout, which, f"failed (exit code {returncode}): see its error above; {again}")
    return (
        GeotlInputError(said)
        if returncode == GeotlInputError.exit_code
        else GeotlRuntimeError(said)
    )


def _signal_name(number: int) -> str:
    """``SIGKILL`` for 9; ``signal 64`` for a number this system does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _RankWatch(threading.Thread):
    """Watches the processes Lightning started for this node's other devices.

    Lightning's own observer SIGKILLed every process, this one included, when one ended
    with an error: a rank killed while it loaded its chips (or out of memory) ended
    ``geotl train --devices 2`` with exit 137 and no word, and left the half-built model
    folder. A process that ends is seen here within half a second; the others are killed
    (they may wait in a collective for good), and this process says which one ended and
    how. It does so itself when a collective fails (:func:`process_lost_is_one_line`);
    when none will (it waits for the dead process to join the group, which no signal
    interrupts) the watch says it, removes what :func:`removed_if_forced_out` names and
    ends the process with the error's exit code.
    """

    #: the watch of this process's Lightning-started processes (one training at a time)
    current: _RankWatch | None = None

    def __init__(self, layout: DeviceLayout, procs: list[subprocess.Popen[Any]]) -> None:
        super().__init__(daemon=True, name="geotl-rank-watch")
        self.layout = layout
        self.procs = procs
        first = int(os.environ.get("NODE_RANK", "0")) * layout.devices
        self.ranks = [first + 1 + i for i in range(len(procs))]
        self.ended: tuple[int, int] | None = None
        self._guarded = True  # started by a launch within process_lost_is_one_line
        self._lock = threading.Lock()

    def guard(self, on: bool) -> None:
        """Whether this process is in a training step's collectives (stopped if it waits)."""
        with self._lock:
            if on and self.ended is not None:  # it ended between two trainings' fits
                raise _lost(self.layout, *self.ended)
            self._guarded = on

    def wait_for_loss(self, seconds: float) -> tuple[int, int] | None:
        """The rank and return code of the process that ended, once it shows (or None)."""
        deadline = time.monotonic() + seconds
        while self.ended is None and time.monotonic() < deadline:
            self._look()
            time.sleep(0.05)
        return self.ended

    def _look(self) -> None:
        with self._lock:
            if self.ended is not None:
                return
            for rank, proc in zip(self.ranks, self.procs, strict=True):
                if proc.poll():
                    self.ended = (rank, int(proc.returncode))
                    break
            else:
                return
        for proc in self.procs:  # they may wait in a collective for good
            if proc.poll() is None:
                proc.kill()

    def run(self) -> None:
        while self.ended is None:
            if all(proc.poll() == 0 for proc in self.procs):
                return
            time.sleep(_WATCH_EVERY_S)
            self._look()
        deadline = time.monotonic() + _UNWIND_S
        while self._guarded and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            if not self._guarded:
                return  # this process unwinds by itself and says it
            code = self.ended[1]
            if code not in _INTERRUPTED:  # Ctrl+C, kill: that process said it ("interrupted")
                exc = _lost(self.layout, *self.ended)
                print(f"{ERROR_PREFIX}{exc}", file=sys.stderr, flush=True)
                code = exc.exit_code
            for path in _FORCED_OUT_REMOVES:
                shutil.rmtree(path, ignore_errors=True)
            os._exit(code)


@contextlib.contextmanager
def said_once() -> Iterator[None]:
    """Under ``torchrun``, only the process that fails first says its error.

    Every process runs the same command on the same inputs: a bad option or chip printed
    the same line once per process, and the processes that ``torchrun`` then stops said
    "terminated". The first to fail counts itself in the launcher's store (its agent's,
    which every node reaches: ``TORCHELASTIC_USE_AGENT_STORE``); the others log their
    error at debug level and leave with its exit code (1 for a signal). torchrun's own
    summary of the failed processes follows; geotl cannot hold it back. Other launchers
    (srun, Lightning's own) have no store before training: every process says its error.
    """
    try:
        yield
    except (GeotlError, KeyboardInterrupt) as exc:
        if _first_to_fail():
            raise
        log.debug("%s (another process said its error first)", error_text(exc, 400))
        raise SystemExit(getattr(exc, "exit_code", 1)) from None


def _first_to_fail() -> bool:
    """Count this process's failure in torchrun's store; True unless another counted first."""
    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return True
    try:
        store = torch.distributed.TCPStore(  # type: ignore[attr-defined]
            env["MASTER_ADDR"],
            int(env["MASTER_PORT"]),
            is_master=False,
            timeout=timedelta(seconds=5),
        )
        key = f"geotl/attempt_{env.get('TORCHELASTIC_RESTART_COUNT', '0')}/failed"
        return int(store.add(key, 1)) == 1
    except (KeyError, ValueError, RuntimeError):  # no store to ask: say it
        return True


#: folders the watch removes when it ends this process itself (no ``finally`` runs then)
_FORCED_OUT_REMOVES: list[Path] = []


@contextlib.contextmanager
def removed_if_forced_out(path: Path) -> Iterator[Path]:
    """Have :class:`_RankWatch` remove ``path`` if it ends this process (a rank died).

    The half-built model folder of :func:`geotl.io.atomic.atomic_dir` goes on the way out
    of an error; when the watch ends a process stuck waiting for a dead one, no ``finally``
    runs, and the folder stayed until the next run in the same place.
    """
    _FORCED_OUT_REMOVES.append(path)
    try:
        yield path
    finally:
        _FORCED_OUT_REMOVES.remove(path)


class _WatchedLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher of the node's other processes, with :class:`_RankWatch`."""

    def __init__(self, layout: DeviceLayout, launcher: _SubprocessScriptLauncher) -> None:
        super().__init__(launcher.cluster_environment, launcher.num_processes, launcher.num_nodes)
        self.layout = layout

    def launch(
        self, function: Callable[..., Any], *args: Any, trainer: Any = None, **kwargs: Any
    ) -> Any:
        # Lightning's launch, with the watch in place of its observer
        self.cluster_environment.validate_settings(
            num_devices=self.num_processes, num_nodes=self.num_nodes
        )
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            _RankWatch.current = _RankWatch(self.layout, self.procs)
            _RankWatch.current.start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)


class _WatchedDDP(DDPStrategy):
    """DDP whose processes started by Lightning are watched (:class:`_RankWatch`)."""

    def __init__(self, layout: DeviceLayout) -> None:
        super().__init__()
        self.layout = layout

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _SubprocessScriptLauncher):
            self._launcher = _WatchedLauncher(self.layout, self._launcher)

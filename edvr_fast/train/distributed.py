"""Process-group set-up for `torchrun` (NCCL on GPU, gloo on CPU), the few collectives the loop needs and the
step watchdog that names a rank that holds the others up; alone (no torchrun): world size 1, no process group.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from edvr_fast.errors import ConfigError

# Exit status of a rank stopped by the watchdog (the CLI's status for user-facing errors).
EXIT_TIMEOUT = 2
# Test-only fault injection: "kill:RANK:STEP" (the rank SIGKILLs itself on reaching STEP) or "hang:RANK:STEP"
# (it stops there forever); only in the first attempt of an elastic job, so a restarted group runs clean.
FAULT_ENV = "EDVR_FAST_TEST_FAULT"


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(choice: str, local_rank: int) -> torch.device:
    """'auto': this rank's GPU when CUDA is available, else CPU."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is available", hint="use device: cpu or auto")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init(device_choice: str, timeout_s: float) -> DistInfo:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), else run alone.

    `timeout_s` is dist.timeout_s: the step watchdog (see Watchdog) stops the job after it, naming the late
    rank; the process group's own timeout, the backstop for the other collectives (validation, the checkpoint
    barrier), is `collective_timeout(timeout_s)`, a little longer so that the watchdog's clear error comes first.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local)
    info = DistInfo(rank, world, local, device)
    if world > 1 and not dist.is_initialized():
        # Collectives that fail must raise rather than wait forever (the default for recent NCCL).
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = timedelta(seconds=collective_timeout(timeout_s))
        global _STORE
        _STORE = attempt_store(timeout)
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timeout, "rank": rank, "world_size": world,
                                  "store": dist.PrefixStore("default_pg", _STORE)}
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
    return info


_STORE: dist.Store | None = None  # this attempt's key space in the rendezvous store (the watchdog's marks)


def attempt_store(timeout: timedelta) -> dist.Store:
    """The env:// rendezvous store, with keys of this elastic attempt only.

    torchrun shares one TCPStore across the restarts of a group (TORCHELASTIC_USE_AGENT_STORE=True), so a
    restarted group would read the dead group's keys: its gloo / NCCL peer addresses (connection refused
    or a hang after `--max-restarts`). Prefixing every key with TORCHELASTIC_RESTART_COUNT keeps attempts
    apart. That count is the same on every rank of one node; with several nodes it can differ between
    nodes (pytorch/pytorch#135712), so multi-node elastic runs should set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
    for torchrun, which gives each attempt a fresh store (then no prefix is needed or used).
    """
    store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
    store.set_timeout(timeout)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        store = dist.PrefixStore(f"edvr_fast/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    return store


def collective_timeout(timeout_s: float) -> float:
    """The process group's timeout for dist.timeout_s: that plus max(10 s, 10%)."""
    return timeout_s + max(10.0, 0.1 * timeout_s)


def shutdown() -> None:
    global _STORE
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _STORE = None


def barrier(info: DistInfo) -> None:
    if info.enabled:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce(t: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (sum or max) across ranks; a no-op alone."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value of a small picklable object on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=info.device if info.device.type == "cuda" else None)
    return box[0]


# ------------------------------------------------------------------------------------------ watchdog
def fault_point(rank: int, step: int) -> None:
    """Test-only: act on EDVR_FAST_TEST_FAULT ("kill:RANK:STEP" / "hang:RANK:STEP") on reaching `step`."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    try:
        kind, r, at = spec.split(":")
        r_i, at_i = int(r), int(at)
    except ValueError:
        raise ConfigError(f"{FAULT_ENV}={spec!r} is not kill:RANK:STEP or hang:RANK:STEP") from None
    if r_i != rank or at_i != step:
        return
    print(f"{FAULT_ENV}: rank {rank} {kind}s at step {step}", file=sys.stderr, flush=True)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # a real death: no exception, no clean-up, no exit handlers
    elif kind == "hang":
        while True:
            time.sleep(3600)
    else:
        raise ConfigError(f"{FAULT_ENV}={spec!r}: the kind must be kill or hang")


class Watchdog:
    """Names the rank(s) that hold up a training step, then stops every rank.

    Each rank writes the step it reached to the process group's store just before the step's collectives
    (`reached`), and clears its timer when the step is done (`passed`). A thread on each rank checks: when this
    rank has waited in step N for longer than `timeout_s`, the ranks whose last published step is below N are
    the late ones; it says so (stderr, and `on_abort` for the run log), asks the other ranks to stop through
    the store, removes partial checkpoint files and exits with EXIT_TIMEOUT. A rank asked to stop does the same;
    the process group goes with the processes (peers' sockets close), so nobody waits for gloo's timeout.
    Alone (world size 1), or in a process group that `init` did not make, it does nothing but the test-only
    fault point.
    """

    def __init__(self, info: DistInfo, timeout_s: float, on_abort: Callable[[str], None] | None = None,
                 poll_s: float | None = None):
        self.info, self.timeout_s, self.on_abort = info, float(timeout_s), on_abort
        self.poll_s = poll_s if poll_s is not None else min(1.0, self.timeout_s / 10)
        self._lock = threading.Lock()
        self._step, self._since = 0, None  # the step this rank waits in, and since when (None: not waiting)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if not info.enabled or _STORE is None:  # alone, or a process group made by the caller: not watched
            return
        self.store = dist.PrefixStore("edvr_fast/watchdog", _STORE)  # this attempt's keys only
        self.store.set(f"rank{info.rank}", "0")
        self._thread = threading.Thread(target=self._watch, name="edvr_fast-watchdog", daemon=True)
        self._thread.start()

    def reached(self, step: int) -> None:
        """This rank is about to run step `step`'s collectives (the DDP all-reduce)."""
        fault_point(self.info.rank, step)
        if self._thread is None:
            return
        self.store.set(f"rank{self.info.rank}", str(step))
        with self._lock:
            self._step, self._since = step, time.monotonic()

    def passed(self) -> None:
        with self._lock:
            self._since = None

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def late_ranks(self, step: int) -> dict[int, int]:
        """{rank: its last published step} of the ranks that have not reached `step`."""
        late = {}
        for r in range(self.info.world_size):
            key = f"rank{r}"
            last = int(self.store.get(key)) if self.store.check([key]) else 0
            if last < step:
                late[r] = last
        return late

    def _watch(self) -> None:
        while not self._done.wait(self.poll_s):
            try:
                if self.store.check(["abort"]):
                    self._abort(self.store.get("abort").decode(), first=False)
                with self._lock:
                    step, since = self._step, self._since
                if since is None or time.monotonic() - since <= self.timeout_s:
                    continue
                late = self.late_ranks(step)
            except Exception:  # the store went away: the group is being torn down, gloo reports it
                return
            with self._lock:
                if self._since != since:  # the step completed meanwhile
                    continue
            t = f"{self.timeout_s:g}"
            if late:
                who = ", ".join(f"rank {r} (last step {s})" for r, s in late.items())
                ranks = "rank" + ("s " if len(late) > 1 else " ") + ", ".join(str(r) for r in late)
                msg = (f"{ranks} did not reach the all-reduce of step {step} within {t} s (dist.timeout_s); "
                       f"waiting for: {who}")
            else:
                msg = (f"the all-reduce of step {step} did not complete within {t} s (dist.timeout_s) although "
                       "every rank reached it")
            msg += f"; stopped every rank (reported by rank {self.info.rank})"
            try:
                self.store.set("abort", msg)
                # Without torchrun, rank 0 hosts the store: give the others a moment to read the request.
                others = [f"stopped{r}" for r in range(self.info.world_size) if r != self.info.rank]
                end = time.monotonic() + 4 * self.poll_s + 2.0
                while time.monotonic() < end and not self.store.check(others):
                    time.sleep(self.poll_s / 4)
            except Exception:
                pass
            self._abort(msg, first=True)

    def _abort(self, msg: str, first: bool) -> None:
        from edvr_fast.train.checkpoints import remove_partial

        if not first:
            msg = f"rank {self.info.rank} stopping: {msg}"
            try:
                self.store.set(f"stopped{self.info.rank}", "1")
            except Exception:
                pass
        print(f"error: {msg}", file=sys.stderr, flush=True)
        if self.on_abort is not None:
            try:
                self.on_abort(msg)
            except Exception:
                pass
        remove_partial()
        sys.stdout.flush()
        os._exit(EXIT_TIMEOUT)  # the main thread is blocked in a collective: only the process can go

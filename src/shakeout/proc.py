"""Child processes that can corrupt or hang: each in its own session, killed as a group.

Every process shakeout starts to do risky work (a probe, QEMU, a bisect trial) goes
through `spawn`, which gives three guarantees:
- the child starts a new session, so it and everything it forks share one process group
  that is not ours, and `kill_group(proc.pid)` reaches all of them;
- the child gets SIGKILL when this process dies (PR_SET_PDEATHSIG), so even `kill -9` of
  shakeout leaves no leader running; a child that forks sets it on its own children
  (the group kill reaches them on every other way out);
- a failure to start (no such file, EMFILE, EAGAIN under `ulimit -u`) is a ShakeoutError
  naming the command, never a traceback.
The caller owns the rest: it must call `kill_group(proc.pid)` and reap the leader on every
path out (a `finally`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from typing import Any, Callable, Sequence

from shakeout.errors import ShakeoutError

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def child_setup(parent_pid: int) -> Callable[[], None]:
    """Runs in the child before exec: die with the parent (checked, in case it already died)."""

    def setup() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(125)

    return setup


def spawn(argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """Start argv in a new session with the parent-death signal (see the module docstring)."""
    try:
        return subprocess.Popen(
            list(argv),
            start_new_session=True,
            # prctl(PR_SET_PDEATHSIG) has no other spelling; the child only calls prctl/getppid.
            preexec_fn=child_setup(os.getpid()),  # noqa: PLW1509
            **popen_kwargs,
        )
    except OSError as exc:
        raise ShakeoutError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group (already gone is fine)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)

"""The leader of every bisect trial's process group: it makes the group die with shakeout.

`shakeout.proc.spawn` gives a trial its own session and the parent-death signal, but that
signal reaches only the leader: after `kill -9` of shakeout, the children of a trial (the
compiler a `make` started, a test's background helper) would run on. So the leader is
this small program, not the trial's command:

    python -I -S supervisor.py PARENT_PID STATUS_FD GRACE_S -- CMD ARGS...

1. It re-arms the parent-death signal as SIGHUP with a handler, then checks that
   PARENT_PID is still its parent (spawn's SIGKILL covered the time before: nothing of the
   command had started yet). From then on, when shakeout dies in any way, the handler
   SIGKILLs the whole group, this process included. With GRACE_S > 0 (CMD is a --launcher
   whose work may run outside the group) and CMD still running, the handler first sends
   the group SIGTERM and waits up to GRACE_S for CMD to exit, so that the launcher can
   cancel its work.
2. It starts CMD in the same group (default signal dispositions, so SIGPIPE is not left
   ignored as Python leaves it), and lets go of its own stdout and stderr: the output pipe
   reaches end-of-file when the command and everything it started have closed it.
3. When CMD exits it writes `exit N` or `signal N` (or `error ERRNO TEXT` if CMD could
   not start) as one line to STATUS_FD and stays, guarding the group, until shakeout kills
   the group (at once, or after a short grace for a background child holding stdout).
A SIGHUP, SIGINT or SIGTERM sent to the group by the command itself is ignored here while
shakeout lives. Invariant: while any process of the group lives, either this process is
alive and will SIGKILL the group when shakeout dies, or shakeout has killed the group.
Standard library only, run with -I -S: it starts in about 20 ms.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import List, Optional

PR_SET_PDEATHSIG = 1
GUARD_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, *GUARD_SIGNALS)


def kill_my_group() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


class Guard:
    """Kills the group when the parent is gone (checked: the command may signal its group too)."""

    def __init__(self, parent_pid: int, grace_s: float) -> None:
        self.parent_pid, self.grace_s = parent_pid, grace_s
        self.command_pid: Optional[int] = None  # set while the command runs
        self.stopping = False

    def arm(self) -> None:
        for sig in GUARD_SIGNALS:
            signal.signal(sig, self.on_signal)
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0)
        self.on_signal(0, None)

    def on_signal(self, _signum: int, _frame: object) -> None:
        if self.stopping or os.getppid() == self.parent_pid:
            return
        self.stopping = True  # the SIGTERM below reaches this process too
        if self.command_pid is not None and self.grace_s > 0:
            os.killpg(os.getpgrp(), signal.SIGTERM)
            self.wait_for_command()
        kill_my_group()

    def wait_for_command(self) -> None:
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.command_pid or -1, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(0.02)


def report(status_fd: int, line: str) -> None:
    os.write(status_fd, (line + "\n").encode("utf-8", "replace"))
    os.close(status_fd)


def let_go_of_output() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(argv: List[str]) -> int:
    parent_pid, status_fd, grace_s, command = int(argv[1]), int(argv[2]), float(argv[3]), argv[5:]
    os.set_inheritable(status_fd, False)  # the command's processes must not hold it
    guard = Guard(parent_pid, grace_s)
    guard.arm()
    try:
        child = os.posix_spawnp(command[0], command, dict(os.environ), setsigdef=DEFAULT_SIGNALS)
    except OSError as exc:
        report(status_fd, f"error {exc.errno or 0} {exc.strerror or exc}")
        return 127
    guard.command_pid = child
    let_go_of_output()
    _pid, status = os.waitpid(child, 0)
    guard.command_pid = None
    if os.WIFSIGNALED(status):
        report(status_fd, f"signal {os.WTERMSIG(status)}")
    else:
        report(status_fd, f"exit {os.WEXITSTATUS(status)}")
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

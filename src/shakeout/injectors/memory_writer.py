"""Write a value into another process's memory, over and over, with process_vm_writev.

Used to prove that a probe notices a word changing under it: the probe announces the
word it checks ({"event":"target","pid":...,"address":...}); a MemoryWriter thread per
target then stores the chosen value there until stopped. The write goes through the
kernel's remote-memory path, exactly like a stale value appearing from nowhere, and
nothing in the probe's code cooperates. Permission: root, or the same user where Yama
allows tracing descendants (the probe runs as our descendant).

Bit-flip mode, for a target announced with "inject": "bit-flip" (a word of a memory
tester's buffer): the value is an XOR mask. The writer reads the word
(process_vm_readv), writes it back with the mask's bits flipped, and waits for the
probe's {"event":"error"} line naming that address and those bits before the next flip;
a flip the tester overwrote before checking it (nothing reported within
FLIP_REPORT_TIMEOUT_S) is repeated. It makes as many reported flips as the target asks
("flips", default FLIPS_PER_TARGET), so that a repeated fault in one cell can be seen to
aggregate. The read-modify-write is made atomic by stopping the tester around it (SIGSTOP
until /proc shows every thread stopped, then SIGCONT): a store of the tester's between
the read and the write would put the flip onto a stale value, and the report would show
the old pattern's bits too (seen once in a CI run under load: 32 cells, not one).

Window mode, for a target announced with "inject": "window": nothing is written until the
probe opens a window ({"event":"window","pid","address","ack"}: it is waiting between a
store and its check); then the value is written once into `address` and a nonzero word
into `ack`, which tells the probe to go on and load.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import struct
import threading
import time
from errno import EACCES, EPERM, ESRCH
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_REMOTE_IO_ARGS = [
    ctypes.c_int,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_WRITEV = getattr(_LIBC, "process_vm_writev", None)
if _WRITEV is not None:
    _WRITEV.argtypes = _REMOTE_IO_ARGS
    _WRITEV.restype = ctypes.c_ssize_t
_READV = getattr(_LIBC, "process_vm_readv", None)
if _READV is not None:
    _READV.argtypes = _REMOTE_IO_ARGS
    _READV.restype = ctypes.c_ssize_t

FLIPS_PER_TARGET = 2
FLIP_REPORT_TIMEOUT_S = 0.3
FLIP_REWRITE_TIMEOUT_S = 1.0
REFUSED = (EPERM, EACCES)  # the system's no: the same call would be refused again


STOPPED = "stopped"
GONE = "gone"


class _Target:
    """Signals for one target process: through a pidfd where the system has them (Linux 5.3,
    Python 3.9), so that a pid reused after the probe was reaped is never signalled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        opener = getattr(os, "pidfd_open", None)
        try:
            self.fd: Optional[int] = opener(pid) if opener else None
        except OSError:
            self.fd = None

    def send(self, sig: int) -> None:
        sender = getattr(signal, "pidfd_send_signal", None)
        if self.fd is not None and sender is not None:
            sender(self.fd, sig)
        else:
            os.kill(self.pid, sig)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def _all_threads_stopped(target: _Target, timeout_s: float = 1.0) -> Iterator[str]:
    """SIGSTOP the process and wait until /proc shows none of its threads running; SIGCONT
    after. Yields STOPPED, GONE (it exited), or why it could not be stopped."""
    try:
        target.send(signal.SIGSTOP)
    except ProcessLookupError:
        yield GONE
        return
    except OSError as exc:
        yield f"SIGSTOP to {target.pid}: {exc.strerror} (errno {exc.errno})"
        return
    try:
        deadline = time.monotonic() + timeout_s
        while not _no_thread_running(target.pid):
            if not os.path.exists(f"/proc/{target.pid}"):
                yield GONE
                return
            if time.monotonic() > deadline:
                yield f"process {target.pid} did not stop within {timeout_s:g} s of SIGSTOP"
                return
            time.sleep(0.00005)
        yield STOPPED
    finally:
        with contextlib.suppress(OSError):
            target.send(signal.SIGCONT)


def _no_thread_running(pid: int) -> bool:
    """Every thread stopped (T, t), or a zombie or dead (a main thread that has exited)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] not in (b"T", b"t", b"Z", b"X"):
                    return False
    except (OSError, IndexError):
        return False
    return bool(tasks)


def describe_error(call: str, pid: int, errno: int) -> str:
    """One line for a failed call; EPERM says what grants the permission."""
    line = f"{call}({pid}): {os.strerror(errno)} (errno {errno})"
    if errno in REFUSED:
        line += (
            ": another process's memory may be read or written only with ptrace permission over it (Yama's "
            "ptrace_scope; in a container CAP_SYS_PTRACE, as Docker's default seccomp profile allows the call "
            "only with it)"
        )
    return line


class MemoryWriter:
    """Starts one writer thread per announced target; stop() ends them all."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.stopping = threading.Event()
        self.threads: List[threading.Thread] = []
        self.writes = 0
        self.errors: List[str] = []
        self.flips: List[Dict[str, Any]] = []  # bit-flip mode: each flip that was reported back
        self.reflips = 0
        self.refused = False  # a call was refused permission (EPERM/EACCES)
        self._reported: Set[Tuple[int, int]] = set()  # (address, bit) the probe reported
        self._report_seen = threading.Condition()

    def on_event(self, event: Dict[str, Any]) -> None:
        if event.get("event") == "error":
            self._note_report(event)
            return
        if event.get("event") == "window" and _WRITEV is not None:
            self._write_in_window(int(event["pid"]), int(str(event["address"]), 16), int(str(event["ack"]), 16))
            return
        if event.get("event") != "target" or event.get("inject") == "window" or _WRITEV is None or _READV is None:
            return
        pid, address = int(event["pid"]), int(str(event["address"]), 16)
        if event.get("inject") == "bit-flip":
            flips = int(event.get("flips") or FLIPS_PER_TARGET)
            thread = threading.Thread(target=self._flip_loop, args=(pid, address, flips), daemon=True)
        else:
            thread = threading.Thread(target=self._write_loop, args=(pid, address), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _note_report(self, event: Dict[str, Any]) -> None:
        try:
            address = int(str(event.get("virt")), 16)
            bits = [int(b) for b in event.get("bits", [])]
        except ValueError:
            return
        with self._report_seen:
            self._reported.update((address, bit) for bit in bits)
            self._report_seen.notify_all()

    def _flip_loop(self, pid: int, address: int, flips: int) -> None:
        target = _Target(pid)
        try:
            self._flip_until_reported(target, address, flips)
        finally:
            target.close()

    def _flip_until_reported(self, target: _Target, address: int, flips: int) -> None:
        pid = target.pid
        bits = [b for b in range(64) if self.value >> b & 1]
        while len(self.flips) < flips and not self.stopping.is_set():
            with self._report_seen:
                self._reported.difference_update((address, b) for b in bits)
            before = self._flip_once(target, address)
            if before is None:
                return
            started = time.monotonic()
            with self._report_seen:
                seen = self._report_seen.wait_for(
                    lambda: all((address, b) in self._reported for b in bits) or self.stopping.is_set(),
                    timeout=FLIP_REPORT_TIMEOUT_S,
                )
            if seen and not self.stopping.is_set():
                self.flips.append(
                    {
                        "address": f"{address:#x}",
                        "bits": bits,
                        "before": f"{before:#018x}",
                        "reported_after_s": round(time.monotonic() - started, 6),
                    }
                )
                self._wait_rewritten(pid, address, before ^ self.value)
            elif not self.stopping.is_set():
                self.reflips += 1

    def _wait_rewritten(self, pid: int, address: int, flipped: int) -> None:
        """Until the tester has stored over our flip: flipping again before would undo it."""
        deadline = time.monotonic() + FLIP_REWRITE_TIMEOUT_S
        while time.monotonic() < deadline and not self.stopping.is_set():
            value = self._read(pid, address)
            if value is None or value != flipped:
                return
            time.sleep(0.001)

    def _transfer(self, call: Any, name: str, pid: int, address: int, buf: Any) -> bool:
        """One 8-byte process_vm_readv/writev between buf and the remote word."""
        local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
        remote = _IoVec(address, 8)
        assert call is not None
        if call(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != 8:
            self._remote_error(name, pid)
            return False
        return True

    def _read(self, pid: int, address: int) -> Optional[int]:
        buf = ctypes.create_string_buffer(8)
        if not self._transfer(_READV, "process_vm_readv", pid, address, buf):
            return None
        return int(struct.unpack("<Q", buf.raw)[0])

    def flip_once(self, pid: int, address: int) -> Optional[int]:
        """One atomic flip of the mask's bits in another process's word (as below), for a caller
        that runs its own loop (benchmarks/memtest.py flips memtester's buffer this way too)."""
        target = _Target(pid)
        try:
            return self._flip_once(target, address)
        finally:
            target.close()

    def _flip_once(self, target: _Target, address: int) -> Optional[int]:
        """Flip the mask's bits in the remote word; its value before, or None when it could not
        (the target is gone, or the reason is in errors).

        The tester is stopped (SIGSTOP, every thread seen stopped) around the read and the
        write, so that no store of its own can fall between them: a flip onto a stale value
        would show the old pattern's bits too, as 32 cells instead of one."""
        pid = target.pid
        with _all_threads_stopped(target) as state:
            if state != STOPPED:
                if state != GONE:
                    self.errors.append(state)
                    self.refused = self.refused or "not permitted" in state
                return None
            before = self._read(pid, address)
            if before is None:
                return None
            buf = ctypes.create_string_buffer(struct.pack("<Q", before ^ self.value), 8)
            if not self._transfer(_WRITEV, "process_vm_writev", pid, address, buf):
                return None
        self.writes += 1
        return before

    def _write_in_window(self, pid: int, address: int, ack: int) -> None:
        for where, value in ((address, self.value), (ack, 1)):
            buf = ctypes.create_string_buffer(struct.pack("<Q", value), 8)
            local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
            remote = _IoVec(where, 8)
            assert _WRITEV is not None
            if _WRITEV(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != 8:
                self._remote_error("process_vm_writev", pid)
                return
            if where == address:
                self.writes += 1

    def _remote_error(self, call: str, pid: int) -> None:
        errno = ctypes.get_errno()
        if errno != ESRCH:  # ESRCH: the target exited, the normal end
            self.errors.append(describe_error(call, pid, errno))
            self.refused = self.refused or errno in REFUSED

    def _write_loop(self, pid: int, address: int) -> None:
        buf = ctypes.create_string_buffer(struct.pack("<Q", self.value), 8)
        local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
        remote = _IoVec(address, 8)
        assert _WRITEV is not None
        while not self.stopping.is_set():
            if _WRITEV(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != 8:
                self._remote_error("process_vm_writev", pid)
                return
            self.writes += 1

    def stop(self) -> None:
        self.stopping.set()
        with self._report_seen:
            self._report_seen.notify_all()
        for thread in self.threads:
            thread.join(timeout=5)

    @staticmethod
    def available() -> bool:
        return _WRITEV is not None

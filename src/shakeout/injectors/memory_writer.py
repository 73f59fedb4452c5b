"""Write a value into another process's memory, over and over, with process_vm_writev.

Used to prove that a probe notices a word changing under it: the probe announces the
word it checks ({"event":"target","pid":...,"address":...}); a MemoryWriter thread per
target then stores the chosen value there until stopped. The write goes through the
kernel's remote-memory path, exactly like a stale value appearing from nowhere, and
nothing in the probe's code cooperates. Permission: root, or the same user where Yama
allows tracing descendants (the probe runs as our descendant).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import threading
from typing import Any, Dict, List


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_WRITEV = getattr(_LIBC, "process_vm_writev", None)
if _WRITEV is not None:
    _WRITEV.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(_IoVec),
        ctypes.c_ulong,
        ctypes.POINTER(_IoVec),
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    _WRITEV.restype = ctypes.c_ssize_t


class MemoryWriter:
    """Starts one writer thread per announced target; stop() ends them all."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.stopping = threading.Event()
        self.threads: List[threading.Thread] = []
        self.writes = 0
        self.errors: List[str] = []

    def on_event(self, event: Dict[str, Any]) -> None:
        if event.get("event") != "target" or _WRITEV is None:
            return
        pid, address = int(event["pid"]), int(str(event["address"]), 16)
        thread = threading.Thread(target=self._write_loop, args=(pid, address), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _write_loop(self, pid: int, address: int) -> None:
        buf = ctypes.create_string_buffer(struct.pack("<Q", self.value), 8)
        local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
        remote = _IoVec(address, 8)
        assert _WRITEV is not None
        while not self.stopping.is_set():
            if _WRITEV(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != 8:
                errno = ctypes.get_errno()
                if errno != 3:  # ESRCH: the target exited, the normal end
                    self.errors.append(f"process_vm_writev({pid}): errno {errno}")
                return
            self.writes += 1

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)

    @staticmethod
    def available() -> bool:
        return _WRITEV is not None

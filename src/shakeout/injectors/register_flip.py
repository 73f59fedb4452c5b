"""Flip one bit of a live register of a probe's worker thread, from outside, with ptrace.

What a mercurial core does: one execution unit returns a value with a bit wrong, and the
program goes on with it. This injector does exactly that to the cpu-integrity probe: when
the worker pinned to the target CPU announces its thread ({"event":"target","inject":
"register-flip","tid":...,"cpu":...}), a thread here seizes that one thread (PTRACE_SEIZE
on the thread id, so the rest of the process runs on), stops it (PTRACE_INTERRUPT, then
waitpid with __WALL), reads its registers (PTRACE_GETREGSET), flips one bit, writes them
back (PTRACE_SETREGSET) and detaches, which resumes it. The probe's code does not
cooperate and cannot tell.

Where and what it flips, at each stop:
- not inside a system call (the code around a call holds no live value in these registers);
- with `functions` given, only while the thread is inside one of the executable's
  functions so named (ELF symbols): the flip lands in the family under test;
- in the register the code will read next (liveness.next_read, from the instruction pointer
  on): a flip into a register that is overwritten before it is read changes nothing, and
  before this choice 96 % of fma flips on one machine and most clmul ones were never seen.
- `vector`: NT_X86_XSTATE; bit `bit` of XMM register r (bytes 160 + 16 r of the XSAVE
  legacy area: the low 128 bits of YMM/ZMM r), and XSTATE_BV's SSE bit set so that the
  restore uses the edited bytes.
- `general`: NT_PRSTATUS; bit `bit` of a data register (rax, rcx, rdx, rbx, r8-r15,
  rsi, rdi; never rsp, rbp or rip).
A stop that offers no such place is let go uncounted, and the next comes a few ms later.

After each flip the injector waits up to `report_timeout_s` for the probe's
{"event":"mismatch"} line; it stops at the first one, so the flip that was caught is the last
one made before the probe's detection time (the mismatch line's at_monotonic_s, the same
CLOCK_MONOTONIC as time.monotonic()). Each flip's evidence names the register, the function
and offset it was made at and the instruction that reads it. Permission: root, or the same
user where Yama allows tracing descendants (the probe is our child); under Docker's default
seccomp profile too. x86-64 only (the register layouts above).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import struct
import threading
import time
from errno import ESRCH
from typing import Any, Callable, Dict, List, Optional, Tuple

from shakeout.injectors.liveness import ProcessCode, function_ranges, next_read, symbolise
from shakeout.injectors.memory_writer import REFUSED

PTRACE_DETACH = 17
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128
NT_PRSTATUS = 1
NT_X86_XSTATE = 0x202
WALL = 0x40000000
XMM_OFFSET = 160
XSTATE_BV_OFFSET = 512
XSTATE_SSE_BIT = 1 << 1
XSTATE_BUFFER_BYTES = 16384
# struct user_regs_struct (x86-64): 27 unsigned longs in this order.
GENERAL_REGISTERS = (
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi"),
    *("orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"),
)
DATA_REGISTERS = ("rax", "rcx", "rdx", "rbx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rsi", "rdi")
VECTOR_REGISTERS = 16
MAX_FLIPS = 400
MAX_STOPS = 4000
RETRY_S = 0.002  # after a stop that offered no live register in the wanted code
VECTOR_NAMES = tuple(f"xmm{n}" for n in range(VECTOR_REGISTERS))


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_PTRACE = _LIBC.ptrace
_PTRACE.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_PTRACE.restype = ctypes.c_long


class PtraceError(Exception):
    """A ptrace request failed; the message names the request and errno."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


def _ptrace(request: int, tid: int, addr: int = 0, data: Any = None) -> None:
    if _PTRACE(request, tid, ctypes.c_void_p(addr), data) == -1:
        errno = ctypes.get_errno()
        raise PtraceError(f"ptrace({request:#x}, {tid}): {os.strerror(errno)} (errno {errno})", errno)


def flip_xstate(buffer: bytearray, register: int, bit: int) -> None:
    """Flip bit `bit` (0-127) of XMM `register` in an XSAVE image, and mark SSE state in use."""
    offset = XMM_OFFSET + 16 * register + bit // 8
    buffer[offset] ^= 1 << (bit % 8)
    (bv,) = struct.unpack_from("<Q", buffer, XSTATE_BV_OFFSET)
    struct.pack_into("<Q", buffer, XSTATE_BV_OFFSET, bv | XSTATE_SSE_BIT)


def flip_general(buffer: bytearray, name: str, bit: int) -> None:
    """Flip bit `bit` (0-63) of register `name` in a user_regs_struct image."""
    offset = 8 * GENERAL_REGISTERS.index(name)
    (value,) = struct.unpack_from("<Q", buffer, offset)
    struct.pack_into("<Q", buffer, offset, value ^ (1 << bit))


def in_system_call(buffer: bytearray) -> bool:
    (orig_rax,) = struct.unpack_from("<q", buffer, 8 * GENERAL_REGISTERS.index("orig_rax"))
    return bool(orig_rax >= 0)


def _get_regset(tid: int, note: int, size: int) -> bytearray:
    raw = ctypes.create_string_buffer(size)
    iov = _IoVec(ctypes.cast(raw, ctypes.c_void_p), size)
    _ptrace(PTRACE_GETREGSET, tid, note, ctypes.byref(iov))
    return bytearray(raw.raw[: iov.len])


def _set_regset(tid: int, note: int, image: bytearray) -> None:
    raw = ctypes.create_string_buffer(bytes(image), len(image))
    iov = _IoVec(ctypes.cast(raw, ctypes.c_void_p), len(image))
    _ptrace(PTRACE_SETREGSET, tid, note, ctypes.byref(iov))


class RegisterFlipper:
    """Flips bits in the worker pinned to `cpu` until the probe reports a mismatch; stop() ends it."""

    def __init__(
        self,
        kind: str,
        bit: int,
        cpu: Optional[int] = None,
        period_s: float = 0.02,
        report_timeout_s: float = 0.05,
        functions: Optional[Callable[[str], bool]] = None,
    ) -> None:
        if kind not in ("vector", "general"):
            raise ValueError(f"unknown register kind {kind!r}")
        self.kind = kind
        self.bit = bit
        self.functions = functions
        self.ranges: List[Tuple[int, int, str]] = []
        self.stops = 0
        self.skipped_outside_code = 0
        self.skipped_no_live_register = 0
        self.refused = False  # ptrace was refused permission (EPERM/EACCES)
        self.cpu = max(os.sched_getaffinity(0)) if cpu is None else cpu
        self.period_s = period_s
        self.report_timeout_s = report_timeout_s
        self.stopping = threading.Event()
        self.caught = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.flips: List[Dict[str, Any]] = []
        self.errors: List[str] = []
        self.skipped_in_syscall = 0
        self.mismatch: Optional[Dict[str, Any]] = None
        self.tid: Optional[int] = None

    @staticmethod
    def available() -> Optional[str]:
        """Why this machine cannot run the injector, or None."""
        if platform.machine() not in ("x86_64", "AMD64"):
            return f"the register flipper knows x86-64 register layouts only (this is {platform.machine()})"
        return None

    def on_event(self, event: Dict[str, Any]) -> None:
        if event.get("event") == "mismatch":
            if self.mismatch is None:
                self.mismatch = event
            self.caught.set()
            return
        if event.get("event") != "target" or event.get("inject") != "register-flip" or self.thread is not None:
            return
        if int(event.get("cpu", -1)) != self.cpu:
            return
        self.tid = int(event["tid"])
        self.thread = threading.Thread(target=self._flip_until_caught, args=(self.tid,), daemon=True)
        self.thread.start()

    def _flip_until_caught(self, tid: int) -> None:
        try:
            if self.functions is not None:
                self.ranges = function_ranges(tid, self.functions)
                if not self.ranges:
                    self.errors.append("no function of the probe's executable matched the wanted code")
                    return
            code = ProcessCode(tid)
        except Exception as exc:  # OSError, or pyelftools' ELFError on a damaged file
            self.errors.append(f"reading the probe's executable: {exc}")
            return
        try:
            while not self.stopping.is_set() and not self.caught.is_set() and len(self.flips) < MAX_FLIPS:
                if self.stops >= MAX_STOPS:
                    self.errors.append(
                        f"{MAX_STOPS} stops made {len(self.flips)} flip(s): {self.skipped_in_syscall} were in a "
                        f"system call, {self.skipped_outside_code} outside the wanted code, "
                        f"{self.skipped_no_live_register} had no live register ahead"
                    )
                    return
                try:
                    flip = self._flip_once(tid, code)
                except PtraceError as exc:
                    if exc.errno != ESRCH:  # the thread is gone: the normal end
                        self.errors.append(str(exc))
                        self.refused = self.refused or exc.errno in REFUSED
                    return
                if flip is None:
                    time.sleep(RETRY_S)
                    continue
                self.flips.append(flip)
                if self.caught.wait(self.report_timeout_s):
                    return
                time.sleep(self.period_s)
        finally:
            code.close()

    def _flip_once(self, tid: int, code: Callable[[int, int], bytes]) -> Optional[Dict[str, Any]]:
        _ptrace(PTRACE_SEIZE, tid)
        pending_signal = 0
        try:
            _ptrace(PTRACE_INTERRUPT, tid)
            _, status = os.waitpid(tid, WALL)
            if not os.WIFSTOPPED(status):
                raise PtraceError(f"thread {tid} did not stop (status {status:#x})")
            if status >> 16 != PTRACE_EVENT_STOP:  # a signal-delivery stop: hand the signal back
                pending_signal = os.WSTOPSIG(status)
            self.stops += 1
            flip = self._edit_registers(tid, code)
        finally:
            resumed_s = time.monotonic()  # taken before the thread can run on: detection comes later
            with contextlib.suppress(PtraceError):  # the thread is gone: nothing to resume
                _ptrace(PTRACE_DETACH, tid, 0, ctypes.c_void_p(pending_signal))
        if flip is not None:
            flip["at_monotonic_s"] = resumed_s
        return flip

    def _edit_registers(self, tid: int, code: Callable[[int, int], bytes]) -> Optional[Dict[str, Any]]:
        general = _get_regset(tid, NT_PRSTATUS, 8 * len(GENERAL_REGISTERS))
        if in_system_call(general):
            self.skipped_in_syscall += 1
            return None
        (rip,) = struct.unpack_from("<Q", general, 8 * GENERAL_REGISTERS.index("rip"))
        if self.ranges and not any(start <= rip < end for start, end, _ in self.ranges):
            self.skipped_outside_code += 1
            return None
        allowed = VECTOR_NAMES if self.kind == "vector" else DATA_REGISTERS
        live = next_read(code, rip, self.kind, allowed, self.bit)
        if live is None:
            self.skipped_no_live_register += 1
            return None
        register = live["register"]
        if self.kind == "vector":
            image = _get_regset(tid, NT_X86_XSTATE, XSTATE_BUFFER_BYTES)
            flip_xstate(image, int(register[3:]), self.bit)
            _set_regset(tid, NT_X86_XSTATE, image)
        else:
            flip_general(general, register, self.bit)
            _set_regset(tid, NT_PRSTATUS, general)
        where = symbolise(rip, self.ranges)
        return {"register": register, "bit": self.bit, "at": where, "read_by": live["read_by"]}

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def evidence(self) -> Dict[str, Any]:
        """What was injected, and how long after the caught flip the probe reported it."""
        found: Dict[str, Any] = {
            "kind": self.kind,
            "target_cpu": self.cpu,
            "tid": self.tid,
            "flips": len(self.flips),
            "stops": self.stops,
            "skipped_in_system_call": self.skipped_in_syscall,
            "skipped_outside_code": self.skipped_outside_code,
            "skipped_no_live_register": self.skipped_no_live_register,
            "errors": self.errors[:3],
            "refused": self.refused,
        }
        if self.flips:
            found["first_flip"] = self.flips[0]
            found["last_flip"] = self.flips[-1]
        caught = self.caught_flip()
        if caught is not None and self.mismatch is not None:
            at = float(self.mismatch.get("at_monotonic_s", 0.0))
            found["caught_flip"] = caught
            found["detected_after_s"] = round(at - caught["at_monotonic_s"], 6)
            found["detected_after_first_flip_s"] = round(at - self.flips[0]["at_monotonic_s"], 6)
        return found

    def caught_flip(self) -> Optional[Dict[str, Any]]:
        """The last flip made before the probe detected its first mismatch (the one it caught)."""
        if self.mismatch is None:
            return None
        at = float(self.mismatch.get("at_monotonic_s", 0.0))
        before = [f for f in self.flips if f["at_monotonic_s"] <= at]
        return before[-1] if before else None

"""Find QEMU, recognise kernel images, and boot one with a deadline (process group, killed).

KVM: /dev/kvm can exist and still hang or make QEMU abort (nested virtualisation; here
QEMU 7.2 asserts on an MSR). "Works" is therefore established, not assumed: with
--accel auto, a KVM boot in which the guest prints nothing (within KVM_FIRST_OUTPUT_S, or
before QEMU exits) is killed and the kernel is booted again under TCG.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from shakeout.errors import ShakeoutError, UsageError
from shakeout.inputs import MIB, check_input_file
from shakeout.proc import kill_group, spawn

QEMU_BINARY = {"x86_64": "qemu-system-x86_64"}
QEMU_PACKAGE = {"x86_64": "qemu-system-x86"}
KVM_FIRST_OUTPUT_S = 8.0
KERNEL_CAP_BYTES = 512 * MIB  # a bzImage is tens of MiB
X86_BOOT_MAGIC_OFFSET, X86_BOOT_MAGIC = 0x202, b"HdrS"
ARM64_MAGIC_OFFSET, ARM64_MAGIC = 0x38, b"ARM\x64"


def kernel_arch(path: Path) -> str:
    """The architecture of a kernel image file, or a ShakeoutError saying why not."""
    check_input_file(path, "kernel", KERNEL_CAP_BYTES)
    try:
        with path.open("rb") as f:
            head = f.read(0x400)
    except OSError as exc:
        raise ShakeoutError(f"cannot read kernel {path}: {exc.strerror or exc}") from None
    if head[X86_BOOT_MAGIC_OFFSET : X86_BOOT_MAGIC_OFFSET + 4] == X86_BOOT_MAGIC:
        return "x86_64"
    if head[ARM64_MAGIC_OFFSET : ARM64_MAGIC_OFFSET + 4] == ARM64_MAGIC:
        raise ShakeoutError(f"{path} is an arm64 kernel; shakeout vm boots x86-64 kernels only for now")
    raise ShakeoutError(
        f"{path} is not a bootable Linux kernel image (no x86 boot header 'HdrS'; pass a bzImage or /boot/vmlinuz-*)"
    )


def find_qemu(arch: str) -> str:
    binary = QEMU_BINARY[arch]
    path = shutil.which(binary)
    if not path:
        raise ShakeoutError(
            f"{binary} was not found: install QEMU (Debian/Ubuntu: apt-get install {QEMU_PACKAGE[arch]})"
        )
    return path


def cpu_models(qemu: str) -> List[str]:
    """The CPU models this QEMU knows (`-cpu help`), so a typo is a usage error, not a failed boot."""
    try:
        out = subprocess.run(
            [qemu, "-cpu", "help"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[1] for line in out.splitlines() if line.startswith("x86 ") and len(line.split()) > 1]


def check_cpu_model(qemu: str, cpu: str) -> None:
    known = cpu_models(qemu)
    if known and cpu not in known and cpu not in ("host", "max"):
        close = [m for m in known if m.lower().startswith(cpu[:3].lower())][:5] or known[:5]
        raise UsageError(f"--cpu {cpu}: QEMU knows no such CPU model (e.g. {', '.join(close)}; see '{qemu} -cpu help')")


def memory_bytes(memory: str) -> int:
    """'512M' / '2G' -> bytes (the CLI has checked the form)."""
    return int(memory[:-1]) << (20 if memory.endswith("M") else 30)


def check_memory(memory: str, meminfo: Path = Path("/proc/meminfo")) -> None:
    """A guest larger than this machine's memory cannot boot: say so before trying."""
    try:
        total_kib = next(
            int(line.split()[1]) for line in meminfo.read_text().splitlines() if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return
    if memory_bytes(memory) > total_kib * 1024:
        raise UsageError(f"--memory {memory} is more than this machine has ({total_kib // 1024:,} MiB)")


def kvm_usable() -> bool:
    """/dev/kvm can be opened (whether it works is found out by booting)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def qemu_argv(qemu: str, kernel: Path, initrd: Path, cpus: int, memory: str, accel: str, cpu: str) -> List[str]:
    return [
        qemu,
        "-nodefaults",
        "-no-reboot",
        "-display", "none",
        "-monitor", "none",
        "-serial", "stdio",
        "-nic", "none",
        "-accel", accel,
        "-cpu", cpu,
        "-smp", str(cpus),
        "-m", memory,
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", "console=ttyS0 loglevel=4 panic=-1 rdinit=/init",
    ]  # fmt: skip


@dataclass
class Boot:
    console: str
    outcome: str  # exited | timeout | no-output
    returncode: Optional[int]
    elapsed_s: float

    @property
    def qemu_messages(self) -> List[str]:
        return [line for line in self.console.splitlines() if line.startswith("qemu-system-")]

    @property
    def guest_spoke(self) -> bool:
        """The guest printed something (QEMU's own messages do not count)."""
        return any(line.strip() and not line.startswith("qemu-system-") for line in self.console.splitlines())


def boot(
    argv: List[str],
    deadline_s: float,
    first_output_s: Optional[float] = None,
    on_line: Optional[Callable[[str], None]] = None,
) -> Boot:
    """Run QEMU until it exits or the deadline passes; QEMU and its group are always killed."""
    started = time.monotonic()
    chunks: List[bytes] = []
    partial = b""
    proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outcome = "exited"
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout.fileno(), selectors.EVENT_READ)
            while True:
                now = time.monotonic() - started
                if now >= deadline_s:
                    outcome = "timeout"
                    break
                if first_output_s is not None and not chunks and now >= first_output_s:
                    outcome = "no-output"
                    break
                if not sel.select(timeout=0.2):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if on_line:
                    *lines, partial = (partial + chunk).split(b"\n")
                    for line in lines:
                        on_line(line.decode("utf-8", "replace").rstrip("\r"))
    finally:
        kill_group(proc.pid)
        returncode = proc.wait()
        if proc.stdout:
            proc.stdout.close()
    return Boot(b"".join(chunks).decode("utf-8", "replace"), outcome, returncode, time.monotonic() - started)

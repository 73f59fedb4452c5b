"""Facts about this machine that verdicts depend on, read from an injectable root.

Everything comes from files under the root (procfs and sysfs text, the kernel log at
dev/kmsg, the MSR devices at dev/cpu/N/msr), so tests can fake any machine by writing
files under a temporary root, plus getrlimit and the CPU count, which are passed in for
the same reason. A fact that cannot be read is recorded with the reason, never guessed.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import resource
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from shakeout.kversion import (
    Compiler,
    KernelVersion,
    parse_kernel_compiler,
    ubuntu_abi,
    upstream_kernel_version,
)

VECTOR_FLAGS = ("sse2", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "amx_tile")
# AMD's DE_CFG: bit 9 is Zenbleed's chicken bit (read on AMD family 17h only).
AMD_DE_CFG_MSR = 0xC0011029
# The kernel log is read up to this many records or bytes (a device that never ends stops here).
KMSG_MAX_RECORDS = 200_000
KMSG_MAX_BYTES = 32 << 20
# Linux 6.7+ (arch/x86/kernel/cpu/microcode/core.c) prints these once per boot.
CURRENT_REVISION = re.compile(r"microcode: Current revision: (0x[0-9a-fA-F]+)")
UPDATED_EARLY_FROM = re.compile(r"microcode: Updated early from: (0x[0-9a-fA-F]+)")
# Older kernels: "microcode updated early to revision 0x..." (Intel), "... new patch_level=0x..." (AMD).
OLD_EARLY_UPDATE = re.compile(r"microcode: microcode updated early to (?:revision|new patch_level=)")
KMSG_PREFIX = re.compile(r"^\d+,\d+,\d+,[^;]*;")


@dataclass(frozen=True)
class Cpu:
    vendor: str
    family: Optional[int]
    model: Optional[int]
    stepping: Optional[int]
    microcode: Optional[str]
    model_name: str
    flags: FrozenSet[str] = field(default_factory=frozenset)

    @property
    def vector_extensions(self) -> Tuple[str, ...]:
        return tuple(f for f in VECTOR_FLAGS if f in self.flags)


@dataclass(frozen=True)
class MicrocodeLoad:
    """What the kernel log says about how this boot's microcode got there.

    `current` is the revision after early loading, `early_from` the revision the firmware
    left when the OS updated it early; `os_updated_early` is None when the log cannot say.
    """

    current: Optional[int] = None
    early_from: Optional[int] = None
    os_updated_early: Optional[bool] = None
    reason: str = "the kernel log was not read"

    @property
    def firmware_revision(self) -> Optional[int]:
        """The revision the firmware loaded, when the log tells it."""
        if self.early_from is not None:
            return self.early_from
        return self.current if self.os_updated_early is False else None

    def describe(self) -> str:
        if self.early_from is not None and self.current is not None:
            return f"the OS updated it early from {self.early_from:#x} (firmware's) to {self.current:#x}"
        if self.os_updated_early is False and self.current is not None:
            return f"{self.current:#x} at boot, not updated early by the OS (so loaded by the firmware)"
        if self.os_updated_early:
            return "updated early by the OS; the kernel log does not say from which revision"
        return self.reason


@dataclass(frozen=True)
class MsrReading:
    """One MSR read on every CPU through /dev/cpu/N/msr, or why it could not be."""

    address: int
    values: Tuple[int, ...] = ()  # one per CPU, in CPU order
    reason: str = ""  # empty when read

    def bit_set_everywhere(self, bit: int) -> Optional[bool]:
        if not self.values:
            return None
        return all(v >> bit & 1 for v in self.values)

    def cpus_without(self, bit: int) -> List[int]:
        return [cpu for cpu, v in enumerate(self.values) if not v >> bit & 1]


@dataclass(frozen=True)
class Host:
    os: str
    arch: str
    kernel_release: str
    proc_version: str
    kernel_version: Optional[KernelVersion]
    kernel_compiler: Optional[Compiler]
    ubuntu_abi: Optional[Tuple[int, int]]
    cpu: Cpu
    memlock_limit_bytes: Optional[int]  # None: unlimited
    cpus: int
    smt_active: Optional[bool] = None  # /sys/devices/system/cpu/smt/active; None: not reported
    microcode_load: MicrocodeLoad = field(default_factory=MicrocodeLoad)
    msrs: Dict[int, MsrReading] = field(default_factory=dict)
    is_root: bool = False  # the user shakeout runs as (some probes need root)

    @property
    def hypervisor(self) -> bool:
        """CPUID says a hypervisor runs us (the kernel's 'hypervisor' flag)."""
        return "hypervisor" in self.cpu.flags

    def to_dict(self) -> Dict[str, Any]:
        return {
            "os": self.os,
            "arch": self.arch,
            "kernel_release": self.kernel_release,
            "kernel_version": str(self.kernel_version) if self.kernel_version else None,
            "kernel_compiler": str(self.kernel_compiler) if self.kernel_compiler else None,
            "proc_version": self.proc_version,
            "cpu": {
                "vendor": self.cpu.vendor,
                "family": self.cpu.family,
                "model": self.cpu.model,
                "stepping": self.cpu.stepping,
                "microcode": self.cpu.microcode,
                "model_name": self.cpu.model_name,
            },
            "vector_extensions": list(self.cpu.vector_extensions),
            "memlock_limit_bytes": self.memlock_limit_bytes,
            "cpus": self.cpus,
            "hypervisor": self.hypervisor,
            "smt_active": self.smt_active,
            "microcode_load": {
                "current": _hex(self.microcode_load.current),
                "updated_early_from": _hex(self.microcode_load.early_from),
                "os_updated_early": self.microcode_load.os_updated_early,
                "summary": self.microcode_load.describe(),
            },
            "msrs": {
                f"{a:#x}": {"values": [f"{v:#x}" for v in r.values], "reason": r.reason} for a, r in self.msrs.items()
            },
        }


def _hex(value: Optional[int]) -> Optional[str]:
    return None if value is None else f"{value:#x}"


def _read(root: Path, rel: str) -> str:
    try:
        return (root / rel).read_text(errors="replace")
    except OSError:
        return ""


def _int(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None


def parse_cpuinfo(text: str) -> Cpu:
    """The first processor's identity from /proc/cpuinfo (x86 and arm64 field names)."""
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags") or fields.get("Features") or ""
    return Cpu(
        vendor=fields.get("vendor_id") or fields.get("CPU implementer") or "unknown",
        family=_int(fields.get("cpu family") or fields.get("CPU architecture")),
        model=_int(fields.get("model") or fields.get("CPU part")),
        stepping=_int(fields.get("stepping") or fields.get("CPU revision")),
        microcode=fields.get("microcode"),
        model_name=fields.get("model name", ""),
        flags=frozenset(flags.split()),
    )


def _kmsg_records(fd: int) -> List[str]:
    """Every record of /dev/kmsg readable now (one per read; EAGAIN ends, EPIPE skips overwritten ones)."""
    records: List[str] = []
    total = 0
    while len(records) < KMSG_MAX_RECORDS and total < KMSG_MAX_BYTES:
        try:
            chunk = os.read(fd, 8192)
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                continue
            raise
        if not chunk:
            break
        total += len(chunk)
        records.extend(chunk.decode("utf-8", "replace").splitlines())
    return records


def read_kernel_log(path: Path) -> Tuple[Optional[List[str]], str]:
    """The kernel log's messages (record prefixes removed), or None and why it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        hint = " (dmesg_restrict: needs root or CAP_SYSLOG)" if exc.errno in (errno.EPERM, errno.EACCES) else ""
        return None, f"the kernel log {path} cannot be read: {exc.strerror}{hint}"
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            lines = os.read(fd, KMSG_MAX_BYTES).decode("utf-8", "replace").splitlines()
        else:
            lines = _kmsg_records(fd)
    except OSError as exc:
        return None, f"the kernel log {path} cannot be read: {exc.strerror}"
    finally:
        os.close(fd)
    return [KMSG_PREFIX.sub("", line) for line in lines], ""


def parse_microcode_log(lines: Optional[List[str]], unreadable: str) -> MicrocodeLoad:
    """How microcode was loaded this boot, from the kernel's own lines (Linux 6.7+, older forms too)."""
    if lines is None:
        return MicrocodeLoad(reason=unreadable)
    current = early_from = None
    old_style = False
    for line in lines:
        match = CURRENT_REVISION.search(line)
        if match:
            current = int(match.group(1), 16)
        match = UPDATED_EARLY_FROM.search(line)
        if match:
            early_from = int(match.group(1), 16)
        old_style = old_style or bool(OLD_EARLY_UPDATE.search(line))
    if current is not None:
        return MicrocodeLoad(current, early_from, early_from is not None, "")
    if old_style:
        return MicrocodeLoad(os_updated_early=True, reason="")
    return MicrocodeLoad(
        reason="the kernel log has no 'microcode: Current revision' line (kernels before 6.7 do not print it, "
        "and the log may have rotated since boot)"
    )


def _msr_devices(root: Path) -> List[Path]:
    cpus = [p for p in (root / "dev/cpu").glob("[0-9]*") if p.name.isdigit()]
    return [p / "msr" for p in sorted(cpus, key=lambda p: int(p.name))]


def read_msr(root: Path, address: int) -> MsrReading:
    """MSR `address` on every CPU (needs root and the msr module), or why it cannot be read."""
    devices = _msr_devices(root)
    if not devices:
        return MsrReading(address, reason=f"no {root / 'dev/cpu'}/N/msr devices (load the msr module: modprobe msr)")
    values = []
    for device in devices:
        try:
            fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.pread(fd, 8, address)
            finally:
                os.close(fd)
        except OSError as exc:
            why = {
                errno.ENOENT: "the msr module is not loaded (modprobe msr)",
                errno.EACCES: "reading MSRs needs root",
                errno.EPERM: "reading MSRs needs root (CAP_SYS_RAWIO)",
                errno.EIO: "the CPU refused the read (under a hypervisor, the hypervisor answers)",
            }.get(exc.errno or 0, exc.strerror or str(exc))
            return MsrReading(address, reason=f"cannot read MSR {address:#x} from {device}: {why}")
        if len(data) != 8:
            return MsrReading(address, reason=f"cannot read MSR {address:#x} from {device}: short read")
        values.append(int.from_bytes(data, "little"))
    return MsrReading(address, tuple(values))


def _smt_active(root: Path) -> Optional[bool]:
    text = _read(root, "sys/devices/system/cpu/smt/active").strip()
    return {"1": True, "0": False}.get(text)


def _msrs_of_interest(root: Path, cpu: Cpu) -> Dict[int, MsrReading]:
    if cpu.vendor == "AuthenticAMD" and cpu.family == 0x17:
        return {AMD_DE_CFG_MSR: read_msr(root, AMD_DE_CFG_MSR)}
    return {}


def _memlock_limit() -> Optional[int]:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_host(
    root: Path = Path("/"),
    system: Optional[str] = None,
    machine: Optional[str] = None,
    memlock_limit_bytes: Optional[int] = -1,
    cpus: Optional[int] = None,
    is_root: Optional[bool] = None,
) -> Host:
    """Read the host's facts; every argument can stand in for the real machine in tests."""
    release = _read(root, "proc/sys/kernel/osrelease").strip() or platform.release()
    proc_version = _read(root, "proc/version").strip()
    signature = _read(root, "proc/version_signature").strip()
    cpu = parse_cpuinfo(_read(root, "proc/cpuinfo"))
    log, unreadable = read_kernel_log(root / "dev/kmsg")
    return Host(
        os=(system or platform.system()).lower(),
        arch=machine or platform.machine(),
        kernel_release=release,
        proc_version=proc_version,
        kernel_version=upstream_kernel_version(release, proc_version, signature),
        kernel_compiler=parse_kernel_compiler(proc_version),
        ubuntu_abi=ubuntu_abi(release, proc_version) if "Ubuntu" in proc_version else None,
        cpu=cpu,
        memlock_limit_bytes=_memlock_limit() if memlock_limit_bytes == -1 else memlock_limit_bytes,
        cpus=cpus or _cpu_count(),
        smt_active=_smt_active(root),
        microcode_load=parse_microcode_log(log, unreadable),
        msrs=_msrs_of_interest(root, cpu),
        is_root=os.geteuid() == 0 if is_root is None else is_root,
    )


def describe_memlock(limit: Optional[int]) -> str:
    return "unlimited" if limit is None else f"{limit // 1024} KiB"


def host_summary(host: Host) -> List[Tuple[str, str]]:
    """(fact, value) rows for people."""
    cpu = host.cpu
    return [
        ("os / arch", f"{host.os} / {host.arch}"),
        ("kernel release", host.kernel_release),
        ("kernel version", str(host.kernel_version) if host.kernel_version else "unknown"),
        ("kernel built with", str(host.kernel_compiler) if host.kernel_compiler else "unknown"),
        ("cpu", f"{cpu.vendor} {cpu.model_name}".strip()),
        (
            "family / model / stepping",
            "{} / {} / {}".format(
                *("-" if v is None else f"{v} (0x{v:x})" for v in (cpu.family, cpu.model, cpu.stepping))
            ),
        ),
        ("microcode", cpu.microcode or "not reported"),
        ("microcode loading", host.microcode_load.describe()),
        ("hypervisor", "yes (CPU facts are the hypervisor's)" if host.hypervisor else "no"),
        ("SMT active", {True: "yes", False: "no", None: "not reported"}[host.smt_active]),
        ("vector extensions", ", ".join(cpu.vector_extensions) or "none"),
        ("RLIMIT_MEMLOCK", describe_memlock(host.memlock_limit_bytes)),
        ("cpus", str(host.cpus)),
    ] + [(f"MSR {a:#x}", r.reason or ", ".join(f"{v:#x}" for v in r.values)) for a, r in host.msrs.items()]

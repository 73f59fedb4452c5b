"""Facts about this machine that verdicts depend on, read from an injectable root.

Everything comes from procfs text (so tests can fake any machine by writing files under
a temporary root) plus getrlimit and the CPU count, which are passed in for the same
reason.
"""

from __future__ import annotations

import os
import platform
import resource
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
        }


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
) -> Host:
    """Read the host's facts; every argument can stand in for the real machine in tests."""
    release = _read(root, "proc/sys/kernel/osrelease").strip() or platform.release()
    proc_version = _read(root, "proc/version").strip()
    signature = _read(root, "proc/version_signature").strip()
    return Host(
        os=(system or platform.system()).lower(),
        arch=machine or platform.machine(),
        kernel_release=release,
        proc_version=proc_version,
        kernel_version=upstream_kernel_version(release, proc_version, signature),
        kernel_compiler=parse_kernel_compiler(proc_version),
        ubuntu_abi=ubuntu_abi(release, proc_version) if "Ubuntu" in proc_version else None,
        cpu=parse_cpuinfo(_read(root, "proc/cpuinfo")),
        memlock_limit_bytes=_memlock_limit() if memlock_limit_bytes == -1 else memlock_limit_bytes,
        cpus=cpus or _cpu_count(),
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
        ("vector extensions", ", ".join(cpu.vector_extensions) or "none"),
        ("RLIMIT_MEMLOCK", describe_memlock(host.memlock_limit_bytes)),
        ("cpus", str(host.cpus)),
    ]

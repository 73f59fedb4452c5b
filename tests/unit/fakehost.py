"""Fake machines: a procfs root written into a temporary directory."""

from pathlib import Path
from typing import Dict, List, Optional

from shakeout.host import Host, read_host

AMD_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
flags\t\t: fpu sse sse2 avx avx2 xsave

processor\t: 1
vendor_id\t: AuthenticAMD
"""

OLD_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 23
model name\t: Intel(R) Core(TM)2 Duo CPU
stepping\t: 10
flags\t\t: fpu sse sse2 ssse3 sse4_1
"""


def cpuinfo_for(
    vendor: str, family: int, model: int, stepping: int, microcode: Optional[str], flags: str = "fpu sse2 avx ht"
) -> str:
    """/proc/cpuinfo of one processor with this signature (no microcode line when microcode is None)."""
    lines = [
        "processor\t: 0",
        f"vendor_id\t: {vendor}",
        f"cpu family\t: {family}",
        f"model\t\t: {model}",
        "model name\t: Fake CPU",
        f"stepping\t: {stepping}",
    ]
    if microcode is not None:
        lines.append(f"microcode\t: {microcode}")
    lines.append(f"flags\t\t: {flags}")
    return "\n".join(lines) + "\n\n"


def write_msrs(root: Path, per_cpu: List[Dict[int, int]]) -> None:
    """dev/cpu/N/msr files holding these MSR values at their addresses (sparse files)."""
    for cpu, values in enumerate(per_cpu):
        device = root / f"dev/cpu/{cpu}/msr"
        device.parent.mkdir(parents=True, exist_ok=True)
        with open(device, "wb") as f:
            for address, value in values.items():
                f.seek(address)
                f.write(value.to_bytes(8, "little"))


def fake_host(
    root: Path,
    release: str,
    proc_version: str,
    cpuinfo: str = AMD_CPUINFO,
    signature: Optional[str] = None,
    system: str = "Linux",
    machine: str = "x86_64",
    kmsg: Optional[str] = None,
    smt_active: Optional[str] = None,
) -> Host:
    """kmsg, when given, is the kernel log (dev/kmsg); smt_active the content of .../smt/active."""
    (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    (root / "proc/version").write_text(proc_version + "\n")
    (root / "proc/cpuinfo").write_text(cpuinfo)
    if signature:
        (root / "proc/version_signature").write_text(signature + "\n")
    if kmsg is not None:
        (root / "dev").mkdir(exist_ok=True)
        (root / "dev/kmsg").write_text(kmsg)
    if smt_active is not None:
        (root / "sys/devices/system/cpu/smt").mkdir(parents=True, exist_ok=True)
        (root / "sys/devices/system/cpu/smt/active").write_text(smt_active + "\n")
    return read_host(root, system=system, machine=machine, memlock_limit_bytes=65536, cpus=4)

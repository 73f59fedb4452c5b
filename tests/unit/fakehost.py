"""Fake machines: a procfs root written into a temporary directory."""

from pathlib import Path
from typing import Optional

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


def fake_host(
    root: Path,
    release: str,
    proc_version: str,
    cpuinfo: str = AMD_CPUINFO,
    signature: Optional[str] = None,
    system: str = "Linux",
    machine: str = "x86_64",
) -> Host:
    (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    (root / "proc/version").write_text(proc_version + "\n")
    (root / "proc/cpuinfo").write_text(cpuinfo)
    if signature:
        (root / "proc/version_signature").write_text(signature + "\n")
    return read_host(root, system=system, machine=machine, memlock_limit_bytes=65536, cpus=4)

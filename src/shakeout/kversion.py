"""Kernel release strings and the compiler named in /proc/version, as comparable values.

Release strings come in many shapes: `5.3.0-24-generic` (Ubuntu), `5.4.0-1-amd64`
(Debian), `5.4.2-arch1-1` (Arch), `6.18.44-fc-v657`, `5.5.0-rc1`. Only the leading
`major.minor[.patch]` and an `-rcN` suffix carry version meaning; the rest is the
distribution's. Distributions also put the upstream version elsewhere: Debian in
/proc/version ("Debian 5.4.6-1"), Ubuntu in /proc/version_signature ("Ubuntu
5.4.0-26.30-generic 5.4.30"). Versions inform verdicts; they never decide them alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?", re.ASCII)


@dataclass(frozen=True, order=True)
class KernelVersion:
    """major.minor.patch; a release candidate sorts before its release (rc=None)."""

    major: int
    minor: int
    patch: int = 0
    rc_key: int = 1 << 30  # release candidates sort first: rcN has rc_key N

    @property
    def rc(self) -> Optional[int]:
        return None if self.rc_key == 1 << 30 else self.rc_key

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return base if self.rc is None else f"{base}-rc{self.rc}"


def parse_kernel_version(text: str) -> Optional[KernelVersion]:
    """The version at the start of a release string, or None when it has none."""
    m = _RELEASE.match(text.strip())
    if not m:
        return None
    major, minor, patch, rc = m.groups()
    version = KernelVersion(int(major), int(minor), int(patch or 0))
    if rc is not None:
        version = KernelVersion(version.major, version.minor, version.patch, int(rc))
    return version


def upstream_kernel_version(release: str, proc_version: str, version_signature: str = "") -> Optional[KernelVersion]:
    """The upstream version a distribution kernel is based on, as precisely as known."""
    if version_signature.startswith("Ubuntu"):
        sig = parse_kernel_version(version_signature.rsplit(maxsplit=1)[-1])
        if sig:
            return sig
    # After the build number ("#1 SMP ... Debian 6.1.76-1"), not the compiler's "(Debian 12.2.0-14)".
    _, _, build = proc_version.partition("#")
    m = re.search(r"\bDebian (\d+\.\d+(?:\.\d+)?)", build, re.ASCII)
    if m:
        return parse_kernel_version(m.group(1))
    return parse_kernel_version(release)


@dataclass(frozen=True)
class Compiler:
    name: str  # "gcc" or "clang"
    version: str  # "" when the text names the compiler without a version

    @property
    def major(self) -> Optional[int]:
        head = self.version.split(".")[0]
        return int(head) if head.isascii() and head.isdigit() else None

    def __str__(self) -> str:
        return f"{self.name} {self.version}".strip()


_COMPILER_PATTERNS: Tuple[Tuple[str, re.Pattern[str]], ...] = (
    ("gcc", re.compile(r"\bgcc version (\d+(?:\.\d+)*)", re.ASCII)),
    ("gcc", re.compile(r"\(gcc(?:-\d+)? \([^()]*(?:\([^()]*\)[^()]*)*\) (\d+(?:\.\d+)+)", re.ASCII)),
    ("clang", re.compile(r"\bclang version (\d+(?:\.\d+)*)", re.ASCII)),
)


def parse_kernel_compiler(proc_version: str) -> Optional[Compiler]:
    """The compiler that built the running kernel, from the text of /proc/version."""
    for name, pattern in _COMPILER_PATTERNS:
        m = pattern.search(proc_version)
        if m:
            return Compiler(name, m.group(1))
    if re.search(r"\bgcc\b", proc_version):
        return Compiler("gcc", "")
    if re.search(r"\bclang\b", proc_version):
        return Compiler("clang", "")
    return None


def ubuntu_abi(release: str, proc_version: str) -> Optional[Tuple[int, int]]:
    """Ubuntu's (ABI, upload) numbers, e.g. (8, 11) for 5.4.0-8-generic built as #11-Ubuntu."""
    abi = re.match(r"^\d+\.\d+\.\d+-(\d+)-", release, re.ASCII)
    upload = re.search(r"#(\d+)(?:~[^ ]*)?-Ubuntu", proc_version, re.ASCII)
    if not abi or not upload:
        return None
    return int(abi.group(1)), int(upload.group(1))

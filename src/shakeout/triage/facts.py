"""Facts about the crashing machine that appear in pasted logs, read one line at a time.

A paste often carries the machine's identity besides the crash: `uname -a`, the first line
of dmesg ("Linux version … (gcc version …)"), the header of a kernel oops ("CPU: 3 PID: …
Not tainted 5.3.7-arch1-1 #1"), `go version`/`go env`, Go runtime source paths
(sys_netbsd_amd64.s), /proc/cpuinfo fields, the kernel's smpboot and microcode lines, and
the CPUID signature in machine-check reports ("PROCESSOR 0:706a1"). Versions are parsed by
shakeout.kversion, the same code that reads the live machine. Syslog and journal lines
also name the host ("Nov  7 06:32:49 web3 kernel: …"), which lets several logs be compared.
Everything here is a pure function of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from shakeout.kversion import (
    Compiler,
    KernelVersion,
    parse_kernel_compiler,
    ubuntu_abi,
    upstream_kernel_version,
)

OS_NAMES = ("linux", "freebsd", "netbsd", "openbsd", "dragonfly", "darwin", "windows")
ARCH_NAMES = r"x86_64|amd64|i[3-6]86|386|aarch64|arm64|riscv64|ppc64le|s390x|mips64le"

_LINUX_VERSION = re.compile(r"Linux version (\d+\.\d+\S*) (.*)")
_UNAME = re.compile(
    r"\b(Linux|FreeBSD|NetBSD|OpenBSD|DragonFly) ([\w.{}-]+(?: [\w]+\})?) (\d+\.\d+[\w.+~-]*) (?:#\d|\1 |GENERIC)"
)
_UNAME_ARCH = re.compile(rf"\b({ARCH_NAMES})\b(?!.*\b(?:{ARCH_NAMES})\b)")
_KERNEL_MENTION = re.compile(r"\b[Kk]ernel(?: version| release)?:? (\d+\.\d+(?:\.\d+)?-[\w.+~-]+)(?: #\d+\S*)?")
_OOPS = re.compile(r"CPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: .*?(?:Not tainted|Tainted: [A-Z ]+?) +(\d+\.\d+\S*) #")
_GO_VERSION = re.compile(r"\bgo version (?:go\S+|devel .*?) (" + "|".join(OS_NAMES) + r")/(\w+)")
_GO_ENV = re.compile(r"\b(GOOS|GOARCH)=[\"']?(\w+)")
_GO_SOURCE = re.compile(
    r"\b(?:sys|os|signal|defs|asm|rt0|zsyscall|syscall|os1|os2)_(linux|freebsd|netbsd|openbsd|dragonfly|darwin)"
    rf"(?:_({ARCH_NAMES}|arm))?\.(?:go|s)\b"
)
_BUILDER = re.compile(r"\b(linux|freebsd|netbsd|openbsd)-(amd64|386|arm64|riscv64)-")
_BSD_RELEASE = re.compile(r"\b(NetBSD|OpenBSD|FreeBSD) \d+\.\d+")
_SYSLOG_HOST = re.compile(
    r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) "
    r"([A-Za-z0-9][\w.-]*) "
)
_CPUINFO = re.compile(r"^\s*(vendor_id|cpu family|model|model name|stepping|microcode)\s*:\s*(.+?)\s*$")
_SMPBOOT = re.compile(
    r"smpboot: CPU\d*: (.+?) \(family: (0x[0-9a-f]+), model: (0x[0-9a-f]+), stepping: (0x[0-9a-f]+)\)"
)
_MICROCODE = re.compile(
    r"microcode: .*?(?:Current revision|updated early to revision|revision=|patch_level=)[: ]*(0x[0-9a-f]+)", re.I
)
_CPUID_SIGNATURE = re.compile(r"(?:PROCESSOR \d+:|cpuid=0x|\bsig=0x)([0-9a-f]{5,8})\b")


@dataclass(frozen=True)
class LineRef:
    """One line of the input: where it is and (a bounded prefix of) what it says."""

    source: str
    line: int
    text: str

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "line": self.line, "text": self.text}


@dataclass
class HostFacts:
    """What the log says about one machine; the first value seen of each fact wins."""

    os: str = ""
    arch: str = ""
    kernel_release: str = ""
    proc_version: str = ""
    kernel_version: Optional[KernelVersion] = None
    kernel_compiler: Optional[Compiler] = None
    ubuntu_abi: Optional[Tuple[int, int]] = None
    cpu_vendor: str = ""
    cpu_family: Optional[int] = None
    cpu_model: Optional[int] = None
    cpu_stepping: Optional[int] = None
    microcode: Optional[int] = None
    cpu_model_name: str = ""
    seen_at: Dict[str, LineRef] = field(default_factory=dict)

    def absorb(self, found: Dict[str, Any], ref: LineRef) -> None:
        for key, value in found.items():
            if value in (None, "") or getattr(self, key) not in (None, ""):
                continue
            setattr(self, key, value)
            self.seen_at[key] = ref

    def to_dict(self) -> Dict[str, Any]:
        return {
            "os": self.os or None,
            "arch": self.arch or None,
            "kernel_release": self.kernel_release or None,
            "kernel_version": str(self.kernel_version) if self.kernel_version else None,
            "kernel_compiler": str(self.kernel_compiler) if self.kernel_compiler else None,
            "cpu": {
                "vendor": self.cpu_vendor or None,
                "family": self.cpu_family,
                "model": self.cpu_model,
                "stepping": self.cpu_stepping,
                "microcode": f"{self.microcode:#x}" if self.microcode is not None else None,
                "model_name": self.cpu_model_name or None,
            },
            "seen_at": {k: v.to_dict() for k, v in sorted(self.seen_at.items())},
        }


def syslog_host(line: str) -> str:
    """The host name after a syslog/journal timestamp, or ""."""
    m = _SYSLOG_HOST.match(line)
    return m.group(1) if m else ""


def decode_cpuid_signature(signature: int) -> Tuple[int, int, int]:
    """(family, model, stepping) from CPUID leaf 1 EAX, as the kernel's x86_family/x86_model do."""
    family = (signature >> 8) & 0xF
    model = (signature >> 4) & 0xF
    if family == 0xF:
        family += (signature >> 20) & 0xFF
    if family >= 0x6:
        model += ((signature >> 16) & 0xF) << 4
    return family, model, signature & 0xF


def _vendor_from_name(name: str) -> str:
    if re.search(r"\bAMD\b", name):
        return "AuthenticAMD"
    if re.search(r"\bIntel\b", name):
        return "GenuineIntel"
    return ""


def _kernel_facts(release: str, proc_version: str) -> Dict[str, Any]:
    return {
        "os": "linux",
        "kernel_release": release,
        "proc_version": proc_version,
        "kernel_version": upstream_kernel_version(release, proc_version),
        "kernel_compiler": parse_kernel_compiler(proc_version),
        "ubuntu_abi": ubuntu_abi(release, proc_version) if "Ubuntu" in proc_version else None,
    }


def _arch(name: str) -> str:
    return {"amd64": "x86_64", "386": "i386", "arm64": "aarch64"}.get(name, name)


def _uname_facts(line: str) -> Tuple[Dict[str, Any], str]:
    m = _UNAME.search(line)
    if not m:
        return {}, ""
    system, host, release = m.groups()
    rest = line[m.start() :]
    found: Dict[str, Any] = {"os": system.lower()}
    if system == "Linux":
        found = _kernel_facts(release, rest)
    arch = _UNAME_ARCH.search(rest)
    if arch:
        found["arch"] = _arch(arch.group(1))
    return found, host


def _cpu_facts(line: str) -> Dict[str, Any]:
    found: Dict[str, Any] = {}
    m = _CPUINFO.match(line)
    if m:
        key, value = m.groups()
        if key == "vendor_id":
            found["cpu_vendor"] = value
        elif key == "model name":
            found["cpu_model_name"] = value
            found["cpu_vendor"] = _vendor_from_name(value)
        elif key == "microcode":
            found["microcode"] = _int(value, 16)
        else:
            found[{"cpu family": "cpu_family", "model": "cpu_model", "stepping": "cpu_stepping"}[key]] = _int(value, 0)
    m = _SMPBOOT.search(line)
    if m:
        found.update(
            cpu_model_name=m.group(1),
            cpu_vendor=_vendor_from_name(m.group(1)),
            cpu_family=int(m.group(2), 16),
            cpu_model=int(m.group(3), 16),
            cpu_stepping=int(m.group(4), 16),
        )
    m = _MICROCODE.search(line)
    if m:
        found["microcode"] = int(m.group(1), 16)
    m = _CPUID_SIGNATURE.search(line)
    if m:
        family, model, stepping = decode_cpuid_signature(int(m.group(1), 16))
        found.update(cpu_family=family, cpu_model=model, cpu_stepping=stepping)
    return found


def _int(text: str, base: int) -> Optional[int]:
    try:
        return int(text.strip(), base)
    except ValueError:
        return None


def _go_facts(line: str) -> Dict[str, Any]:
    found: Dict[str, Any] = {}
    m = _GO_VERSION.search(line)
    if m:
        found.update(os=m.group(1), arch=_arch(m.group(2)))
    for key, value in _GO_ENV.findall(line):
        found["os" if key == "GOOS" else "arch"] = value if key == "GOOS" else _arch(value)
    for pattern in (_GO_SOURCE, _BUILDER):
        m = pattern.search(line)
        if m:
            found.setdefault("os", m.group(1))
            if m.group(2):
                found.setdefault("arch", _arch(m.group(2)))
    m = _BSD_RELEASE.search(line)
    if m:
        found.setdefault("os", m.group(1).lower())
    return found


def line_facts(line: str) -> Tuple[Dict[str, Any], str]:
    """The machine facts one line states, and the host name it declares (uname), if any."""
    m = _LINUX_VERSION.search(line)
    if m:
        found = _kernel_facts(m.group(1), line[m.start() :])
        host = ""
    else:
        found, host = _uname_facts(line)
        oops = _OOPS.search(line)
        mention = _KERNEL_MENTION.search(line)
        if oops:
            found = _kernel_facts(oops.group(1), line[oops.start() :])
        elif mention and not found:
            found = _kernel_facts(mention.group(1), line[mention.start() :])
    for extra in (_go_facts(line), _cpu_facts(line)):
        for key, value in extra.items():
            found.setdefault(key, value)
    return found, host


FACT_PREFILTER = (
    r"Linux version \d|\b[Kk]ernel(?: version| release)?:? \d+\.\d+|"
    r"\b(?:Linux|FreeBSD|NetBSD|OpenBSD|DragonFly) \S+ \d+\.\d+|PID: \d+ Comm:|\bgo version |"
    r"\bGOOS=|\bGOARCH=|_(?:linux|freebsd|netbsd|openbsd|dragonfly|darwin)(?:_\w+)?\.(?:go|s)\b|"
    r"\b(?:linux|freebsd|netbsd|openbsd)-(?:amd64|386|arm64|riscv64)-|"
    r"^\s*(?:vendor_id|cpu family|model|model name|stepping|microcode)\s*:|smpboot: CPU|microcode: |"
    r"PROCESSOR \d+:|cpuid=0x|\bsig=0x"
)

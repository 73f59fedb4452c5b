"""How much memory to test: parsing --size and choosing a default from /proc/meminfo.

A size is bytes with an optional binary unit (512M, 1.5G, 1073741824, 64MiB) or a percentage
of MemAvailable (50%). Only ASCII digits count: Python's int() accepts Arabic-Indic or
full-width digits, which no user means as a size. The default leaves a margin of
MemAvailable to everyone else — the larger of 256 MiB and 10 % of MemTotal — so that the test
does not push other programs into swap or wake the OOM killer; and where the process may not
lock more than RLIMIT_MEMLOCK (no CAP_IPC_LOCK), the default is that limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from shakeout.errors import ShakeoutError, UsageError

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
MIN_SIZE_BYTES = MIB
MARGIN_MIN_BYTES = 256 * MIB
MARGIN_FRACTION = 0.10
_UNITS = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": 1 << 40}
_SIZE = re.compile(r"([0-9]+)(\.[0-9]+)?\s*([KMGT]?)(I?B)?", re.ASCII | re.IGNORECASE)
_PERCENT = re.compile(r"([0-9]+)(\.[0-9]+)?\s*%", re.ASCII)


@dataclass(frozen=True)
class MemInfo:
    total_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class SizeChoice:
    size_bytes: int
    reason: str


def human_bytes(n: int) -> str:
    """1073741824 -> '1 GiB', 1610612736 -> '1.5 GiB', 4096 -> '4 KiB'."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def parse_meminfo(text: str) -> MemInfo:
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isascii() and fields[0].isdigit():
            values[name.strip()] = int(fields[0]) * (KIB if fields[1:2] == ["kB"] else 1)
    if "MemTotal" not in values or "MemAvailable" not in values:
        raise ShakeoutError("/proc/meminfo has no MemTotal or MemAvailable (a kernel older than 3.14?)")
    return MemInfo(values["MemTotal"], values["MemAvailable"])


def margin_bytes(info: MemInfo) -> int:
    return max(MARGIN_MIN_BYTES, int(info.total_bytes * MARGIN_FRACTION))


def parse_bytes(text: str, option: str) -> Optional[int]:
    """'1.5G' -> 1610612736; None when text is not bytes with an optional binary unit."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        return None
    if len(match.group(1)) > 24:
        raise UsageError(f"{option} '{text[:40]}' is far larger than any memory")
    return int(float(match.group(1) + (match.group(2) or "")) * _UNITS[match.group(3).upper()])


def parse_size(text: str, info: MemInfo) -> int:
    """--size: bytes, a binary unit or a percentage of MemAvailable; a UsageError when unusable."""
    percent = _PERCENT.fullmatch(text.strip())
    size = parse_bytes(text, "--size")
    if percent:
        fraction = float(percent.group(1) + (percent.group(2) or "")) / 100
        if not 0 < fraction <= 1:
            raise UsageError(f"--size {text}: a percentage of MemAvailable must be more than 0 and at most 100")
        size = int(info.available_bytes * fraction)
    elif size is None:
        raise UsageError(f"--size '{text}' is not a size like 512M, 2G, 1073741824 or 50%")
    if size < MIN_SIZE_BYTES:
        raise UsageError(f"--size {text} is less than the smallest test, {human_bytes(MIN_SIZE_BYTES)}")
    if size > info.available_bytes:
        raise UsageError(
            f"--size {text} ({human_bytes(size)}) is more than this machine has available "
            f"({human_bytes(info.available_bytes)} MemAvailable)"
        )
    return size


def default_size(info: MemInfo, memlock_limit_bytes: Optional[int], can_lock_beyond_limit: bool) -> SizeChoice:
    """What the machine can spare, and why that much."""
    spare = info.available_bytes - margin_bytes(info)
    why = (
        f"MemAvailable {human_bytes(info.available_bytes)} minus a margin of "
        f"{human_bytes(margin_bytes(info))} (the larger of 256 MiB and 10 % of MemTotal) for everything else"
    )
    if spare < MIN_SIZE_BYTES:
        raise ShakeoutError(
            f"no memory to spare: {why} leaves {human_bytes(max(spare, 0))}; pass --size to test less anyway"
        )
    if memlock_limit_bytes is not None and not can_lock_beyond_limit and memlock_limit_bytes < spare:
        if memlock_limit_bytes < MIN_SIZE_BYTES:
            return SizeChoice(
                spare,
                f"{why}; RLIMIT_MEMLOCK is only {human_bytes(memlock_limit_bytes)}, so locking will be refused "
                "unless it is raised",
            )
        return SizeChoice(
            memlock_limit_bytes,
            f"RLIMIT_MEMLOCK: this process may lock only {human_bytes(memlock_limit_bytes)} (raise it with "
            f"'ulimit -l unlimited', or run as root, to test up to {human_bytes(spare)}: {why})",
        )
    return SizeChoice(spare, why)

"""Temperatures and ECC counters, read before and after a test (where the machine has them).

Weak cells leak faster when hot (seed 002: three more bits failed only with the modules
heated), so the report says how warm the machine was; and a machine with ECC corrects
single-bit errors before a tester can see them, so the EDAC corrected/uncorrected counts
(/sys/devices/system/edac/mc/mc*/ce_count, ue_count) are the evidence there. Sources:
hwmon (temp*_input, millidegrees C, with temp*_label) and thermal zones (temp, type).
The root is injectable so that tests can fake a machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _millidegrees(path: Path) -> Optional[float]:
    text = _read(path)
    if text is None or not text.lstrip("-").isdigit() or not text.isascii():
        return None
    return int(text) / 1000.0


def read_temperatures(root: Path = Path("/")) -> Dict[str, float]:
    temps: Dict[str, float] = {}
    for hwmon in sorted((root / "sys/class/hwmon").glob("hwmon*")):
        chip = _read(hwmon / "name") or hwmon.name
        for sensor in sorted(hwmon.glob("temp*_input")):
            value = _millidegrees(sensor)
            label = _read(sensor.with_name(sensor.name.replace("_input", "_label"))) or sensor.name
            if value is not None:
                temps[f"{chip}/{label}"] = value
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        value = _millidegrees(zone / "temp")
        if value is not None:
            temps[f"{zone.name}/{_read(zone / 'type') or '?'}"] = value
    return temps


def read_edac(root: Path = Path("/")) -> Dict[str, Dict[str, int]]:
    counts: Dict[str, Dict[str, int]] = {}
    for mc in sorted((root / "sys/devices/system/edac/mc").glob("mc*")):
        entry = {}
        for name in ("ce_count", "ue_count"):
            text = _read(mc / name)
            if text is not None and text.isascii() and text.isdigit():
                entry[name] = int(text)
        if entry:
            counts[mc.name] = entry
    return counts


def read_sensors(root: Path = Path("/")) -> Dict[str, Any]:
    return {"temperatures_c": read_temperatures(root), "edac": read_edac(root)}


def describe_changes(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """Human lines: temperature ranges and any ECC counter that moved."""
    lines = []
    for name, end in after.get("temperatures_c", {}).items():
        start = before.get("temperatures_c", {}).get(name)
        lines.append(f"{name}: {start:.1f} -> {end:.1f} °C" if start is not None else f"{name}: {end:.1f} °C")
    for mc, counts in after.get("edac", {}).items():
        for name, end in counts.items():
            start = before.get("edac", {}).get(mc, {}).get(name, end)
            moved = f" (+{end - start} during the test)" if end != start else ""
            lines.append(f"EDAC {mc} {name}: {end}{moved}")
    return lines

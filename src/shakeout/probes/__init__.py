"""The probe registry: every module in this package that exports PROBE (or PROBES) is a probe.

Adding a probe is one C file in native/ and one module here; nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Dict

from shakeout.errors import UsageError
from shakeout.probespec import ProbeSpec


def all_probes() -> Dict[str, ProbeSpec]:
    probes: Dict[str, ProbeSpec] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        specs = getattr(module, "PROBES", ()) + ((module.PROBE,) if hasattr(module, "PROBE") else ())
        for spec in specs:
            if isinstance(spec, ProbeSpec):
                probes[spec.id] = spec
    return dict(sorted(probes.items()))


def get_probe(probe_id: str) -> ProbeSpec:
    probes = all_probes()
    if probe_id not in probes:
        raise UsageError("unknown probe '{}' (known: {})".format(probe_id, ", ".join(probes)))
    return probes[probe_id]

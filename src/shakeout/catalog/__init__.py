"""The catalog of known platform bugs: one TOML file per bug, loaded and validated here.

A bug's `affected` table is data for the static assessment (see shakeout.assess);
`probes` names the probes that can prove or rule it out on a machine; `triage` says what
the bug looks like in crash output (see shakeout.catalog.triage).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from shakeout.catalog.triage import TriageRules, parse_triage
from shakeout.errors import CatalogError
from shakeout.kversion import KernelVersion, parse_kernel_version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on the older Pythons only
    import tomli as tomllib

CATALOG_DIR = Path(__file__).resolve().parent
KINDS = ("defect", "hazard")


@dataclass(frozen=True)
class KernelRange:
    """Affected from `introduced` (inclusive) up to `fixed` (exclusive)."""

    introduced: KernelVersion
    fixed: Optional[KernelVersion]

    def contains(self, version: KernelVersion) -> bool:
        return self.introduced <= version and (self.fixed is None or version < self.fixed)

    def __str__(self) -> str:
        return "{} up to {}".format(self.introduced, "now" if self.fixed is None else "before " + str(self.fixed))


@dataclass(frozen=True)
class CompilerCondition:
    name: str
    min_major: int


@dataclass(frozen=True)
class Backport:
    distro: str
    kernel: KernelVersion
    abi: int
    upload: int
    note: str


@dataclass(frozen=True)
class CpuSignature:
    """One row of a CPU erratum's table: the CPUs it names and the microcode that fixes them.

    A CPU matches when its family is `family`, its model lies in `models` (inclusive) and,
    when `steppings` is not empty, its stepping is one of them. `fixed_microcode` is the
    first revision that fixes the erratum (None: no microcode does); `firmware_microcode`,
    when set, is the revision that must already be there before the OS loads anything
    (Intel's Vmin Shift fix works only when the firmware loads it). `undecided`, when not
    empty, says why this CPU's facts cannot decide (only some units fail; the vendor
    published nothing for the signature).
    """

    family: int
    models: Tuple[int, int]
    steppings: Tuple[int, ...] = ()
    fixed_microcode: Optional[int] = None
    firmware_microcode: Optional[int] = None
    undecided: str = ""
    name: str = ""

    def matches(self, family: Optional[int], model: Optional[int], stepping: Optional[int]) -> bool:
        if family != self.family or model is None or not self.models[0] <= model <= self.models[1]:
            return False
        return not self.steppings or stepping in self.steppings

    def __str__(self) -> str:
        low, high = self.models
        models = f"{low:02x}" if low == high else f"{low:02x}..{high:02x}"
        steppings = "/".join(f"{s:02x}" for s in self.steppings) or "any"
        fixed = f"fixed by microcode {self.fixed_microcode:#x}" if self.fixed_microcode else "no fixing microcode"
        if self.firmware_microcode:
            fixed += f" (at least {self.firmware_microcode:#x} loaded by the firmware)"
        if self.undecided:
            fixed += "; undecided: " + self.undecided
        return f"{self.family:02x}-{models}-{steppings} {self.name}: {fixed}".replace("  ", " ")


@dataclass(frozen=True)
class MsrWorkaround:
    """A model-specific register bit whose being set on every CPU works around the erratum."""

    address: int
    bit: int
    what: str


@dataclass(frozen=True)
class Affected:
    os: Tuple[str, ...]
    arch: Tuple[str, ...]
    cpu_vendors: Tuple[str, ...] = ()
    cpu_families: Tuple[int, ...] = ()
    cpu_features: Tuple[str, ...] = ()
    kernel: Tuple[KernelRange, ...] = ()
    kernel_compiler: Optional[CompilerCondition] = None
    backports: Tuple[Backport, ...] = ()
    notes: str = ""
    os_notes: Dict[str, str] = field(default_factory=dict)  # what a verdict must say on that OS
    # CPU errata: the signatures named and their microcode (empty: any CPU of the vendor/family)
    cpu_signatures: Tuple[CpuSignature, ...] = ()
    needs_smt: bool = False  # the erratum needs both hardware threads of a core active
    msr_workaround: Optional[MsrWorkaround] = None


@dataclass(frozen=True)
class Mitigation:
    what: str
    command: str
    buys: str


@dataclass(frozen=True)
class Reference:
    title: str
    url: str


@dataclass(frozen=True)
class Bug:
    id: str
    kind: str
    title: str
    summary: str
    mechanism: str
    affected: Affected
    probes: Tuple[str, ...]
    cve: Tuple[str, ...] = ()
    fixed_by: Dict[str, Any] = field(default_factory=dict)
    mitigations: Tuple[Mitigation, ...] = ()
    references: Tuple[Reference, ...] = ()
    source: str = ""
    # hazards: one line on what a present hazard means for the reader's own programs
    meaning: str = ""
    triage: TriageRules = field(default_factory=TriageRules)  # what the bug looks like in crash output


def fix_summary(bug: Bug) -> str:
    """'fixed in 5.3.15 / 5.4.2 / 5.5 (59c4bd853abc)', or '' when the entry names no fix."""
    versions = [str(v) for v in bug.fixed_by.get("versions", [])]
    commits = [str(c.get("id", "")) for c in bug.fixed_by.get("commits", []) if isinstance(c, dict)]
    if not versions and not commits:
        return ""
    text = "fixed in " + " / ".join(versions) if versions else "fixed"
    return text + (f" ({commits[0]})" if commits else "")


def first_mitigation(bug: Bug) -> str:
    if not bug.mitigations:
        return ""
    m = bug.mitigations[0]
    return f"{m.what}: {m.command}"


def _req(table: Dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise CatalogError(f"{where}: missing field '{key}'")
    value = table[key]
    if not isinstance(value, kind):
        raise CatalogError(f"{where}: field '{key}' must be a {kind.__name__}")
    return value


def _version(text: str, where: str) -> KernelVersion:
    version = parse_kernel_version(str(text))
    if version is None:
        raise CatalogError(f"{where}: '{text}' is not a kernel version")
    return version


def _signature(row: Dict[str, Any], where: str) -> CpuSignature:
    models = row["models"]
    if not (isinstance(models, list) and len(models) == 2 and all(isinstance(m, int) for m in models)):
        raise CatalogError(f"{where}: cpu_signatures models must be [first, last]")
    if models[0] > models[1]:
        raise CatalogError(f"{where}: cpu_signatures models [{models[0]:#x}, {models[1]:#x}] are not in order")
    fixed = row.get("fixed_microcode")
    firmware = row.get("firmware_microcode")
    return CpuSignature(
        family=int(row["family"]),
        models=(models[0], models[1]),
        steppings=tuple(int(s) for s in row.get("steppings", [])),
        fixed_microcode=int(fixed) if fixed is not None else None,
        firmware_microcode=int(firmware) if firmware is not None else None,
        undecided=" ".join(str(row.get("undecided", "")).split()),
        name=str(row.get("name", "")),
    )


def _msr_workaround(table: Optional[Dict[str, Any]]) -> Optional[MsrWorkaround]:
    if table is None:
        return None
    return MsrWorkaround(int(table["address"]), int(table["bit"]), " ".join(str(table["what"]).split()))


def _affected(table: Dict[str, Any], where: str) -> Affected:
    ranges = tuple(
        KernelRange(
            _version(r["introduced"], where),
            _version(r["fixed"], where) if r.get("fixed") else None,
        )
        for r in table.get("kernel", [])
    )
    cc = table.get("kernel_compiler")
    return Affected(
        os=tuple(_req(table, "os", list, where)),
        arch=tuple(_req(table, "arch", list, where)),
        cpu_vendors=tuple(table.get("cpu_vendors", [])),
        cpu_families=tuple(table.get("cpu_families", [])),
        cpu_features=tuple(table.get("cpu_features", [])),
        kernel=ranges,
        kernel_compiler=CompilerCondition(cc["name"], int(cc["min_major"])) if cc else None,
        backports=tuple(
            Backport(b["distro"], _version(b["kernel"], where), int(b["abi"]), int(b["upload"]), b["note"])
            for b in table.get("backports", [])
        ),
        notes=str(table.get("notes", "")).strip(),
        os_notes={str(k): " ".join(str(v).split()) for k, v in table.get("os_notes", {}).items()},
        cpu_signatures=tuple(_signature(row, where) for row in table.get("cpu_signatures", [])),
        needs_smt=bool(table.get("needs_smt", False)),
        msr_workaround=_msr_workaround(table.get("msr_workaround")),
    )


def parse_bug(data: Dict[str, Any], where: str) -> Bug:
    kind = _req(data, "kind", str, where)
    if kind not in KINDS:
        raise CatalogError("{}: kind must be one of {}, not '{}'".format(where, ", ".join(KINDS), kind))
    try:
        return Bug(
            id=_req(data, "id", str, where),
            kind=kind,
            title=_req(data, "title", str, where),
            summary=_req(data, "summary", str, where).strip(),
            mechanism=_req(data, "mechanism", str, where).strip(),
            affected=_affected(_req(data, "affected", dict, where), where),
            probes=tuple(_req(data, "probes", list, where)),
            cve=tuple(data.get("cve", [])),
            fixed_by=dict(data.get("fixed_by", {})),
            mitigations=tuple(
                Mitigation(m["what"], m["command"], str(m["buys"]).strip()) for m in data.get("mitigations", [])
            ),
            references=tuple(Reference(r["title"], r["url"]) for r in _req(data, "references", list, where)),
            source=where,
            meaning=" ".join(str(data.get("meaning", "")).split()),
            triage=parse_triage(data["triage"], data["id"], where) if "triage" in data else TriageRules(),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: malformed entry ({type(exc).__name__}: {exc})") from None


def load_catalog(directory: Path = CATALOG_DIR) -> Dict[str, Bug]:
    """Every bug in the directory by id; a malformed file is a CatalogError naming it."""
    bugs: Dict[str, Bug] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CatalogError(f"{path.name}: {exc}") from None
        bug = parse_bug(data, path.name)
        if bug.id != path.stem:
            raise CatalogError(f"{path.name}: id '{bug.id}' does not match the file name")
        bugs[bug.id] = bug
    return bugs


def validate_against_probes(bugs: Dict[str, Bug], probe_ids: List[str]) -> List[str]:
    """Problems between catalog and probes: unknown probes named, probes no bug uses."""
    problems = []
    named = set()
    for bug in bugs.values():
        for probe in bug.probes:
            named.add(probe)
            if probe not in probe_ids:
                problems.append(f"{bug.id} names probe '{probe}', which does not exist")
    problems.extend(f"probe '{p}' is named by no catalog entry" for p in probe_ids if p not in named)
    return problems

"""What a probe declares: identity, needs, options, fault injections, interpretation.

A probe is `native/<binary>.c` (the hot loop, speaking the line protocol of probe.h) plus
a module in shakeout/probes/ that exports `PROBE`, a ProbeSpec. The types live here, below
the runner that executes them and the probes that use them. Needs are data: an unmet need
becomes a `skip` with the reason, never a pass. Options, their ranges, choices and
defaults are the binary's own table (probeoptions.py); a spec only picks which it offers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Optional, Protocol, Tuple

from shakeout.host import Host
from shakeout.probeoptions import ProbeOption, integer_in, is_decimal, option_table
from shakeout.results import ProbeResult

__all__ = ["Injection", "Needs", "ProbeOption", "ProbeSpec", "integer_in", "is_decimal"]


@dataclass(frozen=True)
class Needs:
    os: Tuple[str, ...] = ("linux",)
    arch: Tuple[str, ...] = ()  # empty: any
    min_cpus: int = 1
    root: bool = False

    def allows(self, os_name: str, arch: str) -> bool:
        """Whether the probe can run on this OS and architecture at all."""
        return (not self.os or os_name in self.os) and (not self.arch or arch in self.arch)

    def unmet(self, host: Host) -> Optional[str]:
        """Why this host cannot run the probe, or None."""
        if self.os and host.os not in self.os:
            return "needs {} (this is {})".format(" or ".join(self.os), host.os)
        if self.arch and host.arch not in self.arch:
            return "needs {} (this is {})".format(" or ".join(self.arch), host.arch)
        if host.cpus < self.min_cpus:
            return f"needs at least {self.min_cpus} CPUs (this has {host.cpus})"
        if self.root and not host.is_root:
            return "needs root"
        return None


class OutsideInjector(Protocol):
    """Sees every protocol event of the run it injects into; stopped after it; says what it did."""

    def on_event(self, event: Dict[str, Any]) -> None: ...

    def stop(self) -> None: ...

    def evidence(self) -> Dict[str, Any]: ...


@dataclass(frozen=True)
class Injection:
    """A fault injector that makes the probe's bug happen through a real mechanism.

    `preload` names native/inject_<name>.c, loaded into the probe with LD_PRELOAD
    (configured by `env`); `write_value` is stored into every word the probe announces in
    a {"event":"target"} line, from outside, by shakeout.injectors.memory_writer; or the
    injection is in `options` alone, when the probe can withhold from the kernel what it
    needs (e.g. robust-futex-wakeup's pending=off: the kernel cannot know to wake).
    """

    name: str
    description: str
    preload: Optional[str] = None
    write_value: Optional[int] = None
    env: Dict[str, str] = field(default_factory=dict)
    options: Dict[str, str] = field(default_factory=dict)
    # Or an injector acting from outside the probe's process, built afresh for each run
    # (e.g. injectors.register_flip: ptrace edits a worker's registers).
    outside: Optional[Callable[[], OutsideInjector]] = None
    duration_s: float = 5.0
    # A fault whose landing is random (a bit flipped into a register the code may not be
    # using at that moment) may go unseen in one run: selftest tries up to this many runs
    # and says which one caught it.
    attempts: int = 1
    # Checks the evidence of the failing run; returns why it is wrong, or None.
    verify: Optional[Callable[[ProbeResult], Optional[str]]] = None


@dataclass(frozen=True)
class ProbeSpec:
    id: str
    binary: str
    summary: str
    needs: Needs
    default_duration_s: float
    # The binary's user options this probe offers to `--set` (None: every one that is not
    # internal; several probes can share one binary). Ranges and defaults are the binary's.
    offers: Optional[Tuple[str, ...]] = None
    # Tests of a value that only Python can make, on top of the table's kind and range (a
    # file that must be readable, CPUs that must be online), by option name.
    checks: Dict[str, Callable[[str], bool]] = field(default_factory=dict)
    injections: Tuple[Injection, ...] = ()
    # Adds meaning to the raw evidence (a pure function of the result, called for every result).
    interpret: Optional[Callable[[ProbeResult], ProbeResult]] = None
    # Workers per CPU of the machine (or guest) it runs on; 0: the probe sizes itself.
    workers_per_cpu: int = 0
    # Options always passed to the binary (several probes can share one binary by mode).
    fixed_options: Dict[str, str] = field(default_factory=dict)
    # selftest first runs the probe without injection and expects a pass; a probe whose
    # positive is the platform's own behaviour (a hazard present everywhere) has no control.
    selftest_control: bool = True
    # What one exposure is (an event that opened the bug's window) and how the probe knows it
    # happened: the rule-of-three bound is computed from these, so they must be measured.
    exposure: str = ""
    # A clean run with fewer exposures than this is `inconclusive`, never a pass.
    min_exposures: int = 1
    # The catalog bugs whose window these exposures open (empty: every bug that names the probe).
    counts_for: Tuple[str, ...] = ()

    def default_workers(self, cpus: int) -> Optional[int]:
        return self.workers_per_cpu * cpus or None

    def counts_toward(self, bug_id: str) -> bool:
        return not self.counts_for or bug_id in self.counts_for

    def settle(self, result: ProbeResult) -> ProbeResult:
        """A pass with too few exposures is inconclusive (a measurement needs none)."""
        result.exposure_unit = self.exposure
        if result.verdict == "pass" and not result.deterministic and result.exposures < self.min_exposures:
            # A probe's interpret() may have found why they were few (a refused system call):
            # then running longer is not the only, or not the right, way out.
            cause = result.evidence.get("few_exposures_because") or "run it longer"
            result.verdict = "inconclusive"
            result.reason = (
                f"the probe saw nothing wrong, but made only {result.exposures:,} exposures in "
                f"{result.elapsed_s:.2f} s (a pass needs at least {self.min_exposures:,} of: "
                f"{self.exposure or 'exposures'}); {cause}"
            )
        return result

    def user_options(self) -> Tuple[ProbeOption, ...]:
        """The options `--set` takes: the binary's table (read once), with this spec's checks."""
        own = option_table(self.binary).own()
        offered = (o for o in own if (o.name in self.offers if self.offers is not None else not o.internal))
        return tuple(replace(o, check=self.checks[o.name]) if o.name in self.checks else o for o in offered)

    def option(self, name: str) -> Optional[ProbeOption]:
        return next((o for o in self.user_options() if o.name == name), None)

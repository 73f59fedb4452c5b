"""What the commands do, as library functions: check, run one probe, selftest, vdso.

The CLI only parses, calls these, renders and maps to an exit code. A `Monitor` receives
the life of each probe run (start, progress, end) so that the CLI can draw progress bars
and tests can record it.
"""

from __future__ import annotations

import datetime
import functools
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from shakeout import __version__
from shakeout.assess import NOT_APPLICABLE, assess_static, decide
from shakeout.catalog import Bug, load_catalog
from shakeout.errors import UsageError
from shakeout.host import Host, read_host
from shakeout.injectors.memory_writer import MemoryWriter
from shakeout.inputs import read_input_bytes
from shakeout.outcome import settle
from shakeout.probes import get_probe
from shakeout.probespec import Injection, ProbeSpec
from shakeout.protocol import Progress
from shakeout.results import BugVerdict, ProbeResult, RunReport, SelftestResult
from shakeout.runner import ProbeRun, ProbeRunner, injection_env, run_probe
from shakeout.vdso import IMAGE_CAP_BYTES, VdsoReport, analyze_bytes, combine, image_digest
from shakeout.vdso.image import running_vdso

# The whole default `check` must take at most ~15 s on 2 cores, however many probes exist:
# this much probe time is shared among the probes that run.
CHECK_BUDGET_S = 12.0
MIN_PROBE_S = 1.0
SELFTEST_CONTROL_S = 2.0


class Monitor:
    """Receives the life of each probe run; the default does nothing."""

    def started(self, label: str, duration_s: float) -> None:
        pass

    def note(self, message: str) -> None:
        """A one-line fact about the run (e.g. vm: booting under TCG (timeout 130 s))."""

    def progress(self, label: str, progress: Progress) -> None:
        pass

    def status(self, label: str, event: Dict[str, Any]) -> None:
        """A probe's own status line (e.g. cpu-integrity's per-CPU counts), during `run`."""

    def finished(self, label: str, result: ProbeResult) -> None:
        pass


def select_bugs(only: Optional[Sequence[str]]) -> List[Bug]:
    """The catalog bugs named (all when None), or a UsageError naming the unknown one."""
    catalog = load_catalog()
    if not only:
        return list(catalog.values())
    unknown = [b for b in only if b not in catalog]
    if unknown:
        raise UsageError("unknown bug '{}' (known: {})".format(unknown[0], ", ".join(catalog)))
    return [catalog[b] for b in only]


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def new_report(command: str, host: Host) -> RunReport:
    return RunReport(
        command=command,
        tool_version=__version__,
        host=host.to_dict(),
        started_at=_now_iso(),
        hostname=socket.gethostname(),
    )


def _monitored(runner: ProbeRunner, monitor: Monitor, run: ProbeRun, host: Host) -> ProbeResult:
    monitor.started(run.label, run.duration_s)
    result = runner(run, host, lambda p: monitor.progress(run.label, p))
    monitor.finished(run.label, result)
    return result


def judge_bugs(
    host: Host, bugs: Sequence[Bug], results: Sequence[ProbeResult], probes: Mapping[str, ProbeSpec]
) -> List[BugVerdict]:
    """The verdict of every bug from the results of its probes that ran (the one place that decides)."""
    verdicts = []
    for bug in bugs:

        def counts(result: ProbeResult, bug_id: str = bug.id) -> bool:
            spec = probes.get(result.probe_id)
            return spec is None or spec.counts_toward(bug_id)

        ran = [r for r in results if r.probe_id in bug.probes]
        verdicts.append(decide(bug, assess_static(bug, host), ran, counts))
    return verdicts


def check_duration(spec: ProbeSpec, remaining_s: float, probes_left: int, per_probe_s: Optional[float]) -> float:
    """--duration for each when given; else an even share of what is left of the check budget
    (probes run quickest first, so time a probe does not use goes to the next)."""
    if per_probe_s is not None:
        return per_probe_s
    share = remaining_s / max(1, probes_left)
    return max(MIN_PROBE_S, min(spec.default_duration_s, share))


def run_check(
    host: Host,
    bugs: Sequence[Bug],
    probes: Mapping[str, ProbeSpec],
    duration_s: Optional[float] = None,
    monitor: Optional[Monitor] = None,
    strict: bool = False,
    runner: ProbeRunner = run_probe,
    clock: Callable[[], float] = time.monotonic,
) -> RunReport:
    """Assess every bug: run each probe that an applicable bug names once, then decide."""
    monitor = monitor or Monitor()
    started = clock()
    report = new_report("check", host)
    statics = {b.id: assess_static(b, host) for b in bugs}
    needed: List[ProbeSpec] = []
    for bug in bugs:
        if statics[bug.id].status == NOT_APPLICABLE:
            continue
        for probe_id in bug.probes:
            spec = probes[probe_id]
            if spec not in needed:
                needed.append(spec)
    runnable = [s for s in needed if s.needs.unmet(host) is None]
    needed.sort(key=lambda s: (s not in runnable, s.default_duration_s))
    results: Dict[str, ProbeResult] = {}
    remaining_s = CHECK_BUDGET_S
    for index, spec in enumerate(needed):
        workers = spec.default_workers(host.cpus)
        duration = check_duration(spec, remaining_s, len([s for s in needed[index:] if s in runnable]), duration_s)
        run_started = clock()
        results[spec.id] = _monitored(runner, monitor, ProbeRun(spec, duration, workers, label=spec.id), host)
        remaining_s = max(0.0, remaining_s - (clock() - run_started))
    report.probes = list(results.values())
    report.bugs = judge_bugs(host, bugs, report.probes, probes)
    report.strict = strict
    report.elapsed_s = clock() - started
    return settle(report)


def run_one(
    host: Host,
    spec: ProbeSpec,
    bugs: Sequence[Bug],
    duration_s: Optional[float],
    workers: Optional[int],
    keep_going: bool,
    options: Mapping[str, str],
    monitor: Optional[Monitor] = None,
    runner: ProbeRunner = run_probe,
) -> RunReport:
    """Run one probe with the user's settings; the bugs it covers get verdicts too."""
    monitor = monitor or Monitor()
    started = time.monotonic()
    report = new_report("run", host)
    if workers is None:
        workers = spec.default_workers(host.cpus)

    def on_event(event: Dict[str, Any]) -> None:
        if event.get("event") == "status":
            monitor.status(spec.id, event)

    duration = duration_s or spec.default_duration_s
    run = ProbeRun(spec, duration, workers, keep_going, options, label=spec.id, on_event=on_event)
    result = _monitored(runner, monitor, run, host)
    report.probes = [result]
    report.bugs = judge_bugs(host, [b for b in bugs if spec.id in b.probes], [result], {spec.id: spec})
    report.elapsed_s = time.monotonic() - started
    return settle(report)


def run_selftest(
    host: Host, specs: Sequence[ProbeSpec], monitor: Optional[Monitor] = None, runner: ProbeRunner = run_probe
) -> RunReport:
    """For every probe: a short clean control run, then each injected fault must be caught."""
    monitor = monitor or Monitor()
    started = time.monotonic()
    report = new_report("selftest", host)
    for spec in specs:
        workers = spec.default_workers(host.cpus)
        if spec.selftest_control:
            run = ProbeRun(spec, SELFTEST_CONTROL_S, workers, label=spec.id + " [control]")
            control = _monitored(runner, monitor, run, host)
            report.probes.append(control)
            report.selftests.append(
                SelftestResult(
                    spec.id,
                    "control",
                    "no fault injected: the probe must pass",
                    caught=control.verdict == "pass",
                    ran=control.verdict in ("pass", "fail"),
                    reason=control.reason or f"passed with {control.exposures:,} exposures",
                    control=True,
                    not_applicable=control.verdict == "skip",
                )
            )
        for injection in spec.injections:
            for attempt in range(1, injection.attempts + 1):
                result = run_injection(spec, host, injection, workers, monitor, runner)
                report.probes.append(result)
                judged = _judge_injection(spec, injection.name, injection.description, result, injection.verify)
                # Retried: a miss, a wrong catch or a crash (a flipped pointer); not a skip or
                # an injector this machine refuses (it would be refused again).
                if judged.caught or result.verdict == "skip" or _refused(result) or attempt == injection.attempts:
                    break
            if injection.attempts > 1:
                judged.reason += f" (run {attempt} of at most {injection.attempts})"
            report.selftests.append(judged)
    report.elapsed_s = time.monotonic() - started
    return settle(report)


def run_injection(
    spec: ProbeSpec,
    host: Host,
    injection: Injection,
    workers: Optional[int],
    monitor: Optional[Monitor] = None,
    runner: ProbeRunner = run_probe,
) -> ProbeResult:
    """Run the probe with one fault injected (LD_PRELOAD shim or an outside memory writer)."""
    monitor = monitor or Monitor()
    label = f"{spec.id} [inject {injection.name}]"
    env = injection_env(injection.preload, injection.env) if injection.preload else dict(injection.env)
    writer = MemoryWriter(injection.write_value) if injection.write_value is not None else None
    outside = injection.outside() if injection.outside else None
    try:
        run = ProbeRun(
            spec,
            injection.duration_s,
            workers,
            options=injection.options,
            env=env,
            label=label,
            on_event=writer.on_event if writer else outside.on_event if outside else None,
        )
        result = _monitored(runner, monitor, run, host)
    finally:
        if writer:
            writer.stop()
        if outside:
            outside.stop()
    if writer:
        result.evidence["injector"] = {"writes": writer.writes, "errors": writer.errors[:3], "refused": writer.refused}
    if outside:
        result.evidence["injector"] = outside.evidence()
    return result


def _refused(result: ProbeResult) -> bool:
    """The probe did not fail and its outside injector put nothing in because the system
    refused it permission (EPERM/EACCES: seccomp, capabilities, Yama), as it says."""
    injector = result.evidence.get("injector") or {}
    went_in = injector.get("writes", 0) or injector.get("flips", 0)
    return result.verdict != "fail" and bool(injector.get("refused")) and not went_in


def _judge_injection(
    spec: ProbeSpec, name: str, description: str, result: ProbeResult, verify: object
) -> SelftestResult:
    judged = functools.partial(SelftestResult, spec.id, name, description)
    if result.verdict == "skip":
        return judged(caught=False, ran=False, reason="not applicable here: " + result.reason, not_applicable=True)
    if result.verdict == "error":
        return judged(caught=False, ran=False, reason="could not run here: " + result.reason)
    if _refused(result):  # the machine refused the injector's every attempt: nothing was missed
        errors = result.evidence["injector"]["errors"]
        return judged(caught=False, ran=False, reason="could not inject here: " + "; ".join(errors))
    if result.verdict != "fail":
        errors = (result.evidence.get("injector") or {}).get("errors")
        missed = f"MISSED: no corruption reported in {result.exposures:,} exposures over {result.elapsed_s:.1f} s"
        return judged(caught=False, reason=missed + ("; the injector failed: " + "; ".join(errors) if errors else ""))
    problem = verify(result) if callable(verify) else None
    if problem:
        reason = "failed, but with wrong evidence: " + problem
        return judged(caught=False, reason=reason, time_to_detect_s=result.time_to_detect_s)
    return judged(caught=True, reason=result.reason, time_to_detect_s=result.time_to_detect_s)


def _measure(library: Optional[Path]) -> Tuple[Dict[str, Dict[str, Any]], List[str]]:
    """(measured functions by name, notes)."""
    options = {"library": str(library.resolve())} if library else {}
    result = run_probe(ProbeRun(get_probe("vdso-stack"), 60.0, options=options), read_host())
    functions = result.evidence.get("measurements", [])
    if not functions:
        return {}, ["not measured: " + (result.reason or result.verdict)]
    measured = {f["name"]: f for f in functions if f.get("measured_bytes") is not None}
    notes = [
        "{}: every call faulted whatever the stack (not a stack fault; not measurable here)".format(f["name"])
        for f in functions
        if f.get("measured_bytes") is None
    ]
    return measured, notes


def vdso_report(path: Optional[Path], budget_bytes: int, measure: bool) -> VdsoReport:
    """measure: run the vdso-stack probe too (for a FILE, that loads and runs it)."""
    if path is not None:
        data = read_input_bytes(path, "vDSO image", IMAGE_CAP_BYTES)
        source = str(path)
    else:
        data, source = running_vdso(), "this kernel's vDSO"
    analysis = analyze_bytes(data, source)
    measured: Dict[str, Dict[str, Any]] = {}
    notes: List[str] = []
    if measure:
        if path is not None:
            notes.append(f"measured by loading {path} with dlopen (--measure): its code ran, constructors included")
        more_measured, more_notes = _measure(path)
        measured.update(more_measured)
        notes += more_notes
    elif path is not None:
        notes.append("not measured: static analysis only, nothing from the file ran (--measure loads and runs it)")
    else:
        notes.append("not measured (--no-measure)")
    return VdsoReport(
        source=source,
        image_bytes=len(data),
        image_sha256=image_digest(data),
        budget_bytes=budget_bytes,
        measured=measure,
        rows=combine(analysis.functions, measured, budget_bytes),
        incomplete_functions=analysis.notes,
        notes=notes,
    )

"""The engine's decisions with a fake runner: check's budget and deduplication, selftest's judging.

No probe runs here: the runner is a function that records each ProbeRun and answers with
a result chosen by the test, and the clock advances by the time each run "took".
"""

import dataclasses
from typing import Callable, Dict, List, Optional

import pytest

from shakeout.catalog import Affected, Bug
from shakeout.engine import CHECK_BUDGET_S, MIN_PROBE_S, Monitor, run_check, run_one, run_selftest
from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult
from shakeout.runner import ProbeRun

from .fakehost import fake_host


def _spec(probe_id: str, default_s: float = 5.0, **kwargs) -> ProbeSpec:
    return ProbeSpec(
        id=probe_id,
        binary="none",
        summary="fake",
        needs=kwargs.pop("needs", Needs()),
        default_duration_s=default_s,
        exposure="fake exposures",
        **kwargs,
    )


def _bug(bug_id: str, probes: List[str], os_names=("linux",), kind: str = "defect") -> Bug:
    return Bug(bug_id, kind, bug_id, "summary", "mechanism", Affected(os=tuple(os_names), arch=()), tuple(probes))


class FakeRunner:
    """Answers every run with `answer(run)`; the clock advances by the run's duration."""

    def __init__(self, answer: Optional[Callable[[ProbeRun], ProbeResult]] = None) -> None:
        self.runs: List[ProbeRun] = []
        self.now = 1000.0
        self.answer = answer or (lambda run: ProbeResult(run.spec.id, "pass", exposures=100, elapsed_s=1.0))

    def clock(self) -> float:
        return self.now

    def __call__(self, run: ProbeRun, host, on_progress) -> ProbeResult:
        self.runs.append(run)
        self.now += run.duration_s
        result = self.answer(run)
        result.label = run.label
        return run.spec.settle(result)


@pytest.fixture
def host(tmp_path):
    return fake_host(tmp_path, "6.1.0", "Linux version 6.1.0 (gcc (Debian 12.2.0-14) 12.2.0)")


def test_a_probe_named_by_two_bugs_runs_once(host):
    probes = {"p": _spec("p"), "q": _spec("q")}
    runner = FakeRunner()
    report = run_check(host, [_bug("a", ["p"]), _bug("b", ["p", "q"])], probes, runner=runner, clock=runner.clock)
    assert [r.spec.id for r in runner.runs].count("p") == 1
    assert sorted(r.spec.id for r in runner.runs) == ["p", "q"]
    assert [b.verdict for b in report.bugs] == ["not-vulnerable", "not-vulnerable"]


def test_the_probe_of_a_not_applicable_bug_is_not_run(host):
    runner = FakeRunner()
    report = run_check(host, [_bug("bsd", ["p"], os_names=("netbsd",))], {"p": _spec("p")}, runner=runner)
    assert runner.runs == []
    assert report.bugs[0].verdict == "not-applicable"


def test_the_budget_is_shared_and_time_left_over_goes_to_the_next_probe(host):
    probes = {f"p{i}": _spec(f"p{i}", default_s=d) for i, d in enumerate([1.0, 10.0, 10.0, 10.0])}
    bugs = [_bug(f"b{i}", [f"p{i}"]) for i in range(4)]
    runner = FakeRunner()
    run_check(host, bugs, probes, runner=runner, clock=runner.clock)
    durations = {r.spec.id: r.duration_s for r in runner.runs}
    # quickest first: p0 asks for 1 s of its 3 s share; the 2 s it leaves go to the others
    assert runner.runs[0].spec.id == "p0"
    assert durations["p0"] == 1.0
    assert durations["p1"] == pytest.approx((CHECK_BUDGET_S - 1.0) / 3)
    assert sum(durations.values()) == pytest.approx(CHECK_BUDGET_S)
    assert all(d <= probes[p].default_duration_s for p, d in durations.items())


def test_a_probe_never_gets_less_than_the_minimum_even_when_the_budget_is_spent(host):
    probes = {f"p{i}": _spec(f"p{i}", default_s=30.0) for i in range(3)}
    runner = FakeRunner()

    def slow(run: ProbeRun) -> ProbeResult:
        runner.now += 100.0  # this run overran its share by far
        return ProbeResult(run.spec.id, "pass", exposures=5)

    runner.answer = slow
    run_check(host, [_bug(f"b{i}", [f"p{i}"]) for i in range(3)], probes, runner=runner, clock=runner.clock)
    assert [r.duration_s for r in runner.runs][1:] == [MIN_PROBE_S, MIN_PROBE_S]


def test_an_explicit_duration_is_given_to_every_probe(host):
    probes = {"p": _spec("p", default_s=1.0), "q": _spec("q", default_s=50.0)}
    runner = FakeRunner()
    run_check(host, [_bug("a", ["p", "q"])], probes, duration_s=7.5, runner=runner, clock=runner.clock)
    assert [r.duration_s for r in runner.runs] == [7.5, 7.5]


def test_probes_that_cannot_run_here_do_not_take_a_share(host):
    probes = {"root": _spec("root", default_s=10.0, needs=Needs(min_cpus=10_000)), "p": _spec("p", default_s=50.0)}
    runner = FakeRunner()
    run_check(host, [_bug("a", ["root", "p"])], probes, runner=runner, clock=runner.clock)
    assert [r.spec.id for r in runner.runs] == ["p", "root"]  # the one that will skip goes last
    assert runner.runs[0].duration_s == pytest.approx(CHECK_BUDGET_S)


def test_run_one_passes_the_users_settings_through(host):
    runner = FakeRunner()
    spec = _spec("p")
    report = run_one(host, spec, [_bug("a", ["p"])], None, 3, True, {"mode": "x"}, runner=runner)
    (run,) = runner.runs
    assert (run.duration_s, run.workers, run.keep_going, dict(run.options)) == (5.0, 3, True, {"mode": "x"})
    assert report.exit_status == 0


def _selftest(host, answers: Dict[str, ProbeResult], verify=None, control: bool = True):
    injection = Injection("flip", "flips a bit", options={"inject": "on"}, duration_s=4.0, verify=verify)
    spec = _spec("p", injections=(injection,), selftest_control=control)

    def answer(run: ProbeRun) -> ProbeResult:
        kind = "control" if "control" in run.label else "inject"
        return answers[kind]

    runner = FakeRunner(answer)
    return run_selftest(host, [spec], runner=runner), runner


def test_selftest_caught_and_clean_is_exit_0(host):
    report, runner = _selftest(
        host,
        {"control": ProbeResult("p", "pass", exposures=50), "inject": ProbeResult("p", "fail", exposures=3)},
    )
    control, injected = report.selftests
    assert control.control and control.caught and not injected.control and injected.caught
    assert dict(runner.runs[1].options) == {"inject": "on"} and runner.runs[1].duration_s == 4.0
    assert report.exit_status == 0


def test_a_missed_injection_is_exit_1_with_the_exposures_tried(host):
    report, _ = _selftest(
        host,
        {"control": ProbeResult("p", "pass", exposures=50), "inject": ProbeResult("p", "pass", exposures=77)},
    )
    assert not report.selftests[1].caught and "MISSED" in report.selftests[1].reason
    assert "77" in report.selftests[1].reason
    assert report.exit_status == 1


def test_a_catch_with_the_wrong_evidence_is_not_a_catch(host):
    report, _ = _selftest(
        host,
        {"control": ProbeResult("p", "pass", exposures=50), "inject": ProbeResult("p", "fail", exposures=1)},
        verify=lambda result: "attributed to the wrong CPU",
    )
    assert not report.selftests[1].caught and "wrong evidence" in report.selftests[1].reason
    assert report.exit_status == 1


def test_a_control_run_that_fails_is_not_clean(host):
    report, _ = _selftest(
        host,
        {"control": ProbeResult("p", "fail", exposures=50), "inject": ProbeResult("p", "fail", exposures=1)},
    )
    assert not report.selftests[0].caught
    assert report.exit_status == 1


def test_an_injection_that_could_not_run_is_unknown_not_caught(host):
    report, _ = _selftest(
        host,
        {"control": ProbeResult("p", "pass", exposures=50), "inject": ProbeResult("p", "error", reason="no ptrace")},
    )
    assert not report.selftests[1].ran and "no ptrace" in report.selftests[1].reason
    assert report.exit_status == 3


def test_a_probe_without_a_control_run_has_none(host):
    report, runner = _selftest(host, {"inject": ProbeResult("p", "fail", exposures=1)}, control=False)
    assert [s.injection for s in report.selftests] == ["flip"] and len(runner.runs) == 1


def test_needs_are_a_pure_function_of_the_host(tmp_path):
    user = fake_host(tmp_path / "u", "6.1.0", "Linux version 6.1.0")
    root = dataclasses.replace(user, is_root=True)
    needs = Needs(root=True)
    assert needs.unmet(dataclasses.replace(user, is_root=False)) == "needs root"
    assert needs.unmet(root) is None


def test_a_probe_needing_root_is_a_skip_for_a_user_and_costs_no_budget(tmp_path):
    user = dataclasses.replace(fake_host(tmp_path, "6.1.0", "Linux version 6.1.0"), is_root=False)
    probes = {"r": _spec("r", needs=Needs(root=True)), "p": _spec("p", default_s=50.0)}
    runner = FakeRunner()
    run_check(user, [_bug("a", ["r", "p"])], probes, runner=runner, clock=runner.clock)
    assert [r.spec.id for r in runner.runs] == ["p", "r"]
    assert runner.runs[0].duration_s == pytest.approx(CHECK_BUDGET_S)


def test_run_passes_the_probes_status_lines_to_the_monitor(host):
    seen = []

    class Recorder(Monitor):
        def status(self, label, event):
            seen.append((label, event["cpus"][0]["executions"]))

    def answer(run: ProbeRun) -> ProbeResult:
        run.on_event({"event": "status", "cpus": [{"cpu": 0, "executions": 12}]})
        run.on_event({"event": "target", "pid": 1, "address": "0x10"})  # not a status line
        return ProbeResult(run.spec.id, "pass", exposures=5)

    run_one(host, _spec("p"), [], None, None, False, {}, Recorder(), runner=FakeRunner(answer))
    assert seen == [("p", 12)]


def test_a_probe_that_skips_here_is_not_applicable_not_unknown(host):
    report, _ = _selftest(
        host,
        {
            "control": ProbeResult("p", "skip", reason="needs PKU"),
            "inject": ProbeResult("p", "skip", reason="needs PKU"),
        },
    )
    assert all(s.not_applicable and not s.ran for s in report.selftests)
    assert "needs PKU" in report.selftests[1].reason
    assert report.exit_status == 0 and "not applicable here" in report.meaning


def test_a_random_fault_gets_its_attempts_and_says_which_caught_it(host):
    answers = iter([ProbeResult("p", "pass", exposures=9), ProbeResult("p", "fail", exposures=1)])
    injection = Injection("flip", "flips a bit", attempts=3)
    runner = FakeRunner(lambda run: next(answers))
    report = run_selftest(host, [_spec("p", injections=(injection,), selftest_control=False)], runner=runner)
    (judged,) = report.selftests
    assert judged.caught and "run 2 of at most 3" in judged.reason and len(runner.runs) == 2


def test_a_fault_missed_in_every_attempt_is_missed(host):
    injection = Injection("flip", "flips a bit", attempts=2)
    runner = FakeRunner(lambda run: ProbeResult("p", "pass", exposures=9))
    report = run_selftest(host, [_spec("p", injections=(injection,), selftest_control=False)], runner=runner)
    assert not report.selftests[0].caught and len(runner.runs) == 2 and report.exit_status == 1


class _RefusedInjector:
    """An outside injector whose every write was refused (a container without CAP_SYS_PTRACE)."""

    refused = True
    error = "process_vm_writev(42): Operation not permitted (errno 1)"

    def on_event(self, event) -> None:
        pass

    def stop(self) -> None:
        pass

    def evidence(self):
        return {"writes": 0, "errors": [self.error], "refused": self.refused}


class _BrokenInjector(_RefusedInjector):
    """An injector that failed for a reason of its own (no symbol matched): a defect, not a refusal."""

    refused = False
    error = "no function of the probe's executable matched the wanted code"


def test_a_fault_the_injector_could_not_put_in_is_not_run_not_missed_and_not_retried(host):
    injection = Injection("flip", "flips a bit", attempts=3, outside=_RefusedInjector)
    runner = FakeRunner(lambda run: ProbeResult("p", "pass", exposures=9))
    report = run_selftest(host, [_spec("p", injections=(injection,), selftest_control=False)], runner=runner)
    (judged,) = report.selftests
    assert not judged.ran and "MISSED" not in judged.reason
    assert judged.reason.startswith("could not inject here: process_vm_writev(42): Operation not permitted")
    assert len(runner.runs) == 1 and report.exit_status == 3


def test_an_injector_that_failed_by_itself_is_a_miss_that_says_why_not_a_could_not_run(host):
    injection = Injection("flip", "flips a bit", attempts=2, outside=_BrokenInjector)
    runner = FakeRunner(lambda run: ProbeResult("p", "pass", exposures=9))
    report = run_selftest(host, [_spec("p", injections=(injection,), selftest_control=False)], runner=runner)
    (judged,) = report.selftests
    assert judged.ran and not judged.caught and "MISSED" in judged.reason
    assert "the injector failed: no function" in judged.reason
    assert len(runner.runs) == 2 and report.exit_status == 1


def test_a_crash_under_injection_gets_its_second_run(host):
    """A flipped pointer can crash the worker outside a checked kernel: that run is retried."""
    answers = iter([ProbeResult("p", "error", reason="the probe died from SIGSEGV"), ProbeResult("p", "fail")])
    injection = Injection("flip", "flips a bit", attempts=2)
    runner = FakeRunner(lambda run: next(answers))
    report = run_selftest(host, [_spec("p", injections=(injection,), selftest_control=False)], runner=runner)
    (judged,) = report.selftests
    assert judged.caught and "run 2 of at most 2" in judged.reason and len(runner.runs) == 2

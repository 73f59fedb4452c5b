import pytest

from shakeout.errors import UsageError
from shakeout.probes import get_probe
from shakeout.protocol import Protocol, classify
from shakeout.results import ProbeResult
from shakeout.runner import ProbeRun, parse_probe_options, probe_argv

RESULT = {
    "event": "result",
    "verdict": "pass",
    "iterations": 5,
    "exposures": 4,
    "elapsed": 1.5,
    "metrics": {"signals_per_s": 3.0},
    "evidence": {"k": 1},
}


def test_protocol_lines_split_across_chunks():
    seen = []
    p = Protocol(seen.append)
    p.feed(b'{"event":"progress","iterations":1,"exposures":2,"elap')
    p.feed(b'sed":0.5}\n{"event":"result","verdict":"pass"}\nnot json\n')
    p.finish()
    assert [(s.iterations, s.exposures, s.elapsed_s) for s in seen] == [(1, 2, 0.5)]
    assert p.result == {"event": "result", "verdict": "pass"}
    assert p.violations == ["not a protocol line: not json"]


def test_result_without_trailing_newline():
    p = Protocol(None)
    p.feed(b'{"event":"result","verdict":"fail"}')
    p.finish()
    assert p.result["verdict"] == "fail"


def test_classify_normal_result():
    r = classify("x", 0, RESULT, False, 10, [])
    assert (r.verdict, r.iterations, r.exposures, r.elapsed_s) == ("pass", 5, 4, 1.5)
    assert r.bound == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("returncode", "event", "timed_out", "needle"),
    [
        (None, None, True, "did not finish within its deadline of 12 s"),
        (-11, None, False, "died from SIGSEGV"),
        (3, None, False, "exited with status 3 without a result line"),
        (1, RESULT, False, "protocol violation: exit status 1 with verdict 'pass'"),
    ],
)
def test_classify_abnormal_ends(returncode, event, timed_out, needle):
    r = classify("x", returncode, event, timed_out, 12, [])
    assert r.verdict == "error"
    assert needle in r.reason


def test_crash_names_the_signal():
    assert classify("x", -7, None, False, 1, []).death_signal == "SIGBUS"


def test_probe_options():
    spec = get_probe("signal-vector")
    assert parse_probe_options(spec, ["regs=xmm", "interval-us=0"]) == {"regs": "xmm", "interval-us": "0"}
    with pytest.raises(UsageError, match="has no option 'color=red'"):
        parse_probe_options(spec, ["color=red"])
    with pytest.raises(UsageError, match="'avx9' is not valid"):
        parse_probe_options(spec, ["regs=avx9"])
    with pytest.raises(UsageError, match="is not valid"):
        parse_probe_options(spec, ["interval-us=-5"])
    with pytest.raises(UsageError, match="has no option"):
        parse_probe_options(spec, ["regs"])


def test_argv(tmp_path):
    argv = probe_argv(tmp_path / "p", 2, 3, True, {"regs": "ymm"})
    assert argv[1:] == [
        "--duration",
        "2.0",
        "--progress-interval",
        "0.5",
        "--workers",
        "3",
        "--keep-going",
        "--regs",
        "ymm",
    ]


def test_unknown_probe():
    with pytest.raises(UsageError, match="unknown probe 'nope'"):
        get_probe("nope")


def test_a_pass_with_too_few_exposures_is_inconclusive_never_a_pass():

    spec = get_probe("fork-cow")
    few = spec.settle(ProbeResult("fork-cow", "pass", exposures=spec.min_exposures - 1, elapsed_s=0.01))
    assert few.verdict == "inconclusive"
    assert f"at least {spec.min_exposures}" in few.reason and few.exposure_unit == spec.exposure
    enough = spec.settle(ProbeResult("fork-cow", "pass", exposures=spec.min_exposures, elapsed_s=1.0))
    assert enough.verdict == "pass"
    measured = get_probe("vdso-stack").settle(
        ProbeResult("vdso-stack", "pass", exposures=0, evidence={"deterministic": True})
    )
    assert measured.verdict == "pass"


def test_a_probe_that_cannot_start_is_an_error_result_not_a_crash(tmp_path, monkeypatch):
    # Seen under `ulimit -n 8`: EMFILE from the spawn came out as a traceback.
    import shakeout.runner as runner
    from shakeout.host import read_host

    not_executable = tmp_path / "probe"
    not_executable.write_text("")
    monkeypatch.setattr(runner, "binary_path", lambda name: not_executable)
    result = runner.run_probe(ProbeRun(get_probe("fork-cow"), 1.0), read_host())
    assert result.verdict == "error" and "cannot start" in result.reason

import pytest

from shakeout.assess import (
    IN_RANGE,
    NOT_APPLICABLE,
    OUTSIDE,
    UNDETERMINED,
    assess_static,
    decide,
)
from shakeout.catalog import load_catalog
from shakeout.outcome import bugs_status
from shakeout.results import BugVerdict, ProbeResult
from tests.unit.fakehost import OLD_CPUINFO, fake_host

SIGNAL = load_catalog()["linux-signal-vector"]
FREEBSD = load_catalog()["freebsd-xsave-xmm"]


def pv(release, compiler_text, build="#1 SMP"):
    return f"Linux version {release} (b@h) ({compiler_text}) {build}"


@pytest.mark.parametrize(
    ("release", "proc_version", "status", "needle"),
    [
        (
            "5.3.0-24-generic",
            pv("5.3.0-24-generic", "gcc version 9.2.1 (Ubuntu 9.2.1-9ubuntu2)", "#26-Ubuntu SMP"),
            IN_RANGE,
            "in the affected range",
        ),
        ("5.2.21", pv("5.2.21", "gcc version 9.1.0 (GCC)"), IN_RANGE, "built with gcc 9.1.0"),
        ("5.4.1", pv("5.4.1", "gcc version 10.1.0 (GCC)"), IN_RANGE, "5.4.1"),
        ("5.4.2-arch1-1", pv("5.4.2-arch1-1", "gcc version 9.2.0 (GCC)"), OUTSIDE, "outside"),
        ("5.3.15", pv("5.3.15", "gcc version 9.2.0 (GCC)"), OUTSIDE, "outside"),
        ("6.18.44-fc-v657", pv("6.18.44-fc-v657", "gcc (GCC) 15.3.0, GNU ld 2.46"), OUTSIDE, "outside"),
        ("5.1.21", pv("5.1.21", "gcc version 9.1.0 (GCC)"), OUTSIDE, "outside"),
        ("5.3.10", pv("5.3.10", "gcc version 8.3.0 (Debian 8.3.0-6)"), OUTSIDE, "built with gcc 8.3.0"),
        ("5.3.10", pv("5.3.10", "clang version 9.0.0"), OUTSIDE, "built with clang"),
        ("5.3.10", "Linux version 5.3.10 (root@box) #1 SMP", UNDETERMINED, "does not say which compiler"),
        ("weird", "Linux version weird (a@b) (gcc version 9.2.0) #1", UNDETERMINED, "has no version"),
        # Debian's 5.4.0-1-amd64 was upstream 5.4.6: fixed.
        (
            "5.4.0-1-amd64",
            pv(
                "5.4.0-1-amd64",
                "gcc version 9.2.1 20191130 (Debian 9.2.1-21)",
                "#1 SMP Debian 5.4.6-1 (2019-12-27)",
            ),
            OUTSIDE,
            "5.4.6",
        ),
        # Ubuntu backported the fix into 5.4.0-8.11.
        (
            "5.4.0-8-generic",
            pv("5.4.0-8-generic", "gcc version 9.2.1 (Ubuntu 9.2.1-19ubuntu1)", "#11-Ubuntu SMP"),
            OUTSIDE,
            "backported",
        ),
        (
            "5.4.0-7-generic",
            pv("5.4.0-7-generic", "gcc version 9.2.1 (Ubuntu 9.2.1-19ubuntu1)", "#8-Ubuntu SMP"),
            IN_RANGE,
            "in the affected range",
        ),
    ],
)
def test_static_assessment_of_signal_vector(tmp_path, release, proc_version, status, needle):
    result = assess_static(SIGNAL, fake_host(tmp_path, release, proc_version))
    assert result.status == status, result.reason
    assert needle in result.reason


def test_no_avx_is_not_applicable(tmp_path):
    host = fake_host(tmp_path, "5.3.0", pv("5.3.0", "gcc version 9.2.0"), cpuinfo=OLD_CPUINFO)
    result = assess_static(SIGNAL, host)
    assert result.status == NOT_APPLICABLE
    assert "avx" in result.reason


def test_other_os_and_arch_are_not_applicable(tmp_path):
    linux = fake_host(tmp_path, "5.3.0", pv("5.3.0", "gcc version 9.2.0"))
    assert assess_static(FREEBSD, linux).status == NOT_APPLICABLE
    arm = fake_host(tmp_path, "5.3.0", pv("5.3.0", "gcc version 9.2.0"), machine="aarch64")
    assert assess_static(SIGNAL, arm).status == NOT_APPLICABLE
    bsd = fake_host(tmp_path, "13.0-RELEASE", "", system="FreeBSD", machine="amd64")
    assert assess_static(FREEBSD, bsd).status == IN_RANGE
    assert assess_static(SIGNAL, bsd).status == NOT_APPLICABLE


def _host(tmp_path, release="5.3.0-24-generic"):
    return fake_host(tmp_path, release, pv(release, "gcc version 9.2.1"))


def test_reproduced_corruption_is_vulnerable_even_when_versions_say_fixed(tmp_path):
    host = _host(tmp_path, "6.18.44")
    failed = ProbeResult("signal-vector", "fail", exposures=300, reason="ymm0 changed")
    v = decide(SIGNAL, assess_static(SIGNAL, host), [failed])
    assert v.verdict == "vulnerable"
    assert "ymm0 changed" in v.reason


def test_clean_probe_gives_not_vulnerable_with_bound(tmp_path):
    passed = ProbeResult("signal-vector", "pass", exposures=300000, elapsed_s=10.0)
    v = decide(SIGNAL, assess_static(SIGNAL, _host(tmp_path)), [passed])
    assert v.verdict == "not-vulnerable"
    assert "300,000 exposures" in v.reason and "1e-05" in v.reason
    assert v.evidence["probes"][0]["failure_probability_bound_95"] == pytest.approx(1e-5)


def test_versions_alone_never_make_vulnerable(tmp_path):
    broken = ProbeResult("signal-vector", "error", reason="no probe binary")
    v = decide(SIGNAL, assess_static(SIGNAL, _host(tmp_path)), [broken])
    assert v.verdict == "unknown"
    assert "no probe binary" in v.reason and "in the affected range" in v.reason


def test_pass_without_exposures_is_not_evidence(tmp_path):
    empty = ProbeResult("signal-vector", "pass", exposures=0)
    assert decide(SIGNAL, assess_static(SIGNAL, _host(tmp_path)), [empty]).verdict == "unknown"


@pytest.mark.parametrize(
    "result",
    [
        ProbeResult("signal-vector", "skip", reason="needs root"),
        ProbeResult("signal-vector", "error", reason="pthread_create: Resource temporarily unavailable"),
        ProbeResult("signal-vector", "error", reason="the probe died from SIGSEGV", death_signal="SIGSEGV"),
        ProbeResult("signal-vector", "error", reason="the probe did not finish within its deadline"),
        ProbeResult("signal-vector", "inconclusive", reason="made only 0 exposures"),
    ],
    ids=["skip", "eagain", "crash", "deadline", "inconclusive"],
)
def test_a_probe_that_did_not_decide_never_gives_a_clean_verdict_from_versions(tmp_path, result):
    # Seen: as a non-root user with `ulimit -u 20` the probes errored and the bugs read
    # not-vulnerable because 6.18 is outside 5.2-5.4.1. Versions inform; only a probe decides.
    v = decide(SIGNAL, assess_static(SIGNAL, _host(tmp_path, "6.18.0")), [result])
    assert v.verdict == "unknown"
    assert "outside the affected versions" in v.reason and result.reason in v.reason


def test_a_crash_is_evidence_in_the_verdict(tmp_path):
    crash = ProbeResult("signal-vector", "error", reason="died", death_signal="SIGSEGV", stderr_tail=["boom"])
    v = decide(SIGNAL, assess_static(SIGNAL, _host(tmp_path, "6.18.0")), [crash])
    assert v.evidence["broken"] == [
        {"probe": "signal-vector", "reason": "died", "death_signal": "SIGSEGV", "stderr_tail": ["boom"]}
    ]


def test_a_clean_probe_does_not_override_another_probes_error(tmp_path):
    # Seen: robust-futex-lost-wakeup came out not-vulnerable from robust-futex-glibc's 582
    # exposures while robust-futex-wakeup had crashed.
    bug = load_catalog()["robust-futex-lost-wakeup"]
    clean = ProbeResult("robust-futex-glibc", "pass", exposures=582, elapsed_s=3.0)
    crashed = ProbeResult("robust-futex-wakeup", "error", reason="died from SIGSEGV", death_signal="SIGSEGV")
    v = decide(bug, assess_static(bug, _host(tmp_path, "6.18.0")), [clean, crashed])
    assert v.verdict == "unknown"
    assert "robust-futex-wakeup could not run properly: died from SIGSEGV" in v.reason


def test_only_exposures_that_open_the_bugs_window_count(tmp_path):
    clean = ProbeResult("signal-vector", "pass", exposures=1000, elapsed_s=1.0)
    v = decide(SIGNAL, assess_static(SIGNAL, _host(tmp_path, "6.18.0")), [clean], counts=lambda r: False)
    assert v.verdict == "unknown"
    assert "do not open this bug's window" in v.reason


def test_static_facts_rule_only_for_an_entry_without_any_probe(tmp_path):
    import dataclasses

    erratum = dataclasses.replace(SIGNAL, probes=())
    v = decide(erratum, assess_static(erratum, _host(tmp_path, "6.18.0")), [])
    assert v.verdict == "not-vulnerable"
    assert "outside" in v.reason
    assert decide(erratum, assess_static(erratum, _host(tmp_path, "5.3.0")), []).verdict == "unknown"


def _v(kind, verdict):
    return BugVerdict("b", kind, "t", verdict, "r")


@pytest.mark.parametrize(
    ("verdicts", "strict", "code"),
    [
        ([_v("defect", "not-vulnerable"), _v("defect", "not-applicable")], False, 0),
        ([_v("defect", "vulnerable")], False, 1),
        ([_v("defect", "unknown"), _v("defect", "not-vulnerable")], False, 3),
        ([_v("defect", "unknown"), _v("defect", "vulnerable")], False, 1),
        ([_v("hazard", "present")], False, 0),
        ([_v("hazard", "present")], True, 1),
        ([_v("hazard", "present"), _v("defect", "unknown")], False, 3),
    ],
)
def test_exit_status(verdicts, strict, code):
    assert bugs_status(verdicts, strict)[0] == code


def test_a_hazard_is_present_or_absent_never_vulnerable(tmp_path):
    bug = load_catalog()["robust-futex-reuse"]
    host = _host(tmp_path, "6.18.0")
    reproduced = ProbeResult("robust-futex-reuse", "fail", exposures=1, reason="TID rewritten")
    present = decide(bug, assess_static(bug, host), [reproduced])
    assert present.verdict == "present" and "reproduced the behaviour" in present.reason
    clean = ProbeResult("robust-futex-reuse", "pass", exposures=5, elapsed_s=1.0)
    assert decide(bug, assess_static(bug, host), [clean]).verdict == "absent"


def test_a_vulnerable_verdict_names_the_fix_and_first_mitigation(tmp_path):
    failed = ProbeResult("signal-vector", "fail", exposures=300, reason="ymm0 changed")
    v = decide(SIGNAL, assess_static(SIGNAL, _host(tmp_path, "5.3.0")), [failed])
    assert v.fix == "fixed in 5.3.15 / 5.4.2 / 5.5 (59c4bd853abc)"
    assert v.mitigation.startswith("Run a fixed kernel: ")


def test_a_measurement_gives_its_numbers_not_a_bound(tmp_path):
    from shakeout.catalog import load_catalog as _load

    bug = _load()["vdso-stack-probe"]
    measured = ProbeResult(
        "vdso-stack", "pass", exposures=30, evidence={"deterministic": True, "summary": "deepest f (112 bytes)"}
    )
    assert measured.bound is None
    v = decide(bug, assess_static(bug, _host(tmp_path, "6.1.0")), [measured])
    assert v.verdict == "not-vulnerable"
    assert "measured: deepest f (112 bytes)" in v.reason and "confidence" not in v.reason

"""Real crash output from public bug reports (tests/fixtures/triage, each file cites its source)."""

from pathlib import Path

import pytest

from shakeout.catalog import load_catalog
from shakeout.triage.matcher import Scanner, load_rules

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "triage"


def triage_fixture(name):
    header, _, excerpt = (FIXTURES / name).read_text().partition("\n---\n")
    assert header.startswith("source: https://"), name
    scanner = Scanner(load_rules(load_catalog().values()))
    scanner.feed(name, excerpt)
    return scanner.result()


def ranked(result):
    return [s.id for s in result.suspects]


def evidence_ids(result, suspect):
    return {e.id for s in result.suspects + result.not_indicated if s.id == suspect for e in s.evidence}


def test_every_fixture_cites_a_source_and_is_short():
    files = sorted(FIXTURES.glob("*.txt"))
    assert len(files) >= 14
    for path in files:
        header, sep, excerpt = path.read_text().partition("\n---\n")
        assert sep and header.startswith("source: https://"), path.name
        assert len(excerpt.splitlines()) <= 15, path.name


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("signal-vector-go35777-mlock.txt", "linux-signal-vector"),
        ("signal-vector-go37436-mlock.txt", "linux-signal-vector"),
        ("vdso-marcan-gentoo-hardened.txt", "vdso-stack-probe"),
        ("bsd-fork-netbsd-pr56535.txt", "bsd-fork-cow"),
        ("robust-futex-retroarch198.txt", "robust-futex-reuse"),
        ("hardware-osm300-edac.txt", "ram-weak-cells"),
        ("hardware-radiasoft134-mce.txt", "ram-weak-cells"),
        ("software-go15470-nil.txt", "software"),
        ("software-oniongen7-index.txt", "software"),
        ("software-grtm4-concurrent-map.txt", "software"),
        ("software-wfqueue3-asan-uaf.txt", "software"),
    ],
)
def test_first_suspect(name, first):
    result = triage_fixture(name)
    assert ranked(result)[0] == first, [(s.id, s.score) for s in result.suspects]
    assert result.suspects[0].evidence[0].lines, "the strongest evidence shows its lines"


def test_ordinary_crashes_do_not_raise_platform_bugs():
    for name in ("software-go15470-nil.txt", "software-oniongen7-index.txt", "software-wfqueue3-asan-uaf.txt"):
        assert ranked(triage_fixture(name)) == ["software"], name


def test_openbsd_builder_crash_without_os_keeps_the_fork_bug_among_the_top():
    result = triage_fixture("bsd-fork-go34988-openbsd.txt")
    top = result.suspects[0].score
    assert "bsd-fork-cow" in [s.id for s in result.suspects if s.score == top]
    assert "software" not in ranked(result)


def test_netbsd_log_sets_linux_bugs_aside_by_os():
    result = triage_fixture("bsd-fork-netbsd-pr56535.txt")
    aside = {s.id: s for s in result.not_indicated}
    assert "linux-signal-vector" in aside
    assert "os:os_mismatch" in evidence_ids(result, "linux-signal-vector")
    assert result.hosts and next(iter(result.hosts.values()))["os"] == "netbsd"


def test_go20427_crash_ties_the_vdso_bug_with_weak_ram_and_not_software():
    result = triage_fixture("vdso-go20427-os-exec.txt")
    top = result.suspects[0].score
    assert {"vdso-stack-probe", "ram-weak-cells"} <= {s.id for s in result.suspects if s.score == top}
    assert "software" not in ranked(result)


def test_kernel_4_4_sets_the_signal_vector_bug_aside():
    result = triage_fixture("vdso-go20427-os-exec.txt")
    assert "kernel:kernel_outside" in evidence_ids(result, "linux-signal-vector")
    assert "linux-signal-vector" not in ranked(result)


def test_ubuntu_backport_lowers_the_signal_vector_suspicion():
    result = triage_fixture("signal-vector-occm1257-ubuntu-backport.txt")
    suspect = next(s for s in result.suspects if s.id == "linux-signal-vector")
    backport = next(e for e in suspect.evidence if e.id == "backported:backported")
    assert backport.weight < 0 and "5.4.0-8.11" in backport.reason
    assert suspect.score == sum(e.weight for e in suspect.evidence)

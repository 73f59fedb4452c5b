"""The real fork-cow probe: clean here, and an outside writer's value is caught by each check."""

import os
from pathlib import Path

import pytest

from shakeout.engine import run_injection
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.probes.fork_cow import INJECTED_VALUE
from shakeout.runner import ProbeRun, run_probe
from tests.functional.helpers import probe_pids, wait_until

HOST = read_host()
SPEC = get_probe("fork-cow")
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch not in ("x86_64", "aarch64"), reason="raw fork is implemented for x86-64/aarch64"),
]


def expected_instances(mode):
    """The probe's own default: enough instances to keep every CPU busy (2 busy threads each, 4 in tlb)."""
    per_instance = 4 if mode == "tlb" else 2
    return max(1, -(-HOST.cpus // per_instance))


def fork_cow_pids():
    """Our probe's processes only: other developers' probes may run on the same machine."""
    return [pid for pid in probe_pids() if Path(os.readlink(f"/proc/{pid}/exe")).name == "fork_cow"]


@pytest.mark.parametrize("mode", ["stale-read", "tlb"])
def test_clean_run_passes_with_exposures(mode):
    result = run_probe(ProbeRun(SPEC, 1.5, options={"mode": mode}), HOST)
    assert result.verdict == "pass", result.reason
    assert result.exposures > 100
    assert result.evidence["forks"] > result.exposures / 2
    assert result.metrics["cpu_utilisation"] > 0.5
    targets = result.evidence["targets"]  # one per instance, each announced with its word
    assert len(targets) == result.evidence["instances"] == expected_instances(mode)
    assert len({t["pid"] for t in targets}) == len(targets)
    for target in targets:
        assert target["mode"] == mode and target["address"].startswith("0x")
        assert "inject" not in target  # an ordinary run opens no selftest window
    assert wait_until(lambda: fork_cow_pids() == [], 2.0)


@pytest.mark.parametrize("mode", ["stale-read", "tlb"])
def test_default_instances_fill_the_cpus(mode):
    result = run_probe(ProbeRun(SPEC, 1.0, options={"mode": mode}), HOST)
    assert result.evidence["instances"] == expected_instances(mode)


@pytest.mark.parametrize("name", ["immediate", "end", "tlb"])
def test_outside_writer_is_caught_by_the_check_it_targets(name):
    injection = next(i for i in SPEC.injections if i.name == name)
    result = run_injection(SPEC, HOST, injection, None)
    assert result.verdict == "fail", result.reason
    assert injection.verify(result) is None, injection.verify(result)
    sample = result.evidence["samples"][0]
    assert int(sample["observed"], 16) == INJECTED_VALUE
    assert sample["expected"] != sample["observed"]
    assert result.evidence["injector"]["writes"] > 0
    assert sample["check"] in result.reason
    assert wait_until(lambda: fork_cow_pids() == [], 2.0)


def test_the_immediate_window_is_hit_after_forks_with_a_writer_running():
    injection = next(i for i in SPEC.injections if i.name == "immediate")
    result = run_injection(SPEC, HOST, injection, None)
    ev = result.evidence
    assert ev["samples"][0]["check"] == "immediate"
    assert ev["samples"][0]["iteration"] == ev["window_iteration"] == 1000
    assert ev["forks"] >= 1000 and result.exposures > 0
    assert ev["injector"]["writes"] == ev["windows_answered"] >= 1


def test_a_window_nobody_answers_is_not_a_failure():
    result = run_probe(ProbeRun(SPEC, 1.0, options={"mode": "stale-read", "inject-window": "immediate"}), HOST)
    assert result.verdict in ("pass", "inconclusive"), result.reason  # the wait costs forks, not a failure
    assert result.evidence["corruptions"] == 0
    assert result.evidence["windows_opened"] >= 1 and result.evidence["windows_answered"] == 0


def test_keep_going_counts_several():
    from shakeout.injectors.memory_writer import MemoryWriter

    writer = MemoryWriter(INJECTED_VALUE)
    try:
        result = run_probe(
            ProbeRun(SPEC, 1.0, keep_going=True, options={"mode": "stale-read"}, on_event=writer.on_event), HOST
        )
    finally:
        writer.stop()
    assert result.verdict == "fail"
    assert result.evidence["corruptions"] > 1
    assert all(int(s["observed"], 16) == INJECTED_VALUE for s in result.evidence["samples"])

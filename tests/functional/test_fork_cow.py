"""The real fork-cow probe: clean here, and an outside writer's stale value is caught."""

import pytest

from shakeout.engine import run_injection
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.probes.fork_cow import INJECTED_VALUE
from shakeout.runner import run_probe
from tests.functional.helpers import probe_pids, wait_until

HOST = read_host()
SPEC = get_probe("fork-cow")
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch not in ("x86_64", "aarch64"), reason="raw fork is implemented for x86-64/aarch64"),
]


@pytest.mark.parametrize("mode", ["stale-read", "tlb"])
def test_clean_run_passes_with_exposures(mode):
    result = run_probe(SPEC, HOST, 1.5, options={"mode": mode})
    assert result.verdict == "pass", result.reason
    assert result.exposures > 100
    assert result.evidence["forks"] > result.exposures / 2
    assert result.metrics["cpu_utilisation"] > 0.5
    (target,) = result.evidence["targets"]  # one instance on 2 CPUs; announced with its word
    assert target["mode"] == mode and target["address"].startswith("0x")
    assert wait_until(lambda: probe_pids() == [], 2.0)


def test_default_instances_fill_the_cpus():
    result = run_probe(SPEC, HOST, 1.0)
    assert result.evidence["instances"] == max(1, HOST.cpus // 2)


@pytest.mark.parametrize("mode", ["stale-read", "tlb"])
def test_outside_writer_is_caught_with_correct_evidence(mode):
    injection = next(i for i in SPEC.injections if i.name == mode)
    result = run_injection(SPEC, HOST, injection, None)
    assert result.verdict == "fail", result.reason
    assert injection.verify(result) is None, injection.verify(result)
    sample = result.evidence["samples"][0]
    assert int(sample["observed"], 16) == INJECTED_VALUE
    assert sample["expected"] != sample["observed"]
    assert result.evidence["injector"]["writes"] > 0
    assert mode in result.reason
    assert wait_until(lambda: probe_pids() == [], 2.0)


def test_keep_going_counts_several():
    injection = next(i for i in SPEC.injections if i.name == "stale-read")
    from shakeout.injectors.memory_writer import MemoryWriter

    writer = MemoryWriter(INJECTED_VALUE)
    try:
        result = run_probe(SPEC, HOST, 1.0, keep_going=True, options={"mode": "stale-read"}, on_event=writer.on_event)
    finally:
        writer.stop()
    assert result.verdict == "fail"
    assert result.evidence["corruptions"] > 1
    assert injection.verify(result) is None

"""Prometheus text for node_exporter: naming conventions, an _info metric, no timestamps."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from shakeout.report.prom import render_prometheus
from shakeout.results import BugVerdict, ProbeResult, RunReport

HOST = {
    "arch": "x86_64",
    "kernel_release": "6.1.0-18-amd64",
    "cpu": {"vendor": "AuthenticAMD", "family": 23, "model": 49, "stepping": 0, "microcode": "0x0830104d"},
}


def _report() -> RunReport:
    return RunReport(
        command="check",
        tool_version="0.1.0",
        host=HOST,
        started_at="2026-11-01T12:00:00+00:00",
        elapsed_s=9.5,
        bugs=[BugVerdict("linux-signal-vector", "defect", "t", "unknown", "r")],
        probes=[ProbeResult("signal-vector", "pass", iterations=500, exposures=1200, elapsed_s=2.5)],
    )


def _families():
    return {f.name: f for f in text_string_to_metric_families(render_prometheus(_report()))}


def test_info_metric_names_version_kernel_and_microcode():
    (sample,) = _families()["shakeout_info"].samples
    assert sample.value == 1
    assert sample.labels["version"] == "0.1.0" and sample.labels["kernel"] == "6.1.0-18-amd64"
    assert sample.labels["microcode"] == "0x0830104d" and sample.labels["cpu_family"] == "23"


def test_event_counts_are_counters_with_total_and_no_created_sample():
    families = _families()
    exposures = families["shakeout_probe_exposures"]
    assert exposures.type == "counter"
    assert [(s.name, s.value) for s in exposures.samples] == [("shakeout_probe_exposures_total", 1200)]
    assert [s.name for s in families["shakeout_probe_iterations"].samples] == ["shakeout_probe_iterations_total"]
    assert "_created" not in render_prometheus(_report())


def test_start_time_is_a_value_in_seconds_and_no_sample_has_a_timestamp():
    families = _families()
    (start,) = families["shakeout_last_run_timestamp_seconds"].samples
    assert start.value == 1793534400.0  # 2026-11-01T12:00:00Z
    assert all(s.timestamp is None for f in families.values() for s in f.samples)


def test_every_unit_is_a_base_unit():
    for name in _families():
        assert not name.endswith(("_ms", "_milliseconds", "_bytes_kib", "_minutes")), name

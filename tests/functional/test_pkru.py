"""pkru-signal: skipped with its reason where the CPU has no protection keys, and run for real
in a Debian 6.1 guest under QEMU TCG (-cpu max emulates protection keys), where it passes and
its injected frame (XSTATE_BV[PKRU] cleared, as the 6.12 AMD kernel wrote it) is caught.
"""

import json
from dataclasses import replace

import pytest

from shakeout.catalog import load_catalog
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.runner import ProbeRun, run_probe
from shakeout.vm import run_vm
from tests.functional.helpers import run_probe_binary, wait_until
from tests.functional.helpers import run_shakeout as shakeout
from tests.functional.test_vm import debian_kernel, qemu_pids  # noqa: F401  (the fixture fetches the kernel)

HOST = read_host()
SPEC = get_probe("pkru-signal")
HAS_PKU = "pku" in HOST.cpu.flags and "ospke" in HOST.cpu.flags
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch != "x86_64", reason="PKRU is x86's"),
]


def test_host_without_protection_keys_skips_with_the_reason():
    result = run_probe(ProbeRun(SPEC, 1.0), HOST)
    if HAS_PKU:
        assert result.verdict == "pass", result.reason
        assert result.exposures >= 100
        return
    assert result.verdict == "skip"
    assert "protection keys" in result.reason and ("PKU = 0" in result.reason or "OSPKE = 0" in result.reason)


def test_bad_inject_value_is_one_line_exit_2(tmp_path):
    status, line = run_probe_binary("pkru", "--duration", "1", "--inject", "everything", cwd=tmp_path)
    assert status == 2
    assert "off, clear-xstate-bv" in line["reason"]


@pytest.fixture(scope="module")
def guest_report(debian_kernel):  # noqa: F811
    injected = replace(SPEC, id="pkru-signal-injected", fixed_options={"inject": "clear-xstate-bv"})
    bugs = [b for b in load_catalog().values() if "pkru-signal" in b.probes]
    report = run_vm(debian_kernel, [SPEC, injected], bugs, 2.0, 1, "512M", "tcg", "max")
    assert wait_until(lambda: qemu_pids() == [], 2.0)
    return report


def test_guest_run_passes_with_every_check_exercised(guest_report):
    clean = next(p for p in guest_report.probes if p.probe_id == "pkru-signal")
    ev = clean.evidence
    assert clean.verdict == "pass", (clean.reason, ev)
    assert clean.exposures >= SPEC.min_exposures
    assert ev["pkru_value"] != ev["pkru_in_handler"]  # the handler runs with the kernel's default
    assert ev["released_altstack_signals"] > 0 and ev["async_signals"] > 0
    assert ev["init_tests"] > 0 and ev["init_tests_switched_out"] > 0
    assert ev["injected_frames"] == 0
    verdicts = {b.bug_id: b.verdict for b in guest_report.bugs}
    # Debian's 6.1 is outside both ranges and the probe passed: not vulnerable
    assert verdicts == {"linux-pkru-signal-amd": "not-vulnerable", "linux-pkru-init-state": "not-vulnerable"}


def test_guest_catches_the_injected_frame(guest_report):
    injected = next(p for p in guest_report.probes if p.probe_id == "pkru-signal-injected")
    assert injected.verdict == "fail", injected.reason
    assert SPEC.injections[0].verify(injected) is None
    assert injected.evidence["at_iteration"] == 50  # the first injected frame, not before
    assert "observed 0: the init value" in injected.reason


def test_cli_vm_json_names_the_probe(debian_kernel, tmp_path):  # noqa: F811
    out = tmp_path / "vm.json"
    proc = shakeout(
        "vm",
        "--kernel",
        str(debian_kernel),
        "--probes",
        "pkru-signal",
        "--duration",
        "1",
        "--format",
        "json",
        "--output",
        str(out),
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    probes = {p["id"]: p for p in json.loads(out.read_text())["probes"]}
    assert probes["pkru-signal"]["verdict"] == "pass"

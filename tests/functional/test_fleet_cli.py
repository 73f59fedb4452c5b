"""The fleet commands as a user and a scheduler run them: check's state, status, merge, units."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from tests.functional.helpers import run_shakeout as shakeout
from tests.unit.fleetdata import report, write

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    """One real (short) scheduled-style check, shared by the tests that read its state."""
    state = tmp_path_factory.mktemp("state")
    textfile_dir = tmp_path_factory.mktemp("textfile")
    done = shakeout(
        "check", "--only", "vdso-stack-probe", "--duration", "0.5", "--format", "json",
        "--state-dir", str(state), "--textfile", str(textfile_dir / "shakeout.prom"), cwd=state,
    )  # fmt: skip
    assert done.returncode in (0, 1, 3), done.stderr
    return state, textfile_dir / "shakeout.prom", json.loads(done.stdout)


def test_check_leaves_report_and_textfile_atomically_and_nothing_else(state_dir):
    state, textfile, printed = state_dir
    assert sorted(p.name for p in state.iterdir()) == ["report.json", "shakeout.prom"]
    kept = json.loads((state / "report.json").read_text())
    assert kept["schema"] == "shakeout/1" and kept["bugs"] == printed["bugs"]
    assert textfile.read_text() == (state / "shakeout.prom").read_text()
    assert sorted(p.name for p in textfile.parent.iterdir()) == ["shakeout.prom"]  # no temporary left


def test_textfile_has_no_timestamps(state_dir):
    """node_exporter skips a whole textfile whose samples carry timestamps (FACTS-wave2 §3)."""
    _, textfile, _ = state_dir
    samples = [line for line in textfile.read_text().splitlines() if line and not line.startswith("#")]
    assert samples
    for line in samples:
        value_part = line.rsplit("}", 1)[-1].split()
        assert len(value_part) == (1 if "}" in line else 2), line


def test_status_reads_the_state_and_npd_gets_80_ascii_bytes(state_dir):
    state, _, printed = state_dir
    done = shakeout("status", "--state-dir", str(state))
    vulnerable = any(b["verdict"] == "vulnerable" for b in printed["bugs"])
    assert done.returncode == (1 if vulnerable else 0), done.stdout + done.stderr
    assert done.stdout.count("\n") == 1 and done.stderr == ""
    npd = shakeout("status", "--plugin", "npd", "--state-dir", str(state))
    assert npd.returncode == (1 if vulnerable else 0)
    assert len(npd.stdout.strip().encode("ascii")) <= 80


def test_check_refuses_a_missing_state_dir_before_running(tmp_path):
    done = shakeout("check", "--state-dir", str(tmp_path / "typo"), timeout=30)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "does not exist" in done.stderr
    assert "running" not in done.stderr  # no probe started


def test_status_for_npd_on_an_unreadable_state_directory_as_non_root(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become another user")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write(state / "report.json", report("h", {"a": "not-vulnerable"}))
    os.chmod(tmp_path, 0o755)
    done = shakeout(
        "status", "--plugin", "npd", "--state-dir", str(state),
        prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"), cwd="/",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("unknown: cannot read report.json: Permission denied")


def test_merge_directory_stdin_and_skipped_inputs(tmp_path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    for i in range(3):
        write(fleet / f"v{i}.json", report(f"v{i}", {"linux-signal-vector": "vulnerable"}, microcode="0xbad"))
    for i in range(20):
        write(fleet / f"c{i}.json", report(f"c{i}", {"linux-signal-vector": "not-vulnerable"}, microcode="0xgood"))
    (fleet / "corrupt.json").write_text("{not json")
    write(fleet / "foreign.json", {"hello": "world"})
    extra = json.dumps(report("from-stdin", {"linux-signal-vector": "not-vulnerable"}))
    done = shakeout("merge", str(fleet), "-", stdin=extra)
    assert done.returncode == 5, done.stderr  # vulnerable somewhere (1) + skipped inputs (4)
    assert "shakeout merge: 24 hosts from 24 reports" in done.stdout
    assert "vulnerable on 3/3 hosts with microcode 0xbad, 0/21 others" in done.stdout
    skipped = done.stderr.splitlines()
    assert len(skipped) == 2 and all(line.startswith("shakeout merge: skipped ") for line in skipped)


def test_merge_markdown_to_an_output_file(tmp_path):
    write(tmp_path / "a.json", report("a", {"x": "not-vulnerable"}))
    out = tmp_path / "summary.md"
    done = shakeout("merge", "--format", "markdown", "--output", str(out), str(tmp_path / "a.json"))
    assert done.returncode == 0 and done.stdout == ""
    assert out.read_text().startswith("## shakeout merge: 1 hosts")


def test_merge_with_nothing_mergeable_is_exit_2(tmp_path):
    (tmp_path / "a.json").write_text("[]")
    done = shakeout("merge", str(tmp_path / "a.json"))
    assert (
        done.returncode == 2
        and done.stderr.splitlines()[-1] == "shakeout: error: none of the 1 inputs is a shakeout check report"
    )


@pytest.mark.parametrize("name", ["/dev/zero", "/dev/null"])
def test_merge_refuses_devices_without_reading_them(name):
    done = shakeout("merge", name, timeout=30)
    assert done.returncode == 2 and "not a regular file" in done.stderr


def test_units_print_and_install(tmp_path):
    done = shakeout("units")
    assert done.returncode == 0 and "# --- shakeout-check.timer" in done.stdout
    assert re.search(r"^ExecStart=\S*python\S* -m shakeout check", done.stdout, re.M)
    done = shakeout("units", "--install", "--unit-dir", str(tmp_path))
    assert done.returncode == 0 and "systemctl enable --now shakeout-check.timer" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shakeout-check.service", "shakeout-check.timer"]
    npd = json.loads(shakeout("units", "--npd").stdout)
    assert npd["plugin"] == "custom"

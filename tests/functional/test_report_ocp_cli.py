"""`--format ocp` from the real commands: check, run and selftest write line-delimited OCP
artifacts that validate against the specification's JSON Schema, on stdout and to --output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.test_report_ocp import _errors

pytestmark = pytest.mark.functional


def shakeout(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "shakeout", *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def _valid_run(text):
    artifacts = [json.loads(line) for line in text.splitlines()]
    for artifact in artifacts:
        assert _errors(artifact) == [], artifact
    assert "testRunEnd" in artifacts[-1]["testRunArtifact"]
    return artifacts


@pytest.mark.parametrize(
    "args",
    [
        ("check", "--only", "vdso-stack-probe", "rdrand-constant", "--duration", "0.3"),
        ("run", "rdrand", "--duration", "0.3"),
        ("selftest", "--only", "rdrand"),
    ],
)
def test_commands_write_valid_ocp_on_stdout(tmp_path, args):
    done = shakeout(*args, "--format", "ocp", cwd=tmp_path)
    assert done.returncode in (0, 1, 3), done.stderr
    artifacts = _valid_run(done.stdout)
    assert artifacts[1]["testRunArtifact"]["testRunStart"]["name"] == "shakeout " + args[0]
    assert artifacts[1]["testRunArtifact"]["testRunStart"]["parameters"]["exit_status"] == done.returncode
    assert any("diagnosis" in a.get("testStepArtifact", {}) for a in artifacts)
    assert list(tmp_path.iterdir()) == []


def test_check_writes_ocp_to_an_output_file(tmp_path):
    out = tmp_path / "node.ocp.jsonl"
    done = shakeout(
        "check", "--only", "rdrand-constant", "--duration", "0.3", "--format", "ocp", "--output", str(out), cwd=tmp_path
    )
    assert done.returncode in (0, 1, 3), done.stderr
    assert done.stdout == ""
    _valid_run(out.read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.ocp.jsonl"]

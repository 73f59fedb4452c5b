"""config-bisect speaks its own language (options, not patterns; its own name in progress
and JSON); bisect explains "passes needed per decision"; `shakeout cc` without -c warns."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shakeout.bisect.report import render_text
from tests.functional.test_bisect_cli import write_configs

BIN = Path(sys.executable).parent


def config_bisect(tmp_path, *options):
    write_configs(tmp_path)
    return subprocess.run(
        [str(BIN / "shakeout"), "config-bisect", str(tmp_path / "good.config"), str(tmp_path / "bad.config"),
         *options, "--", sys.executable, str(tmp_path / "test.py")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_config_bisect_progress_names_options_not_patterns(tmp_path):
    proc = config_bisect(tmp_path)
    assert proc.returncode == 0, proc.stderr
    progress = proc.stderr.splitlines()
    assert progress and all(line.startswith("shakeout config-bisect: ") for line in progress)
    assert any("options at BAD's value (" in line and "CONFIG_" in line for line in progress)
    assert not any(" -> " in line for line in progress), "a pattern line without -v"
    out = proc.stdout
    assert out.startswith("--- options #1 (setting these options to BAD's values makes the command fail)\n")
    assert "CONFIG_USB: good=n bad=y" in out and "[bisect-match" not in out
    assert "with BAD's configuration the command failed" in out


def test_config_bisect_verbose_shows_patterns_and_json_names_the_command(tmp_path):
    proc = config_bisect(tmp_path, "-v", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert any(
        line.startswith("shakeout config-bisect: trial ") and " -> " in line for line in proc.stderr.splitlines()
    )
    assert json.loads(proc.stdout)["command"] == "config-bisect"


def test_passes_needed_per_decision_is_explained():
    doc = {
        "command": "bisect",
        "change_sets": [],
        "trials": 30,
        "all_enabled": {"failures": 3, "trials": 5},
        "passes_needed_per_decision": 8,
        "notes": [],
    }
    text = render_text(doc)
    assert "with every change enabled the command failed 3 of 5 times" in text
    assert "counted as passing only after 8 passes in a row" in text


@pytest.mark.parametrize(
    "args, warns",
    [
        (["m.c", "-o", "m"], True),
        (["-c", "m.c", "-o", "m.o"], False),
        (["m.o", "-o", "m"], False),  # linking objects is the normal last step
        (["-E", "m.c"], False),
    ],
)
def test_cc_warns_in_one_line_when_no_object_is_produced(tmp_path, args, warns):
    (tmp_path / "m.c").write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-c", "m.c", "-o", "m.o"], cwd=tmp_path, check=True)
    proc = subprocess.run(
        [str(BIN / "shakeout"), "cc", "--", "gcc", *args],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "BISECT_PATTERN": "y"},
    )  # fmt: skip
    assert proc.returncode == 0
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == (1 if warns else 0), proc.stderr
    if warns:
        assert "no object file is produced" in warnings[0]

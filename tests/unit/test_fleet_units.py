"""systemd units and node-problem-detector config: filled in, installed, verified by the real tools."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shakeout.errors import UsageError
from shakeout.fleet.units import (
    SERVICE,
    TIMER,
    install_units,
    render_npd_config,
    render_units,
)

PYTHON = Path(sys.executable)


def _settings(text: str):
    pairs = [line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_timer_spreads_a_fleet_and_catches_up():
    timer = _settings(render_units(PYTHON)[TIMER])
    assert timer["AccuracySec"] == "1us" and timer["Persistent"] == "true"
    assert timer["RandomizedDelaySec"] == "4h" and timer["OnCalendar"] == "daily"


def test_service_is_a_polite_oneshot_writing_the_state_directory():
    service = _settings(render_units(PYTHON)[SERVICE])
    assert service["Type"] == "oneshot" and service["Nice"] == "19" and service["CPUQuota"] == "100%"
    assert service["ExecStart"] == f"{PYTHON} -m shakeout check --format text --state-dir /var/lib/shakeout"
    assert service["StateDirectory"] == "shakeout" and service["SuccessExitStatus"] == "1 3"
    assert service["ReadWritePaths"] == ""  # no textfile elsewhere: nothing else writable


def test_textfile_option_opens_its_directory_only():
    service = _settings(render_units(PYTHON, Path("/var/lib/prometheus/node-exporter/shakeout.prom"))[SERVICE])
    assert service["ExecStart"].endswith("--textfile /var/lib/prometheus/node-exporter/shakeout.prom")
    assert service["ReadWritePaths"] == "/var/lib/prometheus/node-exporter"


@pytest.mark.parametrize("bad", ["relative.prom", "/a%b/x.prom", '/a"b/x.prom'])
def test_paths_systemd_would_misread_are_refused(bad):
    with pytest.raises(UsageError):
        render_units(PYTHON, Path(bad))


def test_install_writes_units_atomically_and_says_the_next_step(tmp_path):
    message = install_units(render_units(PYTHON), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SERVICE, TIMER]
    assert "systemctl enable --now shakeout-check.timer" in message


def test_install_into_a_missing_directory_is_one_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        install_units(render_units(PYTHON), tmp_path / "none")


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)
def test_systemd_analyze_verify_accepts_the_units_without_warnings(tmp_path):
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    install_units(render_units(PYTHON, textfile_dir / "shakeout.prom"), tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / SERVICE), str(tmp_path / TIMER)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys and bad values are only warnings


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)
def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path):
    service = render_units(PYTHON)[SERVICE].replace("Nice=19", "Nice=99")
    (tmp_path / SERVICE).write_text(service)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / SERVICE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Nice" in done.stderr


def test_npd_config_follows_the_custom_plugin_rules():
    """The checks NPD's own Validate() makes (pkg/custompluginmonitor/types/config.go), and ours."""
    config = json.loads(render_npd_config(PYTHON))
    assert config["plugin"] == "custom"
    global_config = config["pluginConfig"]
    assert global_config["max_output_length"] == 80
    defaults = {c["type"] for c in config["conditions"]}
    kinds = {r["type"] for r in config["rules"]}
    assert kinds == {"permanent", "temporary"}
    for rule in config["rules"]:
        assert _seconds(rule["timeout"]) <= _seconds(global_config["timeout"]) < 5  # under NPD's default 5 s
        assert rule["args"][:3] == ["status", "--plugin", "npd"]
        assert rule["path"] == str(PYTHON.parent / "shakeout")
        if rule["type"] == "permanent":
            assert rule["condition"] in defaults
        else:
            assert "--hazards" in rule["args"]


def _seconds(text: str) -> float:
    assert text.endswith("s") and not text.endswith("ms")
    return float(text[:-1])

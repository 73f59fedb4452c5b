"""deploy/ansible for real: ansible-playbook against localhost (`-i localhost, -c local`)
installs a shakeout wheel built from this tree into a fresh virtual environment with pip,
runs `shakeout check --format json`, fetches the report and merges it on the controller.

The wheel and its dependencies' wheels are built once per source state and kept in the
user's cache directory (~/.cache/shakeout-tests), so the playbook installs offline
(`--no-index --find-links`), as on an air-gapped fleet, and a rerun takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "deploy" / "ansible" / "shakeout-fleet.yml"
SOURCE_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE")


def _ansible_playbook() -> str:
    pytest.importorskip("ansible", reason="ansible-core is not installed (pip install ansible-core)")
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if not found:
        pytest.skip("ansible-core is importable but ansible-playbook is not on PATH")
    return found


def _source_digest() -> str:
    digest = hashlib.sha256()
    paths = [REPO / name for name in SOURCE_FILES] + sorted(
        p for p in (REPO / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts and "_bin" not in p.parts
    )
    for path in paths:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _copy_source(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "_bin", "*.pyc")
    shutil.copytree(REPO / "src", dest / "src", ignore=ignore)
    for name in SOURCE_FILES:
        shutil.copy2(REPO / name, dest / name)


def _pip(*args: str) -> str:
    """pip's failure, in a line, or "" when it worked."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600, check=False
    )
    return "" if done.returncode == 0 else " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """shakeout's wheel (from this tree) and its dependencies' wheels, built once per source."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shakeout-tests"
    house = cache / ("wheelhouse-" + _source_digest())
    if list(house.glob("shakeout-*.whl")):
        return house
    build = tmp_path_factory.mktemp("build")
    _copy_source(build)
    staging = tmp_path_factory.mktemp("wheels")
    failure = _pip("wheel", "-q", "--no-deps", "-w", str(staging), str(build))
    if failure:
        pytest.fail("shakeout's wheel does not build: " + failure)
    (wheel,) = staging.glob("shakeout-*.whl")
    failure = _pip("wheel", "-q", "-w", str(staging), str(wheel))
    if failure:
        pytest.skip("could not fetch the dependencies' wheels from the package index: " + failure)
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("wheelhouse-*"):
        shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(staging, house)
    return house


def _playbook(tmp_path: Path, extra_vars: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    home = tmp_path / "ansible-home"
    env = dict(
        os.environ,
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        TMPDIR=str(tmp_path),
    )
    argv = [_ansible_playbook(), "-v", "-i", "localhost,", "-c", "local", str(PLAYBOOK), "-e", json.dumps(extra_vars)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env, check=False)


def test_playbook_installs_checks_fetches_and_merges(tmp_path, wheelhouse):
    (wheel,) = wheelhouse.glob("shakeout-*.whl")
    reports = tmp_path / "reports"
    done = _playbook(
        tmp_path,
        {
            "shakeout_source": str(wheel),
            "shakeout_python": sys.executable,
            "shakeout_venv": str(tmp_path / "host-venv"),
            "shakeout_pip_extra_args": f"--no-index --find-links {wheelhouse}",
            "shakeout_check_args": ["--only", "rdrand-constant", "--duration", "0.3"],
            "shakeout_check_poll_s": 1,
            "shakeout_reports_dir": str(reports),
            "shakeout_controller_command": str(Path(sys.executable).parent / "shakeout"),
        },
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert (tmp_path / "host-venv" / "bin" / "shakeout").exists()
    report = json.loads((reports / "hosts" / "localhost.json").read_text())
    assert report["schema"] == "shakeout/1" and report["command"] == "check"
    assert [b["id"] for b in report["bugs"]] == ["rdrand-constant"]
    assert (reports / "merge.txt").read_text().startswith("shakeout merge: 1 hosts from 1 reports")
    merged = json.loads((reports / "merge.json").read_text())
    assert json.dumps(merged).count("rdrand-constant") >= 1
    assert sorted(p.name for p in reports.iterdir()) == ["hosts", "merge.json", "merge.txt"]
    assert not list(tmp_path.glob("shakeout-ansible.*")), "the staging directory stayed behind"


def test_playbook_refuses_to_run_without_a_source(tmp_path):
    done = _playbook(tmp_path, {"shakeout_reports_dir": str(tmp_path / "reports")}, timeout=120)
    assert done.returncode != 0
    assert "set shakeout_source to a shakeout wheel" in done.stdout
    assert not (tmp_path / "reports").exists()


def test_a_failing_host_leaves_no_staging_directory_and_is_not_merged(tmp_path):
    reports = tmp_path / "reports"
    done = _playbook(
        tmp_path,
        {"shakeout_source": str(tmp_path / "no-such.whl"), "shakeout_reports_dir": str(reports)},
        timeout=120,
    )
    assert done.returncode != 0
    assert "Remove the staging directory" in done.stdout
    assert f'"path": "{tmp_path}/shakeout-ansible.' in done.stdout  # staged where we look
    assert not list(tmp_path.glob("shakeout-ansible.*")), "the staging directory stayed behind"
    assert not reports.exists()

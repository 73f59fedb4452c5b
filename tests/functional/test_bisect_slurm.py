"""bisect --launcher 'srun -N1 --' against a real one-node Slurm cluster (Debian's
slurm-wlm: munged, slurmctld and slurmd started here, as root, with a configuration in a
temporary directory, ports chosen free). Skips, saying why, where Slurm is not installed
or its daemons cannot run (e.g. no root)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.functional.test_bisect_launcher import TARGET, _tagged, _wait_gone

pytestmark = pytest.mark.functional

DAEMONS = ("munged", "slurmctld", "slurmd", "srun", "sinfo")

SLURM_CONF = """\
ClusterName=shakeouttest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={dir}/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def slurm_env():
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        pytest.skip("Slurm is not installed (apt-get install slurm-wlm munge): no " + ", ".join(missing))
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld and slurmd here needs root")
    work = Path(tempfile.mkdtemp(prefix="shakeout-slurm-"))  # short: the munge socket path is limited
    try:
        yield _start_cluster(work)
    finally:
        for name in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            _stop(work / name)
        shutil.rmtree(work, ignore_errors=True)


def _start_cluster(work: Path) -> dict:
    for sub in ("state", "spool"):
        (work / sub).mkdir()
    key = work / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = work / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(host=socket.gethostname().split(".")[0], dir=work, cpus=os.cpu_count() or 1,
                          ctld_port=_free_port(), slurmd_port=_free_port())
    )  # fmt: skip
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munged = ["munged", "--force", f"--socket={work}/munge.sock", f"--key-file={key}", f"--pid-file={work}/munged.pid",
              f"--log-file={work}/munged.log", f"--seed-file={work}/munged.seed"]  # fmt: skip
    for argv in (munged, ["slurmctld", "-f", str(conf), "-i"], ["slurmd", "-f", str(conf)]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)
        if done.returncode != 0:
            pytest.skip(f"{argv[0]} does not start here: {(done.stderr or done.stdout).strip()[-200:]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env, check=False)
        if state.stdout.strip() == "idle":
            return env
        time.sleep(0.5)
    log = (
        (work / "slurmd.log").read_text(errors="replace").strip().splitlines()[-1:]
        if (work / "slurmd.log").exists()
        else []
    )
    pytest.skip(f"the Slurm node did not become idle within 30 s ({' '.join(log)[-200:]})")


def _bisect(tmp_path: Path, tag: str, *options: str, env=()):
    (tmp_path / "target.py").write_text(TARGET)
    return [
        sys.executable, "-m", "shakeout", "bisect", "--format", "json", "--launcher", "srun -N1 --",
        "--launcher-grace", "5", *options, "--", f"TRIAL_TAG={tag}", "BISECT_PATTERN=PATTERN", *env,
        sys.executable, str(tmp_path / "target.py"),
    ]  # fmt: skip


def test_srun_runs_the_trials_two_at_a_time(tmp_path, slurm_env):
    tag = uuid.uuid4().hex
    # No background child: with proctrack/linuxproc (this configuration; no cgroups here)
    # Slurm does not kill what a finished task left behind (proctrack/cgroup does).
    argv = _bisect(tmp_path, tag, "-j", "2", env=["NO_BACKGROUND=1"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=slurm_env, check=False)
    assert done.returncode == 0, done.stderr
    (change_set,) = json.loads(done.stdout)["change_sets"]
    assert change_set["ids"] == ["0x0000000000000003"]
    left = _wait_gone(tag, 5.0)
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in left]


def test_kill_9_of_shakeout_leaves_no_slurm_step_running(tmp_path, slurm_env):
    tag = uuid.uuid4().hex
    proc = subprocess.Popen(_bisect(tmp_path, tag, "-j", "2", env=["HANG=1"]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=slurm_env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _target_runs(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _target_runs(tag), "no trial started under Slurm"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _wait_gone(tag, 15.0) == []
    queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=slurm_env, check=False)
    assert queue.stdout.strip() == ""


def _target_runs(tag: str) -> bool:
    for pid in _tagged(tag):
        try:
            if (
                b"target.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
                and b"srun" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            ):
                return True
        except OSError:
            continue
    return False

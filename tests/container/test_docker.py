"""deploy/Dockerfile for real, under Docker's defaults and under the DaemonSet's privileges.

The test starts a Docker daemon of its own (Debian's docker.io, as root), with its data,
socket and state in a temporary directory, and no bridge, iptables rules or IP forwarding,
so nothing of it outlives the test and a daemon the machine already runs is not touched
(a containerd the machine runs is shared, in a namespace of the test's own). Every Docker
step draws on one budget (BUDGET_S), and SIGTERM tears the daemon down too. No registry is
reached: the base image is made from Debian packages (debootstrap --variant=minbase, then
docker import), and the image is built from this tree with deploy/Dockerfile. pip inside
the build gets the CA bundle the host's pip uses (PIP_CERT), for a TLS-inspecting proxy.

What is compared: `check` in a container with Docker's default seccomp profile, default
capabilities and default limits against `check` on this host, probe by probe. The
differences allowed are the ones we know and explain (EXPECTED_DIFFERENCES); each must
say its cause in its reason. Then the same with /dev/userfaultfd passed in, the
DaemonSet's securityContext and limits translated to docker run flags, and selftest.

Slow (a few minutes: debootstrap, two apt-get runs and pip inside the build), so it is out
of the default suite: `pytest -m container`. CI runs it. Skips, saying why, without root,
dockerd, the docker client or debootstrap, or when the daemon cannot start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml

from tests.functional.test_ansible import _copy_source

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
# All Docker work of the module shares this budget, so that a hung step fails the test with
# time left to clean up, well inside .ci/run's 20-minute limit on the whole step.
BUDGET_S = 900
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
BASE = "shakeout-test-base:minbase"
IMAGE = "shakeout:test"
MIRROR = os.environ.get("SHAKEOUT_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# Probe results that differ under Docker's defaults, and the words their reason must hold.
EXPECTED_DIFFERENCES = {
    # The default seccomp profile refuses userfaultfd (and CAP_SYS_PTRACE is not granted):
    # plain faults rarely sleep, so too few exposures for a pass in the default budget.
    "signal-vector": "allow userfaultfd",
    # process_vm_readv is refused without CAP_SYS_PTRACE: no kill can be aimed.
    "robust-futex-glibc": "process_vm_readv",
}


class Docker:
    """A private Docker daemon and a client bound to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}", DOCKER_BUILDKIT="0")
        self.daemon: Optional[subprocess.Popen[bytes]] = None
        self.deadline = time.monotonic() + BUDGET_S
        self.ip_forward = IP_FORWARD.read_text() if IP_FORWARD.exists() else None

    def start(self) -> Optional[str]:
        """None when the daemon answers, else why it does not."""
        args = [
            "dockerd",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host=unix://{self.socket}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",  # else the bridge driver turns the host's net.ipv4.ip_forward on
            "--containerd-namespace=shakeout-test",
            "--containerd-plugins-namespace=shakeout-test-plugins",
        ]
        with open(self.root / "dockerd.log", "wb") as log:  # the daemon keeps its own copy of the fd
            self.daemon = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                return "dockerd exited: " + self._log_tail()
            try:
                if self.socket.exists() and self.run("version", timeout=20).returncode == 0:
                    return None
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)
        return "dockerd did not answer in 60 s: " + self._log_tail()

    def _log_tail(self) -> str:
        lines = (self.root / "dockerd.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no log)"

    def left(self, timeout: float) -> float:
        """`timeout`, or less: what is left of the module's budget (a failure when none is)."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the container tests' {BUDGET_S} s budget is spent")
        return min(timeout, remaining)

    def run(self, *args: str, timeout: float = 300, stdin: Any = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.left(timeout),
            stdin=stdin,
            check=False,
        )

    def _cleanup_call(self, *args: str, timeout: float) -> str:
        """A docker call outside the budget (cleaning up after it is spent must still work)."""
        done = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        return done.stdout

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # a wedged daemon: SIGTERM it anyway
                listed = self._cleanup_call("ps", "-aq", timeout=30).split()
                if listed:
                    self._cleanup_call("rm", "-f", *listed, timeout=60)
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait(timeout=10)
        if self.ip_forward is not None and IP_FORWARD.read_text() != self.ip_forward:
            IP_FORWARD.write_text(self.ip_forward)  # the host's setting, whatever the daemon did
        # Whatever the daemon left mounted below its root goes before the directory does.
        for mount in reversed(_mounts_below(self.root)):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _mounts_below(root: Path) -> List[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == str(root) or point.startswith(str(root) + "/"):
            found.append(point)
    return found


def _why_not_here() -> Optional[str]:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "the test starts its own Docker daemon: Linux and root only"
    for tool, package in (("dockerd", "docker.io"), ("docker", "docker.io"), ("debootstrap", "debootstrap")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install {package})"
    return None


def _suite() -> str:
    """The host's Debian release when it is one, else bookworm (what the Dockerfile was tested on)."""
    try:
        fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    except OSError:
        return "bookworm"
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    return codename if fields.get("ID", "").strip('"') == "debian" and codename else "bookworm"


def _ca_bundle() -> Optional[Path]:
    """The CA bundle the host's pip trusts (its PIP_CERT, its config's cert, or the system's)."""
    candidates = [os.environ.get("PIP_CERT", "")]
    got = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"], capture_output=True, text=True, check=False
    )
    candidates.append(got.stdout.strip() if got.returncode == 0 else "")
    paths = ssl.get_default_verify_paths()
    candidates += [paths.cafile or "", paths.openssl_cafile or ""]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    why = _why_not_here()
    if why:
        pytest.skip(why)
    engine = Docker(Path(tempfile.mkdtemp(prefix="shakeout-docker-")))
    # SIGTERM (CI's time limit) becomes an interrupt: pytest then still tears this fixture down.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        why = engine.start()
        if why:
            pytest.skip(why)
        yield engine
    finally:
        engine.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def image(docker: Docker) -> str:
    rootfs = docker.root / "rootfs"
    started = time.monotonic()
    made = subprocess.run(
        ["debootstrap", "--variant=minbase", _suite(), str(rootfs), MIRROR],
        capture_output=True,
        text=True,
        timeout=docker.left(600),
        check=False,
    )
    assert made.returncode == 0, "debootstrap failed: " + made.stdout[-2000:] + made.stderr[-2000:]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        imported = docker.run("import", "-", BASE, stdin=tar.stdout, timeout=300)
    finally:
        tar.stdout.close()
        tar.kill()  # done or not: a tar whose reader is gone must not block
        tar.wait(timeout=60)
    assert imported.returncode == 0, imported.stderr
    shutil.rmtree(rootfs)

    context = docker.root / "context"
    context.mkdir()
    _copy_source(context)
    (context / "deploy").mkdir()
    shutil.copy2(REPO / "deploy" / "Dockerfile", context / "deploy" / "Dockerfile")
    build_args = ["--build-arg", f"BASE={BASE}"]
    bundle = _ca_bundle()
    if bundle is not None:
        shutil.copy2(bundle, context / "build-ca.pem")
        build_args += ["--build-arg", "PIP_CERT=/src/build-ca.pem"]
    if os.environ.get("PIP_INDEX_URL"):
        build_args += ["--build-arg", "PIP_INDEX_URL=" + os.environ["PIP_INDEX_URL"]]
    built = docker.run(
        "build", "--network", "host", *build_args, "-f", str(context / "deploy" / "Dockerfile"), "-t", IMAGE,
        str(context), timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, "docker build failed: " + (built.stdout + built.stderr)[-3000:]
    print(f"image built in {time.monotonic() - started:.0f} s")
    return IMAGE


@pytest.fixture(scope="module")
def host_report() -> Dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "shakeout", "check", "--quiet", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1, 3), done.stderr
    report: Dict[str, Any] = json.loads(done.stdout)
    return report


def _report(done: subprocess.CompletedProcess[str]) -> Dict[str, Any]:
    assert done.returncode in (0, 1, 3), f"exit {done.returncode}: {done.stderr[-2000:]}"
    report: Dict[str, Any] = json.loads(done.stdout)
    return report


def _probes(report: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {p["id"]: p for p in report["probes"]}


def test_the_runtime_image_has_no_compiler_and_no_build_leftovers(docker: Docker, image: str) -> None:
    looked = docker.run(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
        "command -v gcc cc; test -e /src && echo /src; ls /opt/shakeout/lib/python3*/site-packages/shakeout/_bin",
        timeout=120,
    )  # fmt: skip
    assert looked.returncode == 0, looked.stderr
    lines = looked.stdout.split()
    assert "/src" not in lines and not any(line.endswith("gcc") or line.endswith("/cc") for line in lines)
    assert "signal_vector" in lines and "cpu_integrity" in lines  # the probes built in the first stage


def test_check_under_dockers_defaults_differs_from_the_host_only_where_explained(
    docker: Docker, image: str, host_report: Dict[str, Any]
) -> None:
    inside = _report(docker.run("run", "--rm", "--network", "none", image, "check", "--quiet", "--format", "json"))
    host, container = _probes(host_report), _probes(inside)
    assert set(container) == set(host)
    differences = {}
    for probe_id, result in container.items():
        if result["verdict"] != host[probe_id]["verdict"]:
            differences[probe_id] = f"{host[probe_id]['verdict']} on the host, {result['verdict']} inside"
    print("differences under Docker's defaults:", json.dumps(differences, indent=1))
    assert set(differences) <= set(EXPECTED_DIFFERENCES), differences
    for probe_id in differences:
        assert EXPECTED_DIFFERENCES[probe_id] in container[probe_id]["reason"], container[probe_id]["reason"]
    assert all(p["verdict"] in ("pass", "fail", "inconclusive", "skip") for p in container.values())
    # Without CAP_IPC_LOCK the memory test runs unlocked, and says so.
    assert container["memtest"]["evidence"].get("locked") is False


def test_dev_userfaultfd_gives_signal_vector_its_sleeping_faults_without_any_privilege(
    docker: Docker, image: str
) -> None:
    if not Path("/dev/userfaultfd").exists():
        pytest.skip("this kernel has no /dev/userfaultfd (Linux 6.1+)")
    inside = _report(
        docker.run(
            "run", "--rm", "--network", "none", "--device", "/dev/userfaultfd", image,
            "check", "--quiet", "--format", "json", "--only", "linux-signal-vector",
        )
    )  # fmt: skip
    probe = _probes(inside)["signal-vector"]
    assert probe["evidence"]["fault_in"] == "userfaultfd", probe["evidence"].get("fault_in_note")
    assert probe["evidence"]["userfaultfd_from"] == "/dev/userfaultfd"
    assert probe["verdict"] == "pass" and probe["exposures"] >= 1000, probe["reason"]


def _daemonset_flags(state: Path, textfile: Path) -> List[str]:
    """deploy/kubernetes/daemonset.yaml's securityContext, limits and volumes as docker run flags."""
    manifest = yaml.safe_load((REPO / "deploy" / "kubernetes" / "daemonset.yaml").read_text())
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    security = container["securityContext"]
    assert security["privileged"] is False and security["seccompProfile"]["type"] == "RuntimeDefault"
    flags = ["--network", "none"]
    flags += [f"--cap-drop={c}" for c in security["capabilities"].get("drop", [])]
    flags += [f"--cap-add={c}" for c in security["capabilities"].get("add", [])]
    if security.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    limits = container["resources"]["limits"]
    flags += ["--cpus", str(limits["cpu"]), "--memory", str(limits["memory"]).replace("Gi", "g").replace("Mi", "m")]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    flags += ["-v", f"{state}:{mounts['state']}", "-v", f"{textfile}:{mounts['textfile']}", "--tmpfs", mounts["tmp"]]
    return flags


def _daemonset_check_command() -> List[str]:
    manifest = yaml.safe_load((REPO / "deploy" / "kubernetes" / "daemonset.yaml").read_text())
    loop = " ".join(manifest["spec"]["template"]["spec"]["containers"][0]["args"])
    found = re.search(r"shakeout (check [^;]*);", loop)
    assert found, loop
    return found.group(1).split()


def test_the_daemonsets_least_privilege_runs_every_probe_and_writes_the_textfile(
    docker: Docker, image: str, tmp_path: Path
) -> None:
    state, textfile = tmp_path / "state", tmp_path / "textfile"
    state.mkdir()
    textfile.mkdir()
    flags = _daemonset_flags(state, textfile)
    ran = docker.run("run", "--rm", *flags, image, *_daemonset_check_command(), "--quiet")
    assert ran.returncode in (0, 1, 3), ran.stderr[-2000:]
    report = json.loads((state / "report.json").read_text())
    probes = _probes(report)
    assert all(p["verdict"] in ("pass", "fail", "inconclusive", "skip") for p in probes.values())
    assert probes["memtest"]["evidence"]["locked"] is True  # CAP_IPC_LOCK is what it is granted for
    prom = next(textfile.glob("*.prom")).read_text()
    assert "shakeout_bug_status{" in prom and "shakeout_info{" in prom
    status = docker.run("run", "--rm", *flags, image, "status", "--state-dir", "/var/lib/shakeout")
    assert len(status.stdout.strip().splitlines()) == 1, status.stdout
    # A bug the check left undecided is named in the line but does not make the node unknown.
    assert status.returncode == (1 if ran.returncode == 1 else 0), status.stdout
    undecided = [b["id"] for b in report["bugs"] if b["verdict"] == "unknown"]
    assert all(bug in status.stdout for bug in undecided), (undecided, status.stdout)


def test_selftest_under_dockers_defaults_says_which_injections_need_ptrace(docker: Docker, image: str) -> None:
    done = docker.run("run", "--rm", "--network", "none", image, "selftest", "--format", "json", timeout=600)
    report = json.loads(done.stdout)
    steps = report["selftest"]
    injected = [s for s in steps if not s["control"]]
    missed = [s for s in injected if s["ran"] and not s["caught"]]
    assert not missed, missed  # a refused injector is "could not inject", never a miss
    unclean = [s for s in steps if s["control"] and s["ran"] and not s["clean"]]
    assert not unclean, unclean
    not_injected = [s for s in injected if not s["ran"] and not s["not_applicable"]]
    for step in not_injected:
        assert "could not inject here" in step["reason"] and "CAP_SYS_PTRACE" in step["reason"], step
    print("not injected under Docker's defaults:", [f"{s['probe']} [{s['injection']}]" for s in not_injected])
    caught = [s for s in injected if s["caught"]]
    assert len(caught) >= 10  # the shim and ptrace injectors work there

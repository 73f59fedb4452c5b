"""The real cpu-integrity probe: clean runs on every CPU, seeded replay, bad arguments,
register flips injected with ptrace caught on the right CPU and family, no process left."""

import json
import os
import platform
import shutil
import signal
import subprocess
import time

import pytest

from shakeout.binaries import binary_path
from shakeout.host import read_host
from shakeout.injectors.register_flip import RegisterFlipper
from shakeout.nativebuild import CFLAGS
from shakeout.probes import get_probe
from shakeout.probes.cpu_integrity import FAMILY_FUNCTIONS
from shakeout.runner import ProbeRun, run_probe
from tests.functional.helpers import run_like_selftest, wait_until

HOST = read_host()
SPEC = get_probe("cpu-integrity")
BINARY = str(binary_path("cpu_integrity"))
NATIVE = os.path.join(os.path.dirname(BINARY), "..", "native")
pytestmark = [pytest.mark.functional, pytest.mark.skipif(HOST.os != "linux", reason="cpu-integrity needs Linux")]


def _probe(*args, timeout=60):
    proc = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=timeout, check=False)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]), lines


def _pids():
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/exe") == os.path.realpath(BINARY):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def test_clean_run_checks_every_family_on_every_cpu():
    result = run_probe(ProbeRun(SPEC, 2.0, None, label="t"), HOST, None)
    assert result.verdict == "pass", result.reason
    cpus = result.evidence["cpus"]
    assert sorted(c["cpu"] for c in cpus) == sorted(os.sched_getaffinity(0))
    for cpu in cpus:
        assert cpu["package"] >= 0 and cpu["core"] >= 0 and cpu["thread"] >= 0
        assert set(cpu["executions"]) == set(result.evidence["families"])
        assert all(n > 0 for n in cpu["executions"].values())
    assert result.exposures == sum(sum(c["executions"].values()) for c in cpus)
    assert result.bound is not None


def test_families_this_cpu_lacks_are_not_run_never_passed():
    code, result, _ = _probe("--duration", "0.5", "--kernels", "sha,intmul")
    assert code == 0
    with open("/proc/cpuinfo") as cpuinfo:
        flags = cpuinfo.read()
    if platform.machine() == "x86_64" and " sha_ni" in flags:
        assert "sha" in result["evidence"]["families"]
    else:
        assert "sha" in result["evidence"]["not_run"]
        assert "sha" not in result["evidence"]["cpus"][0]["executions"]


def test_the_seed_replays_the_same_golden_answers():
    digests = [_probe("--duration", "0.3", "--seed", seed, "--kernels", "fma,lz")[1] for seed in ("9", "9", "10")]
    first, again, other = (d["evidence"]["golden_digest"] for d in digests)
    assert first == again != other
    assert digests[0]["evidence"]["seed"] == 9


def test_per_cpu_progress_is_streamed():
    _, _, lines = _probe("--duration", "1.2", "--progress-interval", "0.3")
    status = [json.loads(line) for line in lines if '"event":"status"' in line]
    assert status, lines[:3]
    assert {c["cpu"] for c in status[-1]["cpus"]} == set(os.sched_getaffinity(0))
    assert all(c["executions"] > 0 for c in status[-1]["cpus"])


@pytest.mark.parametrize(
    "args, words",
    [
        (("--kernels", "fma,nope"), "--kernels"),
        (("--cpus", ""), "--cpus"),
        (("--cpus", "1023"), "CPU 1023 is not online"),
        (("--cpus", "2-1"), "--cpus"),
        (("--seed", "\u0663"), "--seed"),
        (("--seed", "abc"), "--seed"),
    ],
)
def test_bad_arguments_are_broken_with_one_line(args, words):
    code, result, lines = _probe("--duration", "1", *args)
    assert code == 2 and result["verdict"] == "error"
    assert words in result["reason"] and len(lines) == 1


def test_one_selected_cpu_is_the_only_one_tested():
    cpu = max(os.sched_getaffinity(0))
    code, result, _ = _probe("--duration", "0.5", "--cpus", str(cpu), "--kernels", "intmul")
    assert code == 0
    assert [c["cpu"] for c in result["evidence"]["cpus"]] == [cpu]


needs_x86 = pytest.mark.skipif(RegisterFlipper.available() is not None, reason="the register flipper is x86-64 only")


@needs_x86
@pytest.mark.parametrize("injection", [i.name for i in SPEC.injections])
def test_injected_register_flip_is_attributed_to_its_cpu_and_family(injection):
    spec_injection = next(i for i in SPEC.injections if i.name == injection)
    result, problem = run_like_selftest(SPEC, HOST, spec_injection)
    assert problem is None, (problem, result.evidence.get("injector"))
    sample = result.evidence["samples"][0]
    assert sample["cpu"] == max(os.sched_getaffinity(0))
    assert sample["family"] == spec_injection.options["kernels"]
    assert result.evidence["injector"]["detected_after_s"] < 1.0
    caught = result.evidence["injector"]["caught_flip"]  # inside the family's code, in a register it reads next
    assert caught["at"].startswith(FAMILY_FUNCTIONS[sample["family"]]), caught
    assert caught["read_by"]  # the instruction that reads it (it may name a part: dl for rdx, zmm3 for xmm3)


@needs_x86
def test_a_fault_signal_in_a_kernel_is_a_failure_of_that_cpu():
    """A flipped pointer register makes the worker fault: reported for its CPU and family, the
    other workers' accounting goes on to the end of the run."""
    flipper = RegisterFlipper("general", 3)
    proc = subprocess.Popen(
        [BINARY, "--duration", "2", "--kernels", "crc32,memcpy", "--announce", "1", "--seed", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    result = None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "result":
            result = event
        else:
            flipper.on_event(event)
    proc.wait()
    flipper.stop()
    assert result["verdict"] == "fail" and proc.returncode == 1
    first = result["evidence"]["samples"][0]
    assert first["cpu"] == flipper.cpu
    others = [c for c in result["evidence"]["cpus"] if c["cpu"] != flipper.cpu]
    assert all(c["failures"] == 0 and sum(c["executions"].values()) > 0 for c in others)


def test_interrupted_probe_leaves_no_process():
    before = set(_pids())
    proc = subprocess.Popen([BINARY, "--duration", "30"], stdout=subprocess.DEVNULL, start_new_session=True)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    assert wait_until(lambda: not set(_pids()) - before, 5)


@pytest.mark.skipif(not shutil.which("aarch64-linux-gnu-gcc"), reason="needs aarch64-linux-gnu-gcc")
def test_builds_for_aarch64_with_the_portable_families(tmp_path):
    native = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "src", "shakeout", "native"))
    out = tmp_path / "cpu_integrity"
    subprocess.run(
        [
            "aarch64-linux-gnu-gcc",
            *CFLAGS,
            "-static",
            "-pthread",
            "-I",
            native,
            os.path.join(native, "probe.c"),
            os.path.join(native, "cpu_integrity.c"),
            "-o",
            str(out),
        ],
        check=True,
    )
    qemu = shutil.which("qemu-aarch64")
    if not qemu:
        pytest.skip("needs qemu-aarch64 to run it")
    proc = subprocess.run(
        [qemu, str(out), "--duration", "1.5", "--cpus", "0"], capture_output=True, text=True, timeout=120, check=False
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, result
    assert set(result["evidence"]["not_run"]) == {"aes", "sha", "clmul"}
    assert "fma" in result["evidence"]["families"]


def test_the_number_of_distinct_inputs_grows_with_the_run_or_is_set():
    """A long screening must not repeat 32 inputs: by default 8 a second (32 to 4096), or --items."""
    _, short, _ = _probe("--duration", "0.5", "--kernels", "crc32")
    assert short["evidence"]["items_per_family"] == 32
    _, chosen, _ = _probe("--duration", "0.5", "--kernels", "crc32", "--items", "300", "--seed", "5")
    assert chosen["evidence"]["items_per_family"] == 300 and chosen["verdict"] == "pass"
    _, again, _ = _probe("--duration", "0.5", "--kernels", "crc32", "--items", "300", "--seed", "5")
    assert again["evidence"]["golden_digest"] == chosen["evidence"]["golden_digest"]  # replayable
    _, fewer, _ = _probe("--duration", "0.5", "--kernels", "crc32", "--items", "299", "--seed", "5")
    assert fewer["evidence"]["golden_digest"] != chosen["evidence"]["golden_digest"]
    # More than the golden answers' time budget allows (0.5 s a CPU here): cut short, and said.
    started = time.monotonic()
    _, cut, _ = _probe("--duration", "0.5", "--kernels", "memcpy", "--items", "16384")
    assert time.monotonic() - started < 3.0
    assert 32 <= cut["evidence"]["items_per_family"] < cut["evidence"]["items_requested"] == 16384

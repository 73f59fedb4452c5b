"""Robust futexes: what the kernel does when a mutex owner dies in the middle of unlocking.

Three probes share native/robust_futex.c, one per mode:
- robust-futex-wakeup: the owner dies between releasing the word and FUTEX_WAKE, with
  list_op_pending set; the kernel must wake the waiter (fixed in the 5.5 cycle).
- robust-futex-reuse: the owner dies after releasing, while the memory is already reused
  and holds a value equal to its TID; the kernel rewrites it (the legacy protocol's
  documented hazard, glibc bug 14485).
- robust-futex-glibc: glibc's real robust process-shared mutexes with owners killed at
  random; hangs, EOWNERDEAD recoveries and neighbour corruption are counted. Each owner
  is stopped before it is killed, so where the kill landed is read, not guessed: only
  kills inside the unlock window are exposures.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Optional

from shakeout.probespec import Injection, Needs, ProbeSpec
from shakeout.results import ProbeResult

FUTEX_WAITERS = 0x80000000
FUTEX_OWNER_DIED = 0x40000000
FUTEX_TID_MASK = 0x3FFFFFFF


def kernel_rewrite(before: int) -> int:
    """What handle_futex_death() stores into a word whose TID bits name the dead owner."""
    return (before & FUTEX_WAITERS) | FUTEX_OWNER_DIED


def _api_note(evidence: Dict[str, Any]) -> str:
    api = evidence.get("kernel_robust_unlock_api")
    if api is None:
        return "whether the kernel has the robust-unlock API is unknown (no vDSO)"
    return "the kernel {} the 2026 robust-unlock API (vDSO __vdso_futex_robust_list64_try_unlock)".format(
        "offers" if api else "does not offer"
    )


def _sample(result: ProbeResult) -> Dict[str, Any]:
    samples = result.evidence.get("samples") or [{}]
    sample: Dict[str, Any] = samples[0]
    return sample


def interpret(result: ProbeResult) -> ProbeResult:
    unreadable = result.evidence.get("owner_read_error")
    if result.verdict == "pass" and unreadable and not result.exposures:  # settle() makes it inconclusive
        cause = (
            f"reading a stopped owner's memory (process_vm_readv) failed ({unreadable}), so no kill could be "
            "aimed into the window: running longer will not help. In a container this needs CAP_SYS_PTRACE "
            "(docker run --cap-add SYS_PTRACE; Docker's default seccomp profile allows the call only with it)"
        )
        return replace(result, evidence=dict(result.evidence, few_exposures_because=cause))
    if result.verdict != "fail":
        return result
    ev = result.evidence
    mode = ev.get("mode")
    if mode == "reuse":
        s = _sample(result)
        diagnosis = (
            "the dead owner's TID {} was in reused memory; the kernel rewrote it to {} (bits {} changed); "
            "a neighbouring word stayed {}; {}".format(
                s.get("before"), s.get("after"), s.get("changed_bits"), s.get("control_after"), _api_note(ev)
            )
        )
    elif mode == "wakeup":
        s = _sample(result)
        diagnosis = (
            "a waiter slept {:.3f} s on word {} after its owner (tid {}) died mid-unlock; the word is now {}".format(
                float(s.get("waited_s", 0)), s.get("before"), s.get("owner_tid"), s.get("after")
            )
        )
    else:
        diagnosis = (
            "{} hang(s) on a free mutex (last word {}), neighbours intact: {}, "
            "after {} owners were killed ({} in the unlock window)"
        ).format(
            ev.get("hangs"),
            ev.get("hang_mutex_word", "n/a"),
            ev.get("neighbours_intact"),
            ev.get("owners_killed"),
            ev.get("kills_in_unlock_window"),
        )
    return replace(result, reason=diagnosis, evidence=dict(ev, diagnosis=diagnosis))


def _verify_never_woken(result: ProbeResult) -> Optional[str]:
    s = _sample(result)
    if result.evidence.get("never_woken", 0) < 1 or s.get("what") != "waiter never woken":
        return "the probe did not report a waiter that was never woken"
    if float(s.get("waited_s", 0)) < 0.9 * int(result.evidence.get("timeout_ms", 0)) / 1000:
        return "the waiter returned before its timeout ({} s)".format(s.get("waited_s"))
    return None


def _verify_rewrite(result: ProbeResult) -> Optional[str]:
    s = _sample(result)
    if not s:
        return "no sample"
    before, after = int(s["before"], 16), int(s["after"], 16)
    if before & FUTEX_TID_MASK != int(s["owner_tid"]):
        return "the reused value {} is not the owner's TID {}".format(s["before"], s["owner_tid"])
    if after != kernel_rewrite(before):
        return "rewritten to {}, expected {:#010x}".format(s["after"], kernel_rewrite(before))
    if s.get("control_before") != s.get("control_after"):
        return "the control word changed too"
    return None


def _verify_neighbours(result: ProbeResult) -> Optional[str]:
    if result.evidence.get("check") != "neighbours":
        return "the check that fired is {!r}, not the neighbour check".format(result.evidence.get("check"))
    if result.evidence.get("neighbours_intact") is not False:
        return "the probe did not report the changed words around the mutex"
    neighbours = result.evidence.get("neighbours", [])
    if "0x0000000000000000" not in neighbours:
        return f"the injected zero does not appear among the neighbour words {neighbours}"
    return None


def _verify_hang(result: ProbeResult) -> Optional[str]:
    ev = result.evidence
    if ev.get("check") != "hang":
        return "the check that fired is {!r}, not the hang check".format(ev.get("check"))
    if int(ev.get("hangs", 0)) < 1 or ev.get("neighbours_intact") is not True:
        return "no hang on intact neighbours: hangs {}, neighbours intact {}".format(
            ev.get("hangs"), ev.get("neighbours_intact")
        )
    if int(str(ev.get("hang_mutex_word", "0xffffffff")), 16) & FUTEX_TID_MASK:
        return "the mutex was held when the waiter timed out ({})".format(ev.get("hang_mutex_word"))
    if ev.get("wake") is not False:
        return "the owners' wakes were not withheld"
    return None


LINUX = Needs(os=("linux",))

PROBES = (
    ProbeSpec(
        id="robust-futex-wakeup",
        binary="robust_futex",
        summary="An owner dies between releasing a robust futex and FUTEX_WAKE; the waiter must be woken.",
        needs=LINUX,
        default_duration_s=5.0,
        exposure=(
            "a round in which the owner died between releasing the word and FUTEX_WAKE while the waiter "
            "was asleep in FUTEX_WAIT (read from /proc/<pid>/task/<tid>/syscall before the owner releases)"
        ),
        min_exposures=30,
        counts_for=("robust-futex-lost-wakeup",),
        fixed_options={"mode": "wakeup"},
        offers=("timeout-ms", "pending"),
        injections=(
            Injection(
                name="no-pending",
                description="the owner dies without list_op_pending, so the kernel cannot know to wake: "
                "the waiter must be reported as never woken",
                options={"pending": "off"},
                duration_s=3.0,
                verify=_verify_never_woken,
            ),
        ),
        interpret=interpret,
    ),
    ProbeSpec(
        id="robust-futex-reuse",
        binary="robust_futex",
        summary="An owner dies after releasing a robust futex whose memory was reused; the kernel must not write it.",
        needs=LINUX,
        default_duration_s=2.0,
        exposure="an owner that died after releasing a robust futex whose word was then reused by the probe",
        counts_for=("robust-futex-reuse",),
        fixed_options={"mode": "reuse"},
        offers=("api-symbol",),
        selftest_control=False,
        injections=(
            Injection(
                name="kernel",
                description="nothing injected: kernels with the legacy protocol rewrite reused memory themselves; "
                "the exact value must be (old & FUTEX_WAITERS) | FUTEX_OWNER_DIED",
                duration_s=2.0,
                verify=_verify_rewrite,
            ),
        ),
        interpret=interpret,
    ),
    ProbeSpec(
        id="robust-futex-glibc",
        binary="robust_futex",
        summary="glibc robust process-shared mutexes with owners SIGKILLed at random: hangs, recoveries, neighbours.",
        needs=LINUX,
        default_duration_s=5.0,
        exposure=(
            "an owner SIGKILLed inside glibc's pthread_mutex_unlock after it had released the word and before "
            "it cleared list_op_pending (the window of ca16d5bee598). Measured on the owner stopped with SIGSTOP "
            "just before the kill: its published phase, the futex word, and list_op_pending read from its memory. "
            "Not known: whether glibc's FUTEX_WAKE had already been made (kills_in_window_before_wake counts those "
            "stopped before it with a waiter asleep on the word, read from /proc)"
        ),
        min_exposures=30,
        counts_for=("robust-futex-lost-wakeup",),
        fixed_options={"mode": "glibc"},
        offers=("timeout-ms",),
        injections=(
            Injection(
                name="withheld-wake",
                description="a seccomp filter makes the owners' FUTEX_WAKE on the mutex word wake nobody: "
                "a waiter sleeps on a free mutex and the hang check must see it",
                options={"wake": "off", "timeout-ms": "200"},
                duration_s=3.0,
                verify=_verify_hang,
            ),
            Injection(
                name="neighbours",
                description="another process overwrites the words after the mutex (process_vm_writev): "
                "the neighbour check must see it",
                write_value=0,
                duration_s=3.0,
                verify=_verify_neighbours,
            ),
        ),
        interpret=interpret,
    ),
)

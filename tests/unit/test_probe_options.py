"""The probe skeleton's option table: probe.c's parser through the real binaries, the
`--describe` table shakeout reads instead of restating ranges, and Python's validation
agreeing with C's value for value."""

import json
import subprocess
import sys
import time

import pytest

from shakeout.binaries import binary_path
from shakeout.errors import ShakeoutError, UsageError
from shakeout.probeoptions import KINDS, ProbeOption, option_table, parse_table
from shakeout.probes import all_probes

CONVERTED = ("signal_vector", "fork_cow", "robust_futex", "vdso_stack", "memtest")
COMMON = ["duration", "workers", "keep-going", "progress-interval"]
ALL_BINARIES = sorted({spec.binary for spec in all_probes().values()})


def run_binary(name, *args, cwd=None, timeout=60):
    proc = subprocess.run(
        [str(binary_path(name)), *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )
    lines = proc.stdout.splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else None, lines


def describe(name):
    code, doc, lines = run_binary(name, "--describe")
    assert code == 0 and len(lines) == 1, lines
    return doc


@pytest.mark.parametrize("name", ALL_BINARIES)
def test_describe_is_one_json_object_with_the_common_options_first(name):
    doc = describe(name)
    assert doc["probe"] == name and doc["summary"]
    rows = doc["options"]
    assert [r["name"] for r in rows[:4]] == COMMON
    assert [r["common"] for r in rows] == [True] * 4 + [False] * (len(rows) - 4)
    assert len({r["name"] for r in rows}) == len(rows)
    for row in rows:
        assert row["kind"] in KINDS and row["help"], row
        assert row["default"] is None or isinstance(row["default"], str)
        if row["kind"] in ("int", "seconds", "text"):
            assert row["min"] <= row["max"], row
        if row["kind"] in ("choice", "list"):
            assert row["choices"], row
    duration = rows[0]
    assert duration["kind"] == "seconds" and duration["required"] and duration["default"] is None


def test_describe_as_an_options_value_is_that_value(tmp_path):
    """--describe is answered where an option may stand; as a value it is text like any other."""
    code, result, _ = run_binary("robust_futex", "--mode", "reuse", "--duration", "0.05", "--api-symbol", "--describe")
    assert result["event"] == "result" and result["evidence"]["api_symbol"] == "--describe" and code in (0, 1)


@pytest.mark.parametrize("name", ALL_BINARIES)
def test_every_default_in_the_table_is_a_value_the_table_accepts(name):
    for option in parse_table(json.dumps(describe(name))).options:
        if option.default is not None:
            assert option.accepts(option.default), option


@pytest.mark.parametrize("name", CONVERTED)
def test_missing_duration_is_broken_with_one_line_naming_the_range(name, tmp_path):
    code, result, lines = run_binary(name, cwd=tmp_path)
    assert code == 2 and len(lines) == 1
    assert result["verdict"] == "error"
    assert result["reason"] == (
        "missing --duration (how long to run, in seconds; required: seconds, more than 0 and at most 604800)"
    )


@pytest.mark.parametrize(
    "name, args, reason",
    [
        ("fork_cow", ["--max-children", "0"], 'bad argument --max-children "0": an integer from 1 to 4096'),
        ("fork_cow", ["--writer-spin", "²"], 'bad argument --writer-spin "²": an integer from 0 to 100000000'),
        ("fork_cow", ["--mode", "TLB"], 'bad argument --mode "TLB": one of stale-read, tlb'),
        ("signal_vector", ["--regs", "avx9"], 'bad argument --regs "avx9": one of auto, xmm, ymm, zmm'),
        ("signal_vector", ["--interval-us", "١٠"], 'bad argument --interval-us "١٠": an integer from 0 to 1000000'),
        ("robust_futex", ["--timeout-ms", "9"], 'bad argument --timeout-ms "9": an integer from 10 to 60000'),
        ("robust_futex", ["--api-symbol", ""], 'bad argument --api-symbol "": text of 1 to 128 bytes'),
        ("vdso_stack", ["--max-bytes", "0x100"], 'bad argument --max-bytes "0x100": an integer from 256 to 16777216'),
        (
            "memtest",
            ["--tests", "random,,address"],
            'bad argument --tests "random,,address": a comma-separated list of address, walking, mov-inv, '
            "mov-inv-rand, block-move, random, bit-fade",
        ),
        ("memtest", ["--workers", "0"], 'bad argument --workers "0": an integer from 1 to 1024'),
        ("memtest", ["--progress-interval", "inf"], 'bad argument --progress-interval "inf": seconds, more than 0 '
         "and at most 604800"),
        ("memtest", ["--bogus", "1"], 'unknown option "--bogus" (--describe lists the options)'),
        ("memtest", ["--seed"], 'no value after "--seed" (--describe lists the options)'),
    ],
)  # fmt: skip
def test_a_bad_argument_is_broken_with_one_line_naming_range_or_choices(name, args, reason, tmp_path):
    code, result, lines = run_binary(name, "--duration", "1", *args, cwd=tmp_path)
    assert (code, len(lines), result["verdict"], result["reason"]) == (2, 1, "error", reason)


# Values at and around every kind's edges, including what str.isdigit() and float() accept and C does not.
PROBING_VALUES = [
    "", "0", "9", "10", "256", "4095", "4096", "60000", "60001", "16777216", "16777217", "17592186044416",
    "17592186044417", "-0", "-1", "+10", " 10", "10 ", "1_000", "0x10", "1e3", "²", "١٠", "１０",
    "999999999999999999", "9999999999999999999", "on", "off", "x" * 128, "x" * 129, "é" * 64, "é" * 65,
]  # fmt: skip
SAFE_SIZE_BYTES = 1 << 26  # a memtest size C accepts beyond this would really be allocated
FAST_RUNS = {  # each option of a fast binary run, and the arguments that make the run end at once
    "robust_futex": (["timeout-ms", "pending", "api-symbol"], ["--mode", "reuse", "--duration", "0.05"]),
    "memtest": (["size", "passes", "fade-wait", "max-error-lines", "seed", "allow-unlocked"], None),
}


@pytest.mark.parametrize("name", sorted(FAST_RUNS))
def test_python_accepts_exactly_what_the_binary_accepts(name, tmp_path):
    """Before the table, Python restated ranges and disagreed (memtest size=4096: C took it,
    Python refused it; robust-futex api-symbol: Python refused what C takes)."""
    names, base = FAST_RUNS[name]
    table = option_table(name)
    disagreements = []
    for option_name in names:
        option = table.option(option_name)
        for value in PROBING_VALUES:
            if option_name == "size" and option.accepts(value) and int(value) > SAFE_SIZE_BYTES:
                continue
            run_args = base or ["--duration", "0.05", "--size", "4096", "--workers", "1", "--allow-unlocked", "1"]
            code, result, _ = run_binary(name, *run_args, f"--{option_name}", value, cwd=tmp_path)
            c_accepts = not (code == 2 and result["reason"].startswith(f"bad argument --{option_name} "))
            if c_accepts != option.accepts(value):
                disagreements.append((option_name, value, c_accepts))
    assert not disagreements


def test_seconds_are_validated_as_c_does():
    duration = option_table("fork_cow").option("duration")
    assert [v for v in ["1", "0.5", "1e-07", "604800", "10.0"] if not duration.accepts(v)] == []
    rejected = ["0", "-1", "nan", "inf", "1e9", "604801", " 5", "0x10", "²", "1_0", ""]
    assert [v for v in rejected if duration.accepts(v)] == []


@pytest.mark.parametrize("spec", list(all_probes().values()), ids=lambda s: s.id)
def test_every_option_a_spec_names_is_in_its_binarys_table(spec):
    table = option_table(spec.binary)
    own = {o.name for o in table.own()}
    named = set(spec.fixed_options)
    for injection in spec.injections:
        named |= set(injection.options)
    named |= {o.name for o in spec.user_options()}
    named |= set(spec.offers or ()) | set(spec.checks)
    assert named <= own, f"{spec.id} names options its binary does not have: {sorted(named - own)}"
    assert not [o.name for o in spec.user_options() if o.internal]  # never offered to users


def test_no_probe_restates_an_option_only_python_checks_are_added():
    for spec in all_probes().values():
        table = {o.name: o for o in option_table(spec.binary).own()}
        for option in spec.user_options():
            row = table[option.name]
            assert (option.kind, option.minimum, option.maximum, option.choices, option.default, option.help) == (
                row.kind,
                row.minimum,
                row.maximum,
                row.choices,
                row.default,
                row.help,
            ), f"{spec.id} --set {option.name} differs from its binary's table"
            assert (option.check is not None) == (option.name in spec.checks)


def test_a_python_check_refuses_what_the_table_allows(tmp_path):
    source = all_probes()["rdrand"].option("source")
    assert source.accepts(__file__)
    with pytest.raises(UsageError, match="recorded RDRAND/RDSEED draws"):
        source.accepts(str(tmp_path))  # a directory: text of an allowed length, but no recording


def test_shared_binary_offers_per_probe():
    probes = all_probes()
    assert [o.name for o in probes["robust-futex-wakeup"].user_options()] == ["pending", "timeout-ms"]
    assert [o.name for o in probes["robust-futex-reuse"].user_options()] == ["api-symbol"]
    assert probes["robust-futex-glibc"].option("mode") is None and probes["robust-futex-glibc"].option("wake") is None


def test_a_missing_or_broken_table_is_one_line(tmp_path):
    with pytest.raises(ShakeoutError) as missing:
        option_table("nothing_here", tmp_path)
    assert "\n" not in str(missing.value) and "pip install" in str(missing.value)
    (tmp_path / "broken.options.json").write_text("{not json")
    with pytest.raises(ShakeoutError) as broken:
        option_table("broken", tmp_path)
    assert "\n" not in str(broken.value)


def test_legacy_declared_options_keep_their_checks():
    option = ProbeOption("x", "help", ("a", "b"))
    assert option.accepts("a") and not option.accepts("c")
    checked = ProbeOption("y", "help", check=lambda v: v == "ok")
    assert checked.accepts("ok") and not checked.accepts("nope") and not checked.accepts("ok\0")


@pytest.mark.parametrize(
    "item, message",
    [
        ("timeout-ms=²", "--set timeout-ms: '²' is not valid (an integer from 10 to 60000)"),
        ("timeout-ms=60001", "--set timeout-ms: '60001' is not valid (an integer from 10 to 60000)"),
        ("pending=maybe", "--set pending: 'maybe' is not valid (one of off, on)"),
        ("mode=glibc", "probe robust-futex-wakeup has no option 'mode=glibc' (options: pending, timeout-ms)"),
    ],
)
def test_run_with_a_bad_set_fails_in_one_line_before_running(item, message, tmp_path):
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "run", "robust-futex-wakeup", "--duration", "60", "--set", item],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert time.monotonic() - started < 30  # the 60 s probe never ran

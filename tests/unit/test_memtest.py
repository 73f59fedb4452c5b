"""memtest's pure parts: sizes, the default size, weak cells, fencing lines, sensors, interpretation."""

import pytest

from shakeout.cli import main
from shakeout.errors import ShakeoutError, UsageError
from shakeout.memtest.cells import MemError, aggregate
from shakeout.memtest.command import parse_granularity, parse_tests
from shakeout.memtest.fencing import badram_covers, badram_mask, fence
from shakeout.memtest.sensors import describe_changes, read_sensors
from shakeout.memtest.session import MemtestPlan
from shakeout.memtest.sizes import GIB, MIB, MemInfo, default_size, parse_meminfo, parse_size
from shakeout.probes.memtest import FLIP_BIT, PROBE, interpret
from shakeout.results import ProbeResult

INFO = MemInfo(total_bytes=16 * GIB, available_bytes=12 * GIB)
MEMINFO = "MemTotal:       16777216 kB\nMemFree:         1000 kB\nMemAvailable:   12582912 kB\nSwapTotal: 0 kB\n"


@pytest.mark.parametrize(
    ("text", "size"),
    [("64M", 64 * MIB), ("1G", GIB), ("1.5G", 3 * GIB // 2), ("1073741824", GIB), ("64MiB", 64 * MIB),
     ("2gb", 2 * GIB), ("50%", 6 * GIB), ("100%", 12 * GIB)],
)  # fmt: skip
def test_sizes_parse(text, size):
    assert parse_size(text, INFO) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [("0", "less than"), ("-1G", "not a size"), ("lots", "not a size"), ("", "not a size"), ("13G", "more than"),
     ("０１Ｇ", "not a size"), ("٣G", "not a size"), ("0%", "percentage"), ("150%", "percentage"),
     ("512K", "less than"), ("9" * 40, "far larger")],
)  # fmt: skip
def test_bad_sizes_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_size(text, INFO)


def test_meminfo_and_default_size_keep_a_margin():
    info = parse_meminfo(MEMINFO)
    assert info == INFO
    choice = default_size(info, memlock_limit_bytes=None, can_lock_beyond_limit=False)
    assert choice.size_bytes == 12 * GIB - int(16 * GIB * 0.10)  # 10 % of MemTotal > 256 MiB
    assert "MemAvailable 12 GiB" in choice.reason and "margin" in choice.reason
    small = default_size(MemInfo(GIB, 900 * MIB), None, False)
    assert small.size_bytes == 900 * MIB - 256 * MIB  # the 256 MiB floor


def test_default_size_is_the_memlock_limit_without_cap_ipc_lock():
    limited = default_size(INFO, memlock_limit_bytes=64 * MIB, can_lock_beyond_limit=False)
    assert limited.size_bytes == 64 * MIB and "ulimit -l" in limited.reason
    assert default_size(INFO, 64 * MIB, can_lock_beyond_limit=True).size_bytes > 10 * GIB


def test_no_memory_to_spare_is_an_error():
    with pytest.raises(ShakeoutError, match="no memory to spare"):
        default_size(MemInfo(GIB, 200 * MIB), None, False)
    with pytest.raises(ShakeoutError, match="MemAvailable"):
        parse_meminfo("MemTotal: 10 kB\n")


def _error(phys, bit, test="mov-inv-rand", virt=0x7F0000001000, after=1.0, pass_no=1):
    expected = 0x5555555555555555
    return MemError(test, pass_no, virt, phys, expected, expected ^ (1 << bit), expected ^ (1 << bit), 0, after)


def test_errors_at_one_physical_bit_are_one_cell_ranked_by_hits():
    errors = [
        _error(0x36A712348, 5, after=3.0, pass_no=2),
        _error(0x460E00010, 9, after=1.0),
        _error(0x36A712348, 5, test="address", after=4.0, pass_no=3),
        _error(0x36A712348, 6, after=5.0),
    ]
    cells = aggregate(errors)
    assert [(c.address, c.bit, c.hits) for c in cells] == [
        (0x36A712348, 5, 2),
        (0x460E00010, 9, 1),
        (0x36A712348, 6, 1),
    ]
    assert cells[0].tests == ["mov-inv-rand", "address"] and cells[0].passes == [2, 3]
    assert cells[0].to_one == 2 and cells[0].held == 2  # bit 5 of 0x55.. is 0: read as 1


def test_without_physical_addresses_the_virtual_one_names_the_cell():
    cells = aggregate([_error(None, 3), _error(None, 3)])
    assert len(cells) == 1 and not cells[0].physical and cells[0].address == 0x7F0000001000
    assert fence(cells).blocks == [] and fence(cells).virtual_only == 1


def test_badram_line_reproduces_seed_002():
    """The seed's three 1 MiB blocks, from bad bits inside them (one block holds two bits)."""
    cells = aggregate([_error(0x36A7ABCD0, 1), _error(0x36A700008, 2), _error(0x460E12340, 3), _error(0x4EA0FFFF8, 4)])
    fencing = fence(cells, 1 << 20)
    assert fencing.grub_badram == (
        'GRUB_BADRAM="0x36a700000,0xfffffffffff00000,0x460e00000,0xfffffffffff00000,0x4ea000000,0xfffffffffff00000"'
    )
    assert fencing.memmap == ["memmap=1M$0x36a700000", "memmap=1M$0x460e00000", "memmap=1M$0x4ea000000"]
    assert fencing.grub_cfg_memmap.split()[0] == "memmap=1M\\$0x36a700000"
    assert "memmap=1M\\\\\\$0x36a700000" in fencing.default_grub_memmap
    doc = fencing.to_dict()
    assert doc["blocks"][0] == {"start": "0x36a700000", "end": "0x36a7fffff"}
    assert doc["kernel_memtest"] == "memtest=4" and any("UEFI" in w for w in doc["where_each_works"])


def test_badram_mask_semantics_cover_the_block_and_nothing_else():
    mask = badram_mask(1 << 20)
    assert badram_covers(0x36A700000, mask, 0x36A7FFFFF)
    assert badram_covers(0x36A700000, mask, 0x36A700000)
    assert not badram_covers(0x36A700000, mask, 0x36A800000)
    assert not badram_covers(0x36A700000, mask, 0x36A6FFFFF)
    assert (
        fence(aggregate([_error(0x1234567, 0)]), 128 << 10).grub_badram == 'GRUB_BADRAM="0x1220000,0xfffffffffffe0000"'
    )


def test_granularity_and_tests_parsing():
    assert parse_granularity("1M") == 1 << 20 and parse_granularity("4K") == 4096
    for bad in ("3M", "1K", "x", "0"):
        with pytest.raises(UsageError):
            parse_granularity(bad)
    assert parse_tests("random,address") == ("address", "random")  # the native order
    with pytest.raises(UsageError, match="unknown test 'fast'"):
        parse_tests("address,fast")


def test_plan_deadline_bounds_passes_and_follows_duration():
    assert MemtestPlan(64 * MIB, "x", duration_s=3.0).deadline_s() == 3.0
    plan = MemtestPlan(64 * MIB, "x", passes=2)
    assert plan.pass_limit == 2 and plan.deadline_s() > 60
    assert MemtestPlan(64 * MIB, "x").pass_limit == 1


def test_sensors_from_a_fake_machine(tmp_path):
    hw = tmp_path / "sys/class/hwmon/hwmon0"
    hw.mkdir(parents=True)
    (hw / "name").write_text("coretemp\n")
    (hw / "temp1_input").write_text("45000\n")
    (hw / "temp1_label").write_text("Package id 0\n")
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("x86_pkg_temp\n")
    (zone / "temp").write_text("garbage\n")
    mc = tmp_path / "sys/devices/system/edac/mc/mc0"
    mc.mkdir(parents=True)
    (mc / "ce_count").write_text("3\n")
    (mc / "ue_count").write_text("0\n")
    before = read_sensors(tmp_path)
    assert before == {
        "temperatures_c": {"coretemp/Package id 0": 45.0},
        "edac": {"mc0": {"ce_count": 3, "ue_count": 0}},
    }
    (hw / "temp1_input").write_text("61500\n")
    (mc / "ce_count").write_text("5\n")
    lines = describe_changes(before, read_sensors(tmp_path))
    assert "coretemp/Package id 0: 45.0 -> 61.5 °C" in lines and "EDAC mc0 ce_count: 5 (+2 during the test)" in lines


def _sample(virt, phys, bit, test="mov-inv-rand"):
    return {"test": test, "pass": 1, "virt": hex(virt), "phys": hex(phys) if phys else None, "cpu": 1,
            "expected": "0x0000000000000000", "observed": hex(1 << bit), "reread": "0x0", "after_s": 0.5}  # fmt: skip


def _flip_result(samples, phys=0x10D703FE8):
    target = {"event": "target", "inject": "bit-flip", "pid": 1, "address": "0x7f0000000fe8",
              "phys": hex(phys) if phys else None}  # fmt: skip
    evidence = {"samples": samples, "targets": [target], "errors": len(samples), "size_bytes": 32 * MIB}
    return interpret(ProbeResult("memtest", "fail", evidence=evidence))


def test_interpretation_names_the_cell_and_the_test_that_caught_it():
    result = _flip_result([_sample(0x7F0000000FE8, 0x10D703FE8, FLIP_BIT)] * 2)
    assert "physical 0x10d703fe8 bit 17 (2 hit(s), caught by mov-inv-rand)" in result.reason
    assert "shakeout memtest" in result.reason
    assert result.evidence["fencing"]["grub_badram"] == 'GRUB_BADRAM="0x10d700000,0xfffffffffff00000"'
    single, repeat = PROBE.injections
    assert single.verify(result) is None and repeat.verify(result) is None


def test_flip_verification_rejects_wrong_evidence():
    single, repeat = PROBE.injections
    wrong_bit = _flip_result([_sample(0x7F0000000FE8, 0x10D703FE8, FLIP_BIT + 1)])
    assert "no weak cell at the flipped physical address" in single.verify(wrong_bit)
    once = _flip_result([_sample(0x7F0000000FE8, 0x10D703FE8, FLIP_BIT)])
    assert single.verify(once) is None and "1 hit(s), not the 2" in repeat.verify(once)
    split = _flip_result(
        [_sample(0x7F0000000FE8, 0x10D703FE8, FLIP_BIT)] * 2 + [_sample(0x7F0000001000, 0x10D704000, 3)]
    )
    assert "gave 2 cells, not one" in repeat.verify(split)
    virtual = _flip_result([_sample(0x7F0000000FE8, None, FLIP_BIT)], phys=None)
    assert single.verify(virtual) is None  # without root the virtual address names the cell


def test_a_clean_slice_says_how_much_and_that_it_is_weak_evidence():
    evidence = {"size_bytes": 64 * MIB, "bytes_verified": 512 * MIB, "tests": ["address"], "threads": 2, "locked": True}
    result = interpret(ProbeResult("memtest", "pass", exposures=512 * MIB, evidence=evidence))
    summary = result.evidence["summary"]
    assert result.deterministic and "64 MiB of RAM" in summary and "weak evidence" in summary
    assert "shakeout memtest" in summary


def test_a_slice_that_never_swept_its_buffer_is_inconclusive_not_clean():
    evidence = {"size_bytes": 64 * MIB, "bytes_verified": 8 * MIB, "tests": ["address"], "threads": 2}
    result = interpret(ProbeResult("memtest", "pass", exposures=8 * MIB, evidence=evidence))
    assert result.verdict == "inconclusive" and "not one sweep" in result.reason and not result.deterministic


@pytest.mark.parametrize(
    "argv",
    [["--size", "0"], ["--size", "-5M"], ["--size", "abc"], ["--size", "9999T"], ["--size", "٤G"],
     ["--passes", "0"], ["--passes", "²"], ["--passes", "1", "--duration", "2"], ["--duration", "-1"],
     ["--duration", "nan"], ["--tests", "nope"], ["--threads", "0"], ["--badram-granularity", "3M"],
     ["--format", "xml"], ["--size", "64M", "--output", "/proc/nonexistent/x"]],
)  # fmt: skip
def test_bad_command_lines_are_one_line_exit_2(argv, capsys):
    assert main(["memtest", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("shakeout: error:"), err

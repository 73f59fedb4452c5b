"""status: one line from the state directory; node-problem-detector's plugin protocol exactly."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from shakeout.errors import UsageError
from shakeout.fleet.reports import HostReport, parse_report
from shakeout.fleet.state import check_state_dir, write_state
from shakeout.fleet.status import NPD_MAX_OUTPUT_BYTES, judge, npd_line, parse_plain, read_status, status_main
from tests.unit.fleetdata import BASE_TIME, report, write

NOW = BASE_TIME + dt.timedelta(hours=3)
DAY = 86400.0


def _parsed(**kwargs) -> HostReport:
    parsed = parse_report(report("h", **kwargs), "report.json")
    assert isinstance(parsed, HostReport)
    return parsed


def test_clean_report_is_ok_and_counts_defects():
    status = judge(_parsed(verdicts={"a": "not-vulnerable", "b": "not-applicable"}), NOW, DAY, hazards=False)
    assert (status.state, status.line) == ("ok", "ok: 1 defects not-vulnerable (3h ago)")


def test_a_vulnerable_defect_is_a_problem_named():
    status = judge(_parsed(verdicts={"a": "vulnerable", "b": "not-vulnerable"}), NOW, DAY, hazards=False)
    assert (status.state, status.line) == ("problem", "VULNERABLE: a (3h ago)")


def test_hazards_are_reported_only_when_asked():
    parsed = _parsed(verdicts={"a": "not-vulnerable"}, hazards={"robust-futex-reuse": "present"})
    assert judge(parsed, NOW, DAY, hazards=False).state == "ok"
    assert judge(parsed, NOW, DAY, hazards=True).line == "hazard present: robust-futex-reuse (3h ago)"


def test_undecided_bugs_are_named_but_do_not_make_the_node_unknown():
    status = judge(_parsed(verdicts={"a": "unknown", "b": "not-vulnerable"}), NOW, DAY, hazards=False)
    assert (status.state, status.line) == ("ok", "ok: 1 defects not-vulnerable, 1 unknown: a (3h ago)")


def test_a_stale_report_is_unknown():
    status = judge(_parsed(verdicts={"a": "vulnerable"}), BASE_TIME + dt.timedelta(days=3), 2 * DAY, hazards=False)
    assert status.state == "unknown" and "older than 172800s" in status.line


def test_a_report_from_the_future_is_unknown():
    status = judge(_parsed(verdicts={"a": "not-vulnerable"}), BASE_TIME - dt.timedelta(hours=1), DAY, hazards=False)
    assert status.state == "unknown" and "in the future" in status.line


def test_many_vulnerable_bugs_fit_npd_s_80_bytes_with_a_count():
    verdicts = {f"some-rather-long-bug-name-{i}": "vulnerable" for i in range(20)}
    line = judge(_parsed(verdicts=verdicts), NOW, DAY, hazards=False).line
    assert len(line.encode()) <= NPD_MAX_OUTPUT_BYTES and line.endswith("more (3h ago)")


def test_npd_line_is_ascii_one_line_and_cut_by_us():
    line = npd_line("unknown: cannot read /var/lib/\u00e9t\u00e9/\x1b[31m/" + "x" * 200)
    assert line.isascii() and "\x1b" not in line and "\n" not in line
    assert len(line.encode()) == NPD_MAX_OUTPUT_BYTES and line.endswith("...")


def _run(argv, capsys):
    code = status_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_missing_state_directory_is_unknown_exit_2_for_npd_and_3_plain(tmp_path, capsys):
    code, out, _ = _run(["--plugin", "npd", "--state-dir", str(tmp_path / "none")], capsys)
    assert code == 2 and out.startswith("unknown: no state directory")
    code, out, _ = _run(["--state-dir", str(tmp_path / "none")], capsys)
    assert code == 3


def test_state_directory_without_report_is_unknown(tmp_path, capsys):
    code, out, _ = _run(["--plugin", "npd", "--state-dir", str(tmp_path)], capsys)
    assert code == 2 and "no report yet" in out and len(out.strip().encode()) <= 80


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"{", "not JSON"), (b"\xff\xfe", "report.json"), (json.dumps({"schema": "x"}).encode(), "not a shakeout report")],
)
def test_a_corrupt_report_is_unknown(tmp_path, capsys, content, reason):
    (tmp_path / "report.json").write_bytes(content)
    code, out, _ = _run(["--plugin", "npd", "--state-dir", str(tmp_path)], capsys)
    assert code == 2 and out.startswith("unknown:")


def test_a_fifo_in_place_of_the_report_is_unknown_without_blocking(tmp_path, capsys):
    os.mkfifo(tmp_path / "report.json")
    code, out, _ = _run(["--plugin", "npd", "--state-dir", str(tmp_path)], capsys)
    assert code == 2 and "not a regular file" in out


def test_protocol_exit_codes_for_a_fresh_report(tmp_path, capsys):
    recent = dt.datetime.now(dt.timezone.utc)
    write(tmp_path / "report.json", report("h", {"a": "vulnerable"}, started_at=recent))
    assert _run(["--plugin", "npd", "--state-dir", str(tmp_path)], capsys)[0] == 1
    write(tmp_path / "report.json", report("h", {"a": "not-vulnerable"}, started_at=recent))
    code, out, _ = _run(["--plugin", "npd", "--state-dir", str(tmp_path)], capsys)
    assert (code, out) == (0, "ok: 1 defects not-vulnerable (0s ago)\n")


@pytest.mark.parametrize(
    "argv",
    [["--max-age", "nan"], ["--max-age", "-1"], ["--plugin", "nagios"], ["--help"], ["--bogus"], ["--state-dir"]],
)
def test_anything_but_well_formed_options_goes_to_the_full_cli(argv, capsys):
    assert status_main(argv) is None
    assert capsys.readouterr() == ("", "")


def test_fast_parse_accepts_both_option_spellings(tmp_path):
    args = parse_plain(["--plugin=npd", "--state-dir", str(tmp_path), "--max-age=60", "--hazards"])
    assert args is not None and (args.plugin, args.state_dir, args.max_age, args.hazards) == ("npd", tmp_path, 60, True)


def test_bad_option_through_the_cli_is_one_line_exit_2(capsys):
    from shakeout.cli import main

    assert main(["status", "--max-age", "nan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-age" in err


def test_read_status_uses_state_writer_output(tmp_path):
    recent = dt.datetime.now(dt.timezone.utc)
    write_state(tmp_path, json.dumps(report("h", {"a": "vulnerable"}, started_at=recent)), "shakeout_x 1\n", None)
    assert read_status(tmp_path, DAY).state == "problem"
    assert (tmp_path / "shakeout.prom").read_text() == "shakeout_x 1\n"


def test_check_state_dir_refuses_a_missing_directory_before_the_run(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        check_state_dir(tmp_path / "typo")
    check_state_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the write test leaves nothing behind


def test_a_fifo_or_device_where_a_state_file_goes_is_refused_before_the_run(tmp_path):
    """A FIFO as the textfile would block a scheduled check for ever (found by the CLI fuzz test)."""
    os.mkfifo(tmp_path / "fifo.prom")
    with pytest.raises(UsageError, match="it is a FIFO, not a file"):
        check_state_dir(None, tmp_path / "fifo.prom")
    with pytest.raises(UsageError, match="it is a device, not a file"):
        check_state_dir(None, Path("/dev/null"))
    os.mkfifo(tmp_path / "report.json")
    with pytest.raises(UsageError, match=r"report\.json: it is a FIFO"):
        check_state_dir(tmp_path)
    (tmp_path / "real.prom").write_text("")
    (tmp_path / "link.prom").symlink_to(tmp_path / "real.prom")
    check_state_dir(None, tmp_path / "link.prom")  # a symlink to a file is a file

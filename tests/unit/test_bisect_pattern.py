"""The pattern matcher against a table derived from the specification (pattern.py docstring)."""

import pytest

from shakeout.bisect.pattern import PatternError, change_id, find_markers, marker, parse, strip_markers

B = lambda s: int(s, 2)  # noqa: E731


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("y", [0, 1, B("1010"), 2**64 - 1], []),
        ("01+10", [B("01"), B("110"), B("1001"), B("10")], [B("11"), B("100"), 0]),
        ("+01+10", [B("01"), B("110")], [B("11"), B("100")]),
        ("01+10-1001", [B("01"), B("10"), B("0101"), B("1110")], [B("1001"), B("11001"), B("11")]),
        ("-01-1000", [B("10"), B("11"), B("0000"), B("10000")], [B("01"), B("1000"), B("11000")]),
        ("y-01-1000", [B("10"), B("11")], [B("01"), B("1000")]),
        ("x1f", [0x1F, 0xA1F, 0x11F], [0x1E, 0x2F]),
        ("x1f+0", [0x1F, 0x2, 0x10], [0x3, 0x21]),
        ("1" * 64, [2**64 - 1], [2**64 - 2]),
    ],
)
def test_sets(pattern, matching, not_matching):
    m = parse(pattern)
    for i in matching:
        assert m.matches(i) and m.should_enable(i) and m.should_print(i), (pattern, bin(i))
    for i in not_matching:
        assert not m.matches(i) and not m.should_enable(i) and not m.should_print(i), (pattern, bin(i))


def test_negation_disables_and_still_reports():
    m = parse("!01")
    assert not m.should_enable(B("01")) and m.should_print(B("01"))
    assert m.should_enable(B("10")) and not m.should_print(B("10"))
    assert parse("!!01").should_enable(B("01"))
    n = parse("n")
    assert not n.should_enable(7) and n.should_print(7)
    assert parse("!n").should_enable(7)


def test_verbose_and_quiet():
    assert parse("v01").verbose and not parse("01").verbose
    assert parse("vv!01").verbose and not parse("vv!01").enable
    q = parse("q01")
    assert q.quiet and not q.should_print(B("01")) and q.should_enable(B("01"))
    assert not parse("qv01").quiet  # v cancels q


def test_empty_pattern_means_not_under_bisect():
    assert parse("") is None


@pytest.mark.parametrize(
    "bad", ["0+1-01+001", "v", "!", "q", "2", "01y", "y0", "x", "xg", "0a", "1" * 65, "x" + "f" * 17, "01+", "+"]
)
def test_invalid_patterns(bad):
    with pytest.raises(PatternError):
        parse(bad)


def test_markers_round_trip():
    i = change_id("obj/u017.o")
    line = f"{marker(i)} obj/u017.o"
    assert find_markers(line) == [i]
    assert find_markers("[bisect-match 0101] x") == [5]
    assert strip_markers(line) == "obj/u017.o"
    assert find_markers("nothing here") == []
    assert change_id("a") != change_id("b") and change_id("a") < 2**64

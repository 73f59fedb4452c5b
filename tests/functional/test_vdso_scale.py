"""The static analysis stays polynomial on a real program: one summary per function, and
callers refer to their callees' notes instead of copying them (before, `shakeout vdso
/bin/ls --no-measure` wrote 90 MB of JSON). Sizes, not times: benchmarks/vdso_scale.py
measures time and memory."""

import json
import platform
from pathlib import Path

import pytest

from shakeout.engine import vdso_report

LS = Path("/bin/ls")
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(platform.machine() != "x86_64" or not LS.is_file(), reason="x86-64 with /bin/ls"),
]


def test_notes_are_stated_once_and_referred_to():
    doc = vdso_report(LS, 104, measure=False).to_dict("shakeout/1", "test")
    text = json.dumps(doc)
    assert len(text) < 1_000_000, f"{len(text):,} bytes of JSON for {LS}"
    notes = [n for row in doc["functions"] for n in row["notes"]]
    notes += [n for own in doc["incomplete_functions"].values() for n in own]
    assert notes and all(len(n) < 200 for n in notes), max(notes, key=len)
    for row in doc["functions"]:
        for note in row["notes"]:
            if note.startswith("calls "):  # a reference: the callee's own reasons are stated once, by name
                callee = note[len("calls ") :].split(",")[0]
                assert callee in doc["incomplete_functions"], note
    for name, own in doc["incomplete_functions"].items():
        assert own, name  # every incomplete function says why, or whom it calls that is

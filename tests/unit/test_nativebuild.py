from pathlib import Path

import pytest

from shakeout import nativebuild
from shakeout.binaries import BIN_DIR
from shakeout.nativebuild import NativeBuildError, find_compiler, injector_library_name, probe_sources
from shakeout.probes import all_probes

NATIVE = Path(nativebuild.__file__).parent / "native"


def test_no_compiler_is_one_actionable_line(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NativeBuildError) as exc:
        find_compiler()
    message = str(exc.value)
    assert "\n" not in message
    assert "install gcc" in message


def test_sources_are_classified():
    sources = {p.stem for p in probe_sources(NATIVE)}
    assert "probe" not in sources and not any(s.startswith("inject_") for s in sources)
    binaries = {spec.binary for spec in all_probes().values()}
    assert binaries == sources  # every probe has its C file, and every probe C file a probe
    assert injector_library_name(Path("inject_sigframe.c")) == "libshakeout-inject-sigframe.so"


def test_installed_binaries_exist():
    assert (BIN_DIR / "signal_vector").is_file()
    assert (BIN_DIR / "libshakeout-inject-sigframe.so").is_file()

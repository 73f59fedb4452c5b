"""Where the installed native binaries are: probes, their static builds, fault injectors.

The names follow nativebuild.py's rules (which setup.py uses to build them); a missing
binary is a one-line error that says how to get it.
"""

from __future__ import annotations

from pathlib import Path

from shakeout.errors import ShakeoutError
from shakeout.nativebuild import STATIC_DIR, injector_library_name

BIN_DIR = Path(__file__).resolve().parent / "_bin"


def binary_path(name: str, static: bool = False) -> Path:
    path = BIN_DIR / STATIC_DIR / name if static else BIN_DIR / name
    if not path.is_file():
        raise ShakeoutError(
            f"the native probe '{name}' is not built (expected at {path}); reinstall shakeout with "
            "'pip install .' on a machine with gcc"
        )
    return path


def injector_path(library: str) -> Path:
    path = BIN_DIR / injector_library_name(Path(library + ".c"))
    if not path.is_file():
        raise ShakeoutError(f"the fault injector '{library}' is not built (expected at {path})")
    return path

"""`shakeout units`: the systemd service and timer (and node-problem-detector's plugin
config) filled in for this installation, printed or installed.

The templates are package data (shakeout/fleet/data). Filling them in means naming the
interpreter shakeout is installed for (so a virtual environment works without PATH) and,
with --textfile FILE, writing the Prometheus text there too and letting the sandboxed
service write FILE's directory. `--install` writes the unit files atomically into the unit
directory (/etc/systemd/system) and says the two commands that start the timer; it does
not run systemctl itself, so it works the same in an image build as on a live host.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Dict, Optional

from shakeout.errors import UsageError
from shakeout.outputs import check_output_path, write_output

SERVICE = "shakeout-check.service"
TIMER = "shakeout-check.timer"
NPD_CONFIG = "npd-shakeout.json"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DATA_DIR = Path(__file__).parent / "data"


def template(name: str) -> str:
    return (DATA_DIR / name).read_text(encoding="utf-8")


def _quoted(path: Path) -> str:
    """A path as systemd's ExecStart= reads it (double quotes; no specifiers)."""
    text = str(path)
    if any(c in text for c in '"\\%$\n') or not text.startswith("/"):
        raise UsageError(f"cannot put {text!r} in a unit file: use an absolute path without quotes, \\, % or $")
    return f'"{text}"' if " " in text else text


def shakeout_script(python: Path) -> Path:
    """The `shakeout` console script installed beside the interpreter (NPD runs it directly)."""
    return python.parent / "shakeout"


def render_units(python: Path, textfile: Optional[Path] = None) -> Dict[str, str]:
    """{unit file name: text} for this interpreter, optionally writing the textfile to FILE too."""
    if textfile is not None and not textfile.is_absolute():
        raise UsageError(f"--textfile {textfile}: the service needs an absolute path")
    option = f" --textfile {_quoted(textfile)}" if textfile else ""
    service = (
        template(SERVICE)
        .replace("@PYTHON@", _quoted(python))
        .replace("@TEXTFILE_OPTION@", option)
        .replace("@TEXTFILE_DIR@", _quoted(textfile.parent) if textfile else "")
    )
    return {SERVICE: service, TIMER: template(TIMER)}


def render_npd_config(python: Path) -> str:
    return template(NPD_CONFIG).replace("@SHAKEOUT@", str(shakeout_script(python)))


def install_units(units: Dict[str, str], unit_dir: Path) -> str:
    """Write every unit into unit_dir (checked first, then atomically); the next steps, in words."""
    for name in units:
        check_output_path(unit_dir / name)
    for name, text in units.items():
        write_output(unit_dir / name, text)
    return (
        f"installed {', '.join(units)} in {unit_dir}; start the schedule with:\n"
        f"  systemctl daemon-reload && systemctl enable --now {shlex.quote(TIMER)}"
    )


def current_python() -> Path:
    return Path(sys.executable)

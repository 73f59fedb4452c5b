"""Build the native probes and injectors with the system C compiler.

Used by setup.py at install time (so it imports nothing but the standard library) and by
`shakeout` itself to say where the binaries are. Every `native/<probe>.c` becomes an
executable linked with `native/probe.c`: dynamically (what `check` and `run` use, so that
LD_PRELOAD injectors act on the very binary users run) and, where the C library has a
static archive, statically too (for VMs). Every `native/inject_<name>.c` becomes a shared
library for LD_PRELOAD. Every `native/lib_<name>.c` becomes a shared library a probe
loads as its subject in a selftest (a known positive); one that does not build is left
out, and the selftest that needs it says it could not run. `native/vm/init.c` becomes the
static init of `shakeout vm`. Every freshly built probe is run once with `--describe` and
its option table (names, kinds, ranges, choices, defaults, help: probe.h) is stored beside
it as `<probe>.options.json`, the one statement of its options that shakeout reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"]
SHARED_SOURCE = "probe.c"
INJECTOR_PREFIX = "inject_"
SUBJECT_PREFIX = "lib_"
STATIC_DIR = "static"
OPTIONS_SUFFIX = ".options.json"
DESCRIBE_TIMEOUT_S = 30.0
VM_INIT = "shakeout-init"  # native/vm/init.c: PID 1 of `shakeout vm`'s initramfs, static only


class NativeBuildError(Exception):
    """The native code could not be built; the message is one line a user can act on."""


def find_compiler() -> str:
    for name in filter(None, [os.environ.get("CC"), "cc", "gcc", "clang"]):
        path = shutil.which(name.split()[0])
        if path:
            return path
    raise NativeBuildError(
        "shakeout needs a C compiler to build its probes and none was found "
        "(install gcc: 'apt-get install gcc', 'dnf install gcc' or 'apk add gcc musl-dev')"
    )


def probe_sources(native_dir: Path) -> List[Path]:
    return sorted(
        p
        for p in native_dir.glob("*.c")
        if p.name != SHARED_SOURCE and not p.name.startswith((INJECTOR_PREFIX, SUBJECT_PREFIX))
    )


def subject_sources(native_dir: Path) -> List[Path]:
    return sorted(native_dir.glob(SUBJECT_PREFIX + "*.c"))


def subject_library_name(source: Path) -> str:
    return "libshakeout-" + source.stem[len(SUBJECT_PREFIX) :].replace("_", "-") + ".so"


def injector_sources(native_dir: Path) -> List[Path]:
    return sorted(native_dir.glob(INJECTOR_PREFIX + "*.c"))


def injector_library_name(source: Path) -> str:
    return "libshakeout-" + source.stem.replace("_", "-") + ".so"


def _run(cmd: List[str]) -> None:
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        detail = proc.stdout.strip().splitlines()
        raise NativeBuildError(
            "compiling {} failed: {}".format(cmd[-3] if len(cmd) > 3 else cmd, detail[-1] if detail else "?")
            + ("\n" + proc.stdout if proc.stdout else "")
        )


def static_linking_works(cc: str) -> bool:
    """True when the C library has a static archive (libc.a) that links a threaded program."""
    with tempfile.TemporaryDirectory(prefix="shakeout-cc-") as tmp:
        src = Path(tmp, "t.c")
        src.write_text("#include <pthread.h>\nint main(void){return pthread_self()==0;}\n")
        proc = subprocess.run(
            check=False,
            args=[cc, "-static", "-pthread", str(src), "-o", str(Path(tmp, "t"))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc.returncode == 0


def option_table_path(bin_dir: Path, probe: str) -> Path:
    return bin_dir / (probe + OPTIONS_SUFFIX)


def record_option_table(exe: Path) -> Path:
    """Runs the probe just built with --describe and stores its option table beside it."""
    try:
        proc = subprocess.run([str(exe), "--describe"], check=False, capture_output=True, timeout=DESCRIBE_TIMEOUT_S)
        table = json.loads(proc.stdout)
        valid = proc.returncode == 0 and isinstance(table, dict) and isinstance(table.get("options"), list)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise NativeBuildError(f"{exe.name} --describe did not run: {exc} (its option table is needed)") from None
    if not valid:
        raise NativeBuildError(f"{exe.name} --describe printed no option table (exit status {proc.returncode})")
    path = option_table_path(exe.parent, exe.name)
    path.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return path


def build_all(native_dir: Path, out_dir: Path, cc: Optional[str] = None) -> List[Path]:
    """Compile every probe and injector from native_dir into out_dir; return what was built."""
    cc = cc or find_compiler()
    out_dir.mkdir(parents=True, exist_ok=True)
    shared = native_dir / SHARED_SOURCE
    built: List[Path] = []
    static = static_linking_works(cc)
    if static:
        (out_dir / STATIC_DIR).mkdir(exist_ok=True)
    for src in probe_sources(native_dir):
        exe = out_dir / src.stem
        _run([cc, *CFLAGS, "-pthread", "-I", str(native_dir), "-o", str(exe), str(shared), str(src)])
        built += [exe, record_option_table(exe)]
        if static:
            exe_static = out_dir / STATIC_DIR / src.stem
            _run(
                [
                    cc,
                    *CFLAGS,
                    "-static",
                    "-pthread",
                    "-I",
                    str(native_dir),
                    "-o",
                    str(exe_static),
                    str(shared),
                    str(src),
                ]
            )
            built.append(exe_static)
    vm_init = native_dir / "vm" / "init.c"
    if static and vm_init.is_file():
        exe = out_dir / STATIC_DIR / VM_INIT
        _run([cc, *CFLAGS, "-static", "-I", str(native_dir), "-o", str(exe), str(shared), str(vm_init)])
        built.append(exe)
    for src in injector_sources(native_dir):
        lib = out_dir / injector_library_name(src)
        _run([cc, *CFLAGS, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"])
        built.append(lib)
    for src in subject_sources(native_dir):
        lib = out_dir / subject_library_name(src)
        try:
            _run([cc, *CFLAGS, "-shared", "-fPIC", "-o", str(lib), str(src)])
        except NativeBuildError:
            continue
        built.append(lib)
    return built

"""`shakeout cc`: a compiler wrapper that adds options to some objects only, by hash.

    CC="shakeout cc --if-enabled '-fstack-check' -- gcc"
    shakeout bisect -- BISECT_PATTERN=PATTERN sh -c 'make CC="$CC" && ./test'

For each compilation that produces an object file, the change id is a hash of the object's
path (relative to --root, default the current directory), the pattern comes from the
environment (--pattern-var, default BISECT_PATTERN), the extra options are added only when
the pattern enables that object, and a `[bisect-match 0x…] path` line names the object on
stderr whenever the pattern reports it. Without a pattern every object gets the options
(a target not run by bisect enables every change). This automates the hunt of seed 002:
which object, compiled differently, breaks the program.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import List, Optional, Tuple

from shakeout.bisect.pattern import change_id, marker, parse
from shakeout.errors import ShakeoutError, UsageError

SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".S", ".s")


def output_object(args: List[str]) -> Optional[str]:
    """The object file this compiler invocation writes, or None (linking, preprocessing)."""
    if "-c" not in args:
        return None
    for i, a in enumerate(args):
        if a == "-o" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("-o") and len(a) > 2:
            return a[2:]
    sources = [a for a in args if not a.startswith("-") and os.path.splitext(a)[1] in SOURCE_SUFFIXES]
    return os.path.splitext(os.path.basename(sources[-1]))[0] + ".o" if sources else None


def compiles_and_links(args: List[str]) -> bool:
    """A source file compiled without -c (nor -E/-S): the compiler links at once, no object is kept."""
    if any(a in ("-c", "-E", "-S", "-M", "-MM") for a in args):
        return False
    return any(not a.startswith("-") and os.path.splitext(a)[1] in SOURCE_SUFFIXES for a in args)


def object_key(obj: str, root: str) -> str:
    path = os.path.realpath(os.path.join(os.getcwd(), obj))
    base = os.path.realpath(root)
    return os.path.relpath(path, base) if path.startswith(base + os.sep) else path


USAGE = (
    "usage: shakeout cc [--if-enabled OPTIONS] [--pattern-var NAME] [--root DIR] -- COMPILER ARGS...\n"
    "  --if-enabled OPTIONS  added to the objects the pattern enables (one word, shell-split; may start with -)\n"
    "  --pattern-var NAME    environment variable holding the pattern (default BISECT_PATTERN)\n"
    "  --root DIR            object paths are hashed relative to DIR (default: the current directory)"
)


def parse_cc_args(argv: List[str]) -> Tuple[str, str, str, List[str]]:
    """Options take the next word verbatim (they usually start with '-'); '--' ends them."""
    extra, var, root = "", "BISECT_PATTERN", "."
    words = list(argv)
    while words and words[0] != "--":
        flag = words.pop(0)
        if flag in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        if flag not in ("--if-enabled", "--pattern-var", "--root") or not words:
            raise UsageError(f"shakeout cc: unexpected {flag!r} (options come before -- COMPILER ARGS...)")
        value = words.pop(0)
        if flag == "--if-enabled":
            extra = value
        elif flag == "--pattern-var":
            var = value
        else:
            root = value
    command = words[1:]
    if not command:
        raise UsageError("shakeout cc needs a compiler command after --")
    return extra, var, root, command


def extra_options(if_enabled: str) -> List[str]:
    """--if-enabled split as a shell would; unbalanced quotes are a usage error."""
    import shlex  # only when options are added (shlex costs start-up time)

    try:
        return shlex.split(if_enabled)
    except ValueError as exc:
        raise UsageError(f"--if-enabled {if_enabled!r} cannot be split into words: {exc}") from None


def cc_main(argv: List[str]) -> int:
    """Exec the compiler (its exit status becomes ours), with the options if the pattern enables the object."""
    if_enabled, pattern_var, root, command = parse_cc_args(argv)
    compiler, compiler_args = command[0], command[1:]
    extra: List[str] = extra_options(if_enabled) if if_enabled else []
    obj = output_object(compiler_args)
    if obj is not None:
        matcher = parse(os.environ.get(pattern_var, ""))
        key = object_key(obj, root)
        ident = change_id(key)
        if matcher is not None and not matcher.should_enable(ident):
            extra = []
        if matcher is not None and matcher.should_print(ident):
            print(f"{marker(ident)} {key}", file=sys.stderr, flush=True)
    else:
        extra = []
        if compiles_and_links(compiler_args):
            print(
                "shakeout cc: warning: no -c, so no object file is produced and nothing is bisected "
                "(compile each source with -c, then link)",
                file=sys.stderr,
            )
    try:
        os.execvp(compiler, [compiler, *extra, *compiler_args])
    except OSError as exc:
        raise UsageError(f"cannot run the compiler {compiler}: {exc.strerror or exc}") from None
    return 127


def cc_entry(argv: List[str]) -> int:
    """`shakeout cc`, with the CLI's error contract: one line on stderr, never a traceback."""
    try:
        return cc_main(argv)
    except ShakeoutError as exc:
        print(f"shakeout cc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # the environment, not shakeout: a deleted cwd, a closed stderr
        with contextlib.suppress(OSError):
            print(f"shakeout cc: error: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a defect of shakeout
        if os.environ.get("SHAKEOUT_DEBUG"):
            raise
        print(f"shakeout cc: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 70

"""Builds the native probes as part of `pip install .` (see src/shakeout/nativebuild.py)."""

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def _nativebuild():
    spec = importlib.util.spec_from_file_location("_shakeout_nativebuild", HERE / "src/shakeout/nativebuild.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class BuildPyWithProbes(build_py):
    def run(self):
        super().run()
        nb = _nativebuild()
        out = Path(self.build_lib) / "shakeout" / "_bin"
        try:
            built = nb.build_all(HERE / "src/shakeout/native", out)
        except nb.NativeBuildError as exc:
            sys.exit("error: " + str(exc))
        for path in built:
            print("built " + str(path.relative_to(self.build_lib)))


class BinaryDistribution(Distribution):
    """The wheel carries executables for this platform, so it must not be tagged pure."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithProbes}, distclass=BinaryDistribution)

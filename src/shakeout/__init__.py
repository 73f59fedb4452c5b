"""shakeout: is this platform (kernel, CPU, toolchain) silently corrupting memory?"""

__version__ = "0.1.0"

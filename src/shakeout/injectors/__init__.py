"""Fault injectors that act on a probe from outside its own code (selftest and tests)."""

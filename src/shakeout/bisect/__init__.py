"""Bisection: Go's bisect protocol (pattern.py), a flaky-aware search (search.py), targets
that are commands (runner.py), a compiler wrapper (cc.py) and kernel configs (config.py)."""

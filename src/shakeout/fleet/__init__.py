"""From one machine to a fleet: scheduled checks, their state directory, the one-line
status for node-problem-detector, the systemd units that run them, and `merge`, which
finds the host attributes that separate vulnerable hosts from clean ones.

Everything here reads the JSON reports (schema "shakeout/1") that `check` writes; nothing
here runs a probe.
"""

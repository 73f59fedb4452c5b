"""`shakeout triage`: from pasted crash output to ranked suspects and the commands that decide.

rules.py parses the triage data (catalog `[triage]` tables and signals.toml), facts.py
reads host facts out of log lines, matcher.py scores suspects (pure), reader.py streams
the user's input with caps, render.py turns the result into text, JSON or markdown.
This module imports nothing, so that the catalog loader can use rules.py without a cycle.
"""

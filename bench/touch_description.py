#!/usr/bin/env python3
"""Gives a solution document a new DESCRIPTION, so its generated code changes."""
import re, sys, time

path = sys.argv[1]
text = open(path, encoding="utf-8").read()
stamp = f"<DESCRIPTION>benchmark edit {time.time_ns()}</DESCRIPTION>"
text = re.sub(r"<DESCRIPTION>.*?</DESCRIPTION>", stamp, text, count=1, flags=re.S)
open(path, "w", encoding="utf-8").write(text)

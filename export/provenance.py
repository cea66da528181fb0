"""Which commit wrote an artefact: the export's manifest and `export.seeds`' table both record it,
so a report can say when the two came from different code."""
from __future__ import annotations

import subprocess


def source_commit() -> str:
    """The short hash of HEAD in the working directory's repository; "unknown" outside one."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"

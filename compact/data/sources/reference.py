"""The reference benchmark as a data source: `reference[:SPLIT]`, `reference-quick[:SPLIT]`, or a built folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from compact.data.reference.dataset import SPLITS, is_reference_data, reference_eval_data
from compact.data.sources import register_source
from compact.data.types import EvalData
from compact.errors import DataError

NAMES = {"reference": "full", "reference-small": "small", "reference-quick": "quick"}


def _split(spec: str) -> tuple[str, str]:
    base, sep, split = spec.rpartition(":")
    if sep and split in SPLITS:
        return base, split
    return spec, "test"


@register_source("reference")
class ReferenceSource:
    description = "the reference benchmark: reference[:train|val|test], reference-quick[:SPLIT] or its folder"

    @classmethod
    def matches(cls, spec: str, **kw) -> bool:
        base, _ = _split(spec)
        return base in NAMES or is_reference_data(Path(base))

    @classmethod
    def open(cls, spec: str, **kw) -> EvalData:
        return open_reference(spec)


def open_reference(spec: str, limit: Optional[int] = None) -> EvalData:
    """`reference[:SPLIT]`, `reference-quick[:SPLIT]` or a built folder (default split: test), optionally only
    the first `limit` images."""
    base, split = _split(spec)
    if base in NAMES:
        from compact.reference.build import reference_paths

        folder = reference_paths(NAMES[base]).data
        if not is_reference_data(folder):
            flag = "" if NAMES[base] == "full" else f" --size {NAMES[base]}"
            raise DataError(f"the reference benchmark is not built yet ({folder}); "
                            f"run `compact reference build{flag}` first")
    else:
        folder = Path(base)
    return reference_eval_data(folder, split, limit)


def reference_base(spec: str) -> Optional[str]:
    """The spec without its split if it names the reference benchmark, else None."""
    return _split(spec)[0] if ReferenceSource.matches(spec) else None

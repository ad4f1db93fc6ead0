"""A registry of evaluation data formats, and `open_eval_data`, which picks one by looking at the spec.

A source is a class with:
- `name: str` (set by `@register_source(name)`),
- optionally `description: str` (one phrase, shown when no format matches),
- a classmethod `matches(spec: str, **kw) -> bool` that only looks (cheaply) and never raises for a spec
  of another format, and
- a classmethod `open(spec: str, **kw) -> EvalData`.

`spec` always arrives as a `str`; `kw` holds `class_names` and `templates` (each `None` or a path).
Sources are tried in registration order and the first whose `matches` says yes is opened. The built-in
sources (table, webdataset, image folder) register when this package is imported; other modules, such as
`compact.data.reference`, register theirs with `@register_source("reference")` and are tried after them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, TypeVar

from compact.data.types import EvalData
from compact.errors import DataError

log = logging.getLogger(__name__)

_SOURCES: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register_source(name: str) -> Callable[[T], T]:
    """Class decorator: register a data source under `name` (tried after those registered before it)."""

    def decorate(cls: T) -> T:
        for attr in ("matches", "open"):
            if not callable(getattr(cls, attr, None)):
                raise TypeError(f"data source {cls.__name__} has no {attr}() method")
        known = _SOURCES.get(name)
        if known is not None and _qualname(known) != _qualname(cls):
            raise ValueError(f"a data source named {name!r} is already registered ({_qualname(known)})")
        cls.name = name  # type: ignore[attr-defined]
        _SOURCES[name] = cls  # re-registering the same class (e.g. a module reload) keeps its place
        return cls

    return decorate


def _qualname(cls: type) -> str:
    """The dotted name of a class, to recognise the same class registered twice."""
    return f"{cls.__module__}.{cls.__qualname__}"


def list_sources() -> list[str]:
    """The names of the registered data sources, in the order they are tried."""
    return list(_SOURCES)


def open_eval_data(
    spec: str | Path,
    *,
    class_names: str | Path | None = None,
    templates: str | Path | None = None,
) -> EvalData:
    """Open `spec` with the first registered source that recognises it, or raise DataError."""
    text = str(spec)
    kw: dict[str, Any] = {"class_names": class_names, "templates": templates}
    for name, cls in _SOURCES.items():
        if cls.matches(text, **kw):
            log.debug("opening %s as %s data", text, name)
            return cls.open(text, **kw)
    raise DataError(f"cannot tell the data format of {text}: {_why_not(text, class_names)}; accepted formats: "
                    f"{_accepted()}")


def _why_not(spec: str, class_names: str | Path | None) -> str:
    """A short reason why no source matched, for the error message."""
    path = Path(spec)
    if not path.exists():
        return "no such file or directory"
    if path.is_dir() and class_names is None and any(p.is_dir() for p in path.iterdir()):
        return "it is a folder of sub-folders; for an image-folder dataset also pass class_names (a JSON file)"
    return "no data source recognises it"


def _accepted() -> str:
    """The registered formats, one phrase each, for the error message."""
    return "; ".join(f"{getattr(cls, 'description', name)}" for name, cls in _SOURCES.items())


# Built-in sources register on import, in this order (they import `register_source` from above).
from compact.data.sources import table as _table  # noqa: E402,F401
from compact.data.sources import wds as _wds  # noqa: E402,F401
from compact.data.sources import imagefolder as _imagefolder  # noqa: E402,F401
from compact.data.sources import reference as _reference  # noqa: E402,F401

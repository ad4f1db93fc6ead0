"""Typed configs from YAML/JSON recipes: unknown keys and wrong types are errors that name the key and line.

Why not a config framework (Hydra/OmegaConf): they are not in compact's dependency set, and a recipe here is a
few nested dataclasses; what users need from the loader is the exact line of their mistake.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Optional, Union

from compact.errors import CompactError


class RecipeError(CompactError):
    pass


def _node_map(node) -> dict:
    """key -> (value node, line) for a YAML mapping node."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: (v, k.start_mark.line + 1) for k, v in node.value}


def _is_optional(tp) -> bool:
    return typing.get_origin(tp) is Union and type(None) in typing.get_args(tp)


def _convert(value: Any, tp, node, where: str, line: Optional[int]):
    import yaml

    at = f"{where} (line {line})" if line else where
    if _is_optional(tp):
        if value is None:
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"{at}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, node, where)
    if origin is Union:  # e.g. int | list[int]
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, node, where, line)
            except RecipeError:
                continue
        raise RecipeError(f"{at}: {value!r} is not any of {typing.get_args(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{at}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [None] * len(value)
        items = [_convert(v, inner, n, f"{where}[{i}]", (n.start_mark.line + 1) if n is not None else line)
                 for i, (v, n) in enumerate(zip(value, nodes))]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{at}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        sub = _node_map(node)
        return {k: _convert(v, vt, sub.get(k, (None, line))[0], f"{where}.{k}", sub.get(k, (None, line))[1])
                for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise RecipeError(f"{at}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls, data: dict, node=None, where: str = "recipe"):
    """Build dataclass `cls` from `data`; `node` (a YAML node) gives line numbers for errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    lines = _node_map(node)
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        line = lines.get(k, (None, None))[1]
        at = f" at line {line}" if line else ""
        raise RecipeError(f"unknown key {where}.{k}{at}; {cls.__name__} accepts: {', '.join(sorted(fields))}")
    kwargs = {}
    for k, v in data.items():
        sub, line = lines.get(k, (None, None))
        kwargs[k] = _convert(v, hints[k], sub, f"{where}.{k}", line)
    try:
        return cls(**kwargs)
    except CompactError as e:
        raise RecipeError(f"{where}: {e}") from None
    except TypeError as e:
        raise RecipeError(f"{where}: {e}") from None


def load_recipe_file(path: Path, cls):
    """Read a YAML (or JSON) recipe into dataclass `cls`, with line numbers in every error."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path} must hold a mapping at the top level")
    try:
        return from_dict(cls, data, node, where=path.stem)
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None


def to_dict(obj) -> Any:
    return dataclasses.asdict(obj)

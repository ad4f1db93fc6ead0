"""Teachers: every way of getting a `DualEncoder`, behind one registry.

A teacher spec is a string:
    reference                     the project's reference teacher (after `compact reference build`)
    open_clip:NAME[@PRETRAINED]   open_clip.create_model(NAME, pretrained=PRETRAINED); NAME may be
                                  'local-dir:/path' or 'hf-hub:org/repo'
    hf:ID_OR_PATH                 transformers CLIPModel from the hub or a local folder
    py:MODULE:FUNCTION            your own dual encoder (see entrypoint.py); also py:/path/file.py:FUNCTION
    PATH                          a compact model folder, an open_clip local dir or a Hugging Face CLIP folder
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from compact.errors import TeacherError
from compact.models.dual_encoder import DualEncoder


@dataclass(frozen=True)
class TeacherOptions:
    device: str = "cpu"
    trust_remote_code: bool = False  # only honoured when the user passes --trust-remote-code
    cache_dir: Optional[str] = None


class TeacherAdapter:
    """One way of loading a teacher. `matches` decides from the spec alone; `load` builds the DualEncoder."""

    name: str = ""
    prefix: Optional[str] = None  # "open_clip:" style prefix, or None for adapters that match paths

    @classmethod
    def matches(cls, spec: str) -> bool:
        return cls.prefix is not None and spec.startswith(cls.prefix)

    @classmethod
    def load(cls, spec: str, options: TeacherOptions) -> DualEncoder:
        raise NotImplementedError


TEACHERS: dict[str, type[TeacherAdapter]] = {}


def register_teacher(cls: type[TeacherAdapter]) -> type[TeacherAdapter]:
    TEACHERS[cls.name] = cls
    return cls


def list_teachers() -> list[str]:
    _import_builtin()
    return list(TEACHERS)


def load_teacher(spec: str, options: Optional[TeacherOptions] = None,
                 progress: Optional[Callable[[str], None]] = None) -> DualEncoder:
    """Resolve `spec` through the registry (prefixed adapters first, then path-based ones) and load it."""
    _import_builtin()
    options = options or TeacherOptions()
    spec = spec.strip()
    if not spec:
        raise TeacherError("empty teacher spec; pass e.g. 'reference', 'open_clip:ViT-B-32' or a folder path")
    ordered = sorted(TEACHERS.values(), key=lambda c: c.prefix is None)
    for adapter in ordered:
        if adapter.matches(spec):
            if progress:
                progress(f"loading {spec} with the {adapter.name} adapter")
            model = adapter.load(spec, options)
            return model.to(options.device).eval()
    prefixes = [a.prefix for a in ordered if a.prefix]
    raise TeacherError(
        f"cannot resolve teacher {spec!r}: not a known prefix ({', '.join(prefixes)}) and not a model folder; "
        "pass a path to a model folder or prefix the id, e.g. hf:openai/clip-vit-base-patch32")


def _import_builtin() -> None:
    # Imported lazily so that `compact --help` does not pay for transformers/open_clip imports.
    from compact.models.teachers import bundle, entrypoint, folder, hf, openclip, reference  # noqa: F401

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
from pathlib import Path
from typing import Callable, Optional

from compact.errors import TeacherError
from compact.models.dual_encoder import DualEncoder


@dataclass(frozen=True)
class TeacherOptions:
    device: str = "cpu"
    trust_remote_code: bool = False  # only honoured when the user passes --trust-remote-code
    cache_dir: Optional[str] = None
    # Pickle-based weights (pytorch_model.bin, .pt) can run code when unpickled: refused unless the user passes
    # --allow-pickle, and even then read with torch.load(weights_only=True).
    allow_pickle: bool = False


_DEFAULT_OPTIONS = TeacherOptions()


def set_default_options(options: TeacherOptions) -> None:
    """What `load_teacher` uses when no options are passed (the CLI sets it from `compact --allow-pickle
    --trust-remote-code ...`), so every command's model loading honours the user's flags."""
    global _DEFAULT_OPTIONS
    _DEFAULT_OPTIONS = options


def default_options() -> TeacherOptions:
    return _DEFAULT_OPTIONS


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


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def unsafe_pickle_message(what: str) -> str:
    return (f"{what}: the pickle holds more than tensors (objects or calls that would run code), so "
            "torch.load(weights_only=True) refused it and nothing in it ran; do not load this file")


def check_no_pickle_only(folder: Path) -> None:
    """A folder whose weights are all pickle-based (pytorch_model.bin, ...) is refused without --allow-pickle."""
    names = [f.name for f in folder.iterdir() if f.is_file()]
    if any(n.endswith(".safetensors") for n in names):
        return
    pickled = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickled:
        raise TeacherError(f"{folder} holds pickle-based weights only ({', '.join(pickled[:3])}), which can run "
                           "code when loaded; convert them to safetensors, or pass --allow-pickle if you trust the "
                           "file (it is then read with torch.load(weights_only=True))")


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
    options = options or _DEFAULT_OPTIONS
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

"""Small builders shared by tests."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from compact.models.compact_clip import CompactCLIP
from compact.models.config import ModelConfig, TextConfig, VisionConfig
from compact.models.tokenizer import ByteTokenizer


def tiny_compact(seed: int = 0, languages=("en", "de")) -> CompactCLIP:
    import torch

    torch.manual_seed(seed)
    cfg = ModelConfig(embed_dim=32, vision=VisionConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2,
                                                        mlp_dim=64),
                      text=TextConfig(vocab_size=259, context_length=24, width=32, depth=2, heads=2, mlp_dim=64))
    return CompactCLIP(cfg, ByteTokenizer(context_length=24), languages=languages).eval()


def clip_bpe_hf_tokenizer():
    """A transformers CLIPTokenizer built offline from the CLIP BPE vocabulary that open_clip's wheel ships."""
    from transformers import CLIPTokenizerFast

    from compact.models.hf_tokenizers import clip_bpe_tokenizer

    return CLIPTokenizerFast(tokenizer_object=clip_bpe_tokenizer(), bos_token="<|startoftext|>",
                             eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|endoftext|>")


def hf_tiny_clip(folder):
    """A tiny random-init Hugging Face CLIPModel with the real CLIP BPE tokenizer, saved to `folder`."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      max_position_embeddings=77, vocab_size=49408),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=32, patch_size=8),
                     projection_dim=16)
    CLIPModel(cfg).save_pretrained(folder)
    clip_bpe_hf_tokenizer().save_pretrained(folder)
    return folder


def only_packages_env(tmp_path, packages: list[str]):
    """A Python whose importable third-party packages are exactly `packages`, symlinked from this venv into a fresh
    venv (no pip, no network) through one .pth file; torch, compact and everything else cannot import. Namespace
    packages (`google` of protobuf) have no origin: their folder is linked."""
    import importlib.util
    import venv

    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
    site = next((env / "lib").glob("python*/site-packages"))
    only = tmp_path / "only"
    only.mkdir()
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.origin in (None, "namespace"):
            src = Path(list(spec.submodule_search_locations)[0])
        else:
            src = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        (only / src.name).symlink_to(src)
        libs = src.parent / f"{name}.libs"  # wheels that vendor shared libraries (numpy.libs)
        if libs.is_dir():
            (only / libs.name).symlink_to(libs)
    (site / "only.pth").write_text(str(only) + "\n")
    return env / "bin" / "python"


def killed_at(cmd, point: str) -> None:
    """Run `cmd` with COMPACT_FAILPOINT=point (compact/utils/faults.py); it must die by SIGKILL there."""
    r = subprocess.run(cmd, env=dict(os.environ, COMPACT_FAILPOINT=point, OMP_NUM_THREADS="1"), capture_output=True,
                       text=True)
    assert r.returncode == -signal.SIGKILL, f"not killed at {point}: rc {r.returncode}\n{r.stderr[-2000:]}"


_CACHE_MAX_PARAMS = 20_000_000


def _code_digest(h, fn, seen) -> None:
    """Hash what `fn` runs (its code, nested code, constants and closure); plain values by repr, others by type."""
    import types

    if isinstance(fn, (int, float, str, bool, type(None), tuple)):
        h.update(repr(fn).encode())
        return
    if isinstance(fn, (property, staticmethod, classmethod)):
        fn = getattr(fn, "fget", None) or fn.__func__
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None or id(code) in seen:
        h.update(repr(type(fn)).encode())
        return
    seen.add(id(code))
    stack = [code]
    while stack:
        c = stack.pop()
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for k in c.co_consts:
            if isinstance(k, types.CodeType):
                stack.append(k)
            else:  # a frozenset's order depends on the process's hash seed
                h.update(repr(sorted(map(repr, k)) if isinstance(k, frozenset) else k).encode())
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        _code_digest(h, value, seen)


def export_cache_key(tower, opset: int, table=None, extra: str = "", extra_modules: tuple[str, ...] = ()):
    """The test session's export cache key of `tower` (conftest.py says what it covers); None: do not cache.
    `extra` and the code of `extra_modules` (the exporting target's) join the key."""
    import hashlib
    import sys

    import torch

    module = tower.module
    if sum(p.numel() for p in module.parameters()) > _CACHE_MAX_PARAMS:
        return None
    h, seen, modules = hashlib.sha256(), set(), set(extra_modules)
    h.update(repr((tower.name, tower.input_names, tower.output_name, tower.dynamic, opset, extra)).encode())
    for name, m in module.named_modules():
        h.update(f"{name}:{m.training}".encode())
        for cls in type(m).__mro__:
            if cls.__module__.startswith("torch.nn") or cls is object:
                continue
            h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
            modules.add(cls.__module__)
            for attr in sorted(vars(cls)):
                _code_digest(h, vars(cls)[attr], seen)
        for attr, value in sorted(vars(m).items()):  # instance attributes: patched methods, flags
            if not isinstance(value, (torch.nn.Module, torch.Tensor, dict)):
                h.update(attr.encode())
                _code_digest(h, value, seen)
    for mod_name in sorted(modules):  # the helpers and constants of the modules that define them
        for attr, value in sorted(vars(sys.modules[mod_name]).items()):
            if getattr(value, "__module__", None) == mod_name or isinstance(value, (int, float, str, bool)):
                h.update(attr.encode())
                _code_digest(h, value, seen)
    tensors = [*module.named_parameters(), *module.named_buffers(), *(("example", x) for x in tower.example)]
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    for op, fn in sorted((table or {}).items(), key=lambda kv: repr(kv[0])):
        h.update(repr(op).encode())
        _code_digest(h, fn, seen)
    return h.hexdigest()

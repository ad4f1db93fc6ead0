"""Out-of-memory errors that say which batch size did not fit and what to try instead."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

from compact.errors import CompactError

# What torch, numpy and onnxruntime say when an allocation fails (CPU and CUDA).
_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory",
              "failed to allocate memory", "bad_alloc")


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    if isinstance(exc, (RuntimeError, OSError)) or type(exc).__name__ in ("Fail", "RuntimeException"):
        text = str(exc).lower()
        return any(w in text for w in _OOM_WORDS)
    return False


def smaller(batch_size: int) -> int:
    return max(1, int(batch_size) // 2)


@contextlib.contextmanager
def batch_must_fit(batch_size: int, what: str, fix: str) -> Iterator[None]:
    """Inside the block, an allocation failure becomes a one-line CompactError: "out of memory <what> at batch
    size N; <fix>". `fix` may use {smaller} (half the batch, at least 1) and {batch}. At batch size 1 the fix is
    a smaller model or input instead."""
    try:
        yield
    except CompactError:
        raise
    except BaseException as e:
        if not is_oom(e):
            raise
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        hint = (fix.format(smaller=smaller(batch_size), batch=batch_size) if batch_size > 1 else
                "it does not fit even one sample: use a smaller model, shorter context or image size, or a machine "
                "with more memory")
        raise CompactError(f"out of memory {what} at batch size {batch_size} ({first}); {hint}") from None

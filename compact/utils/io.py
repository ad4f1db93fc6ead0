"""Writing artifacts so that a crash or a bad input never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from compact.errors import CompactError
from compact.utils.faults import failpoint

log = logging.getLogger(__name__)


_HELD: dict[str, int] = {}  # lock file -> nesting depth in this process (a stage that calls another stage)


def lock_path(path: Path) -> Path:
    path = Path(path).resolve()
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def output_lock(path: Path, wait: bool = False) -> Iterator[None]:
    """One compact process writes an output folder at a time. The lock is `.<name>.lock` beside the folder (the
    folder itself is replaced by a rename) holding the writer's pid; a second writer gets a one-line error naming
    it. flock, not a lock library, because the message needs the holder's pid and the kernel drops the lock when
    its process dies (kill -9 included): a killed run's file stays behind holding a dead pid, and the next run
    takes it over. Removed on a clean exit. Re-entrant in one process. `wait=True` (shared caches, where the second
    process wants the first one's result): block until the holder is done instead of raising."""
    lock = lock_path(path)
    key = str(lock)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock (compact's supported platforms are Linux and macOS)
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            if wait:
                log.warning("waiting for compact process %s to finish %s", holder, path)
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                os.close(fd)
                raise CompactError(f"output {Path(path)} is being written by another compact process (pid {holder}); "
                                   "wait for it to finish, or write to another folder") from None
        try:  # the holder we waited on may have removed the file: then lock the new one
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = 1
        yield
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it, so nobody locks a file that is about to vanish
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def locked(out_arg: str):
    """Decorator: hold `output_lock` on the function's `out_arg` argument for the whole call."""
    import functools
    import inspect

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            out = sig.bind(*args, **kwargs).arguments.get(out_arg)
            if out is None:
                return fn(*args, **kwargs)
            with output_lock(Path(out)):
                return fn(*args, **kwargs)

        return inner

    return wrap


def check_output_dir(path: Path, overwrite: bool) -> None:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CompactError(f"output {path} exists and is not a folder; choose another path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CompactError(f"output folder {path} is not empty; pass --overwrite to replace it or choose another path")


@contextlib.contextmanager
def atomic_dir(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path` in one rename, on error it is removed."""
    path = Path(path)
    check_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(lock_path(path)) in _HELD:
        recover_interrupted(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
        failpoint("atomic_dir.swap")
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_interrupted(path: Path) -> bool:
    """Undo what a kill left around `path` (call it only while holding the output's lock, so no other writer is
    using these files). Killed between atomic_dir's two renames, the previous folder is at `.NAME.old-PID` and
    nothing is at NAME: put it back (returns True). Then remove the leftovers: unfinished `.NAME.tmp-*` folders and
    other `.NAME.old-*`."""
    path = Path(path)
    restored = False
    olds = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime_ns)
    if not path.exists() and olds:
        os.replace(olds.pop(), path)
        restored = True
    for stale in [*path.parent.glob(f".{path.name}.tmp-*"), *olds]:
        shutil.rmtree(stale, ignore_errors=True)
    return restored


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CompactError(f"{path} is missing; {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CompactError(f"{path} is not valid JSON ({e}); {what}") from None


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def disk_full(exc: BaseException) -> Optional[str]:
    """If `exc` (or what caused it) is a full disk or an exhausted quota, the file being written ("" when it is not
    known); else None. Libraries that write through Rust or C++ (safetensors, onnx, openvino) raise their own
    types, so their message is read too."""
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            return str(e.filename or "")
        text = str(e)
        if any(w in text for w in ("No space left on device", "Disk quota exceeded", "StorageFull",
                                   "os error 28", "os error 122")):
            return ""
        e = e.__cause__ or e.__context__
    return None


def raise_if_disk_full(exc: BaseException) -> None:
    """For broad `except Exception` blocks that turn a library's failure into advice: a full disk is re-raised
    as it is (the CLI names it in one line) rather than reported as, say, an op the exporter cannot express."""
    if disk_full(exc) is not None:
        raise exc

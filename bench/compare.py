"""`compact bench compare A B`: two bundles, or two runtimes on one bundle, timed in alternating blocks in one process
(A B B A A B ...), reported as the ratio of medians with a paired-bootstrap 95% CI (see `bench.harness`).

    res = compare_bundles("bundles/teacher-onnx", "bundles/student-onnx", CompareConfig(batch=8))
    res["image"]["speedup_b_over_a"]     # > 1: B is faster than A

Each side gets the inputs its own manifest asks for (a teacher and a student may differ in image size), built
from the same real samples, so the ratio is "the same work on B relative to A".
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from bench.harness import TimingConfig, compare_callables
from bench.inputs import InputConfig, load_tokenizer, tower_feeds
from bench.runtimes import RuntimeConfig, get_runtime
from bench.run import TOWERS, model_name
from compact.errors import CompactError
from export.bundle import read_manifest

log = logging.getLogger(__name__)


@dataclass
class CompareConfig:
    runtime_a: str = "onnxruntime"
    runtime_b: Optional[str] = None  # None: the same as runtime_a
    towers: tuple[str, ...] = TOWERS
    batch: int = 1
    timing: TimingConfig = field(default_factory=lambda: TimingConfig(min_iters=30, max_iters=3000))
    inputs: InputConfig = field(default_factory=InputConfig)
    threads: Optional[int] = None
    model_a: Any = None  # torch runtimes: the model for side A / B instead of the manifest's source
    model_b: Any = None

    def __post_init__(self) -> None:
        if self.batch <= 0:
            raise CompactError(f"batch size must be positive, got {self.batch}")
        if self.threads is not None and self.threads <= 0:
            raise CompactError(f"thread count must be positive, got {self.threads}")
        for name in (self.runtime_a, self.runtime_b or self.runtime_a):
            get_runtime(name)


def side_callable(bundle: Path, runtime: str, tower: str, batch: int, inputs: InputConfig, threads: int,
                  model: Any = None, optimized: bool = False) -> tuple[Callable[[], Any], Callable[[], None], dict]:
    """(the timed call, its cleanup, facts) for one side: `runtime` running `tower` of `bundle` on `batch`."""
    rt = get_runtime(runtime)
    rt.require()
    manifest = read_manifest(Path(bundle))
    why = rt.accepts(manifest)
    if why:
        raise CompactError(f"cannot run {bundle} with {runtime}: {why}")
    handle = rt.load(Path(bundle), manifest, tower, RuntimeConfig(threads=threads, model=model, optimized=optimized))
    tok = load_tokenizer(Path(bundle), manifest) if tower == "text" else None
    x = rt.prepare(handle, tower_feeds(Path(bundle), manifest, tower, batch, inputs, tok))

    def call():
        y = rt.run(handle, x)
        rt.synchronize(handle)
        return y

    facts = {"bundle": str(bundle), "model": model_name(manifest, Path(bundle)), "runtime": runtime}
    return call, (lambda: rt.close(handle)), facts


def compare_bundles(a: Path, b: Path, cfg: CompareConfig = CompareConfig()) -> dict:
    """{tower: RatioStats dict + "a"/"b" facts}, plus the settings used."""
    threads = cfg.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    out: dict = {"kind": "compact-bench-compare", "batch": cfg.batch, "threads": threads,
                 "timing": cfg.timing.to_dict(), "definition": "ratio_b_over_a = median(B) / median(A); "
                 "speedup_b_over_a = median(A) / median(B)"}
    for tower in cfg.towers:
        fa, close_a, facts_a = side_callable(a, cfg.runtime_a, tower, cfg.batch, cfg.inputs, threads, cfg.model_a)
        fb, close_b, facts_b = side_callable(b, cfg.runtime_b or cfg.runtime_a, tower, cfg.batch, cfg.inputs,
                                             threads, cfg.model_b)
        try:
            stats = compare_callables(fa, fb, cfg.timing)
        finally:
            close_a()
            close_b()
        out[tower] = {**stats.to_dict(), "a_facts": facts_a, "b_facts": facts_b}
    return out

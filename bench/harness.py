"""Timing core: time a zero-argument callable, or two of them alternated in blocks, with a stopping rule on the CI.

    cfg = TimingConfig(warmup=5, min_iters=20, max_iters=2000, target_ci=0.02, max_seconds=10)
    stats = time_callable(lambda: sess.run(None, feeds), cfg)          # TimingStats
    ratio = compare_callables(run_fp32, run_int8, cfg)                  # RatioStats
    ratio.speedup_b_over_a      # > 1: b is faster than a

Both take plain callables, so any runtime (torch, onnxruntime, OpenVINO, ...) can be timed; the caller makes
the callable synchronous (e.g. `torch.cuda.synchronize()` inside it). Timing uses `time.perf_counter`, never
CUDA events, so the same code runs everywhere.

Stopping rule: after `min_iters`, stop as soon as the 95% CI of the median (order statistics, distribution
free) is within ±`target_ci` of the median, or at `max_iters` / `max_seconds`. `iters` instead fixes the count.
For a pair, the CI is a paired bootstrap of the ratio of medians.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from compact.errors import CompactError

log = logging.getLogger(__name__)

Z95 = 1.959963984540054
BOOTSTRAP = 2000


@dataclass
class TimingConfig:
    warmup: int = 5  # untimed calls first (lazy init, caches, JIT)
    iters: Optional[int] = None  # a fixed count; None: adaptive between min_iters and max_iters
    min_iters: int = 20
    max_iters: int = 2000
    target_ci: float = 0.02  # stop when the 95% CI of the median is within ±2% of it
    max_seconds: float = 20.0  # wall-clock cap on the timed loop (after min_iters)
    threads: Optional[int] = None  # pin torch's intra-op threads while timing; runtimes pin their own at load
    seed: int = 0  # bootstrap resampling
    # Pairs alternate in blocks: `settle` untimed calls, then `block` timed ones, of one callable, then the other
    # (AB BA AB ...). Alternating call by call is wrong wherever a runtime keeps its worker threads spinning after
    # a call (onnxruntime, OpenVINO/TBB, OpenMP): the idle pool of one steals cores from the other's next call.
    # On 2 cores that moved a measured int8/fp32 ratio from 1.14x (each timed alone) to 1.61x.
    # The untimed settle lasts at least `settle` calls and `settle_s` seconds: onnxruntime's idle pool slowed the
    # other session's calls for 35-60 ms after a switch here (10-15 calls of a 3 ms graph), so a count alone
    # left most of a block contaminated (student text tower, 127 tokens: fp32 3.6 / int8 3.2 ms timed that way,
    # 3.0 / 2.2 ms in steady state).
    block: int = 8
    settle: int = 2
    settle_s: float = 0.15

    def __post_init__(self) -> None:
        if self.iters is not None and self.iters <= 0:
            raise CompactError(f"iteration count must be positive, got {self.iters}")
        if self.warmup < 0:
            raise CompactError(f"warm-up count must be zero or more, got {self.warmup}")
        if self.min_iters <= 0 or self.max_iters <= 0:
            raise CompactError(f"iteration counts must be positive, got min {self.min_iters}, max {self.max_iters}")
        if self.max_iters < self.min_iters:
            raise CompactError(f"max_iters ({self.max_iters}) is below min_iters ({self.min_iters})")
        if self.threads is not None and self.threads <= 0:
            raise CompactError(f"thread count must be positive, got {self.threads}")
        if not 0 < self.target_ci < 1:
            raise CompactError(f"target_ci is a fraction of the median in (0, 1), got {self.target_ci}")
        if self.max_seconds <= 0:
            raise CompactError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.block <= 0 or self.settle < 0 or self.settle_s < 0:
            raise CompactError(f"block must be positive and settle, settle_s zero or more, got {self.block}, "
                               f"{self.settle}, {self.settle_s}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TimingStats:
    """Seconds per call. `ci_low_s`/`ci_high_s` bound the median (95%); `converged` says the CI target was met."""

    n: int
    median_s: float
    mean_s: float
    std_s: float
    min_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    ci_low_s: float
    ci_high_s: float
    converged: bool
    stop_reason: str  # "fixed" | "ci" | "max_iters" | "max_seconds"
    total_s: float
    warmup: int
    threads: Optional[int]
    samples_s: list[float] = field(default_factory=list, repr=False)

    @property
    def ci_rel(self) -> float:
        """Half-width of the median's CI relative to the median."""
        return (self.ci_high_s - self.ci_low_s) / 2 / self.median_s if self.median_s > 0 else math.inf

    def to_dict(self, samples: bool = True) -> dict:
        """Milliseconds, for reports."""
        d = {"n": self.n, "converged": self.converged, "stop_reason": self.stop_reason, "warmup": self.warmup,
             "threads": self.threads, "total_s": round(self.total_s, 4), "ci_rel": round(self.ci_rel, 5)}
        for k in ("median", "mean", "std", "min", "p50", "p90", "p99", "ci_low", "ci_high"):
            d[f"{k}_ms"] = round(getattr(self, f"{k}_s") * 1e3, 6)
        if samples:
            d["samples_ms"] = [round(s * 1e3, 6) for s in self.samples_s]
        return d


@dataclass
class RatioStats:
    """Two callables timed in alternating blocks. `ratio_b_over_a` = median_b / median_a (time of b relative to a, < 1:
    b is faster); `speedup_b_over_a` = median_a / median_b (> 1: b is faster). CIs are 95%, paired bootstrap."""

    a: TimingStats
    b: TimingStats
    ratio_b_over_a: float
    ratio_ci_low: float
    ratio_ci_high: float
    speedup_b_over_a: float
    speedup_ci_low: float
    speedup_ci_high: float
    converged: bool
    stop_reason: str

    def to_dict(self, samples: bool = False) -> dict:
        d = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items() if k not in ("a", "b")}
        d["a"] = self.a.to_dict(samples)
        d["b"] = self.b.to_dict(samples)
        return d


def percentile(samples, q: float) -> float:
    """Linear-interpolated percentile, as numpy's default."""
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def median_ci(samples, confidence_z: float = Z95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics: ranks n/2 ∓ z·√n/2 of the sorted samples."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    half = confidence_z * math.sqrt(n) / 2
    lo = max(int(math.floor(n / 2 - half)), 0)
    hi = min(int(math.ceil(n / 2 + half)), n - 1)
    return float(x[lo]), float(x[hi])


def summarize(samples: list[float], converged: bool, stop_reason: str, total_s: float, warmup: int,
              threads: Optional[int]) -> TimingStats:
    x = np.asarray(samples, dtype=np.float64)
    lo, hi = median_ci(x)
    p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    return TimingStats(n=len(x), median_s=p50, mean_s=float(x.mean()), std_s=float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                       min_s=float(x.min()), p50_s=p50, p90_s=p90, p99_s=p99, ci_low_s=lo, ci_high_s=hi,
                       converged=converged, stop_reason=stop_reason, total_s=total_s, warmup=warmup, threads=threads,
                       samples_s=list(samples))


def _ci_ok(samples: list[float], target: float) -> bool:
    lo, hi = median_ci(samples)
    med = float(np.median(samples))
    return med > 0 and (hi - lo) / 2 <= target * med


@contextlib.contextmanager
def pinned_threads(threads: Optional[int]) -> Iterator[None]:
    """torch's intra-op threads set to `threads` for the block (only when torch is already imported)."""
    torch = sys.modules.get("torch")
    if not threads or torch is None:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _next_check(n: int) -> int:
    """Check the stopping rule at geometrically spaced counts, so its cost stays negligible."""
    return n + max(5, n // 8)


def _untimed(fn: Callable[[], object], calls: int, seconds: float) -> None:
    """Call `fn` untimed at least `calls` times and for at least `seconds`."""
    done, start = 0, time.perf_counter()
    while done < calls or time.perf_counter() - start < seconds:
        fn()
        done += 1


def time_callable(fn: Callable[[], object], cfg: TimingConfig = TimingConfig()) -> TimingStats:
    """Time `fn()` per call (seconds) under `cfg`'s warm-up and stopping rule."""
    clock = time.perf_counter
    with pinned_threads(cfg.threads):
        # The warm-up also lasts `settle_s` (when there is one): a runtime timed just before may still hold cores.
        _untimed(fn, cfg.warmup, cfg.settle_s if cfg.warmup else 0.0)
        samples: list[float] = []
        append = samples.append
        fixed = cfg.iters is not None
        limit = cfg.iters if fixed else cfg.max_iters
        check = cfg.min_iters
        start = clock()
        reason = "fixed" if fixed else "max_iters"
        converged = fixed
        while len(samples) < limit:
            t0 = clock()
            fn()
            append(clock() - t0)
            if not fixed and len(samples) >= check:
                if _ci_ok(samples, cfg.target_ci):
                    reason, converged = "ci", True
                    break
                if clock() - start > cfg.max_seconds:
                    reason = "max_seconds"
                    break
                check = _next_check(len(samples))
        total = clock() - start
    if not fixed and not converged:
        log.info("median CI did not reach ±%.1f%% (%s after %d calls)", cfg.target_ci * 100, reason, len(samples))
    return summarize(samples, converged, reason, total, cfg.warmup, cfg.threads)


def ratio_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = BOOTSTRAP) -> tuple[float, float, float]:
    """median(b) / median(a) and its 95% paired-bootstrap CI (pairs resampled together: drift cancels)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ratio = float(np.median(b) / np.median(a))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    boot = np.median(b[idx], axis=1) / np.median(a[idx], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return ratio, float(lo), float(hi)


def compare_callables(fn_a: Callable[[], object], fn_b: Callable[[], object],
                      cfg: TimingConfig = TimingConfig()) -> RatioStats:
    """Time a and b in one process, alternating blocks (AB BA AB ...: each round swaps who goes first), so load,
    clock and thermal drift hit both alike while each block runs in its own steady state: the first `settle`
    calls, and at least `settle_s` seconds, of a block are untimed. Stops when the ratio's CI is within ±target_ci, or at the caps."""
    clock = time.perf_counter
    with pinned_threads(cfg.threads):
        for _ in range(cfg.warmup):
            fn_a()
            fn_b()
        sa: list[float] = []
        sb: list[float] = []
        fixed = cfg.iters is not None
        limit = cfg.iters if fixed else cfg.max_iters
        check = cfg.min_iters
        start = clock()
        reason, converged = ("fixed", True) if fixed else ("max_iters", False)
        rounds = 0
        while len(sa) < limit:
            n = min(cfg.block, limit - len(sa))
            for is_a in ((True, False) if rounds % 2 == 0 else (False, True)):
                fn, out = (fn_a, sa) if is_a else (fn_b, sb)
                _untimed(fn, cfg.settle, cfg.settle_s)
                for _ in range(n):
                    t0 = clock()
                    fn()
                    out.append(clock() - t0)
            rounds += 1
            if not fixed and len(sa) >= check:
                r, lo, hi = ratio_ci(np.asarray(sa), np.asarray(sb), cfg.seed, n_boot=500)
                if (hi - lo) / 2 <= cfg.target_ci * r:
                    reason, converged = "ci", True
                    break
                if clock() - start > cfg.max_seconds:
                    reason = "max_seconds"
                    break
                check = max(_next_check(len(sa)), len(sa) + len(sa) // 4)
        total = clock() - start
    ratio, lo, hi = ratio_ci(np.asarray(sa), np.asarray(sb), cfg.seed)
    a = summarize(sa, converged, reason, total, cfg.warmup, cfg.threads)
    b = summarize(sb, converged, reason, total, cfg.warmup, cfg.threads)
    return RatioStats(a, b, ratio, lo, hi, 1 / ratio, 1 / hi, 1 / lo, converged, reason)

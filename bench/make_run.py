"""`make run`'s pipeline (`compact run`, the built-in default) from an empty cache, each stage against its budget.

    python -m bench.make_run                     # into a temporary folder, with a temporary $COMPACT_CACHE
    python -m bench.make_run --keep runs/fresh   # keep the run folder

The pipeline runs in a child process (exactly the CLI users run), with a fresh cache so the reference benchmark
and teacher are built too. Each stage's seconds come from its stage.json; the budgets add up to the README's
ten minutes less the install (about 2.5 minutes here). Also records the machine's fp32 GEMM rate before and after,
so a slow run can be told apart from a slow machine (a shared VM's second core is sometimes much slower).
Writes runs/bench/make_run.json and prints a Markdown table; exits 1 when the total is over budget.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Seconds per stage of the default run on this project's 2-core machines (install excluded).
BUDGET = {"reference": 170.0, "distill": 150.0, "prune": 80.0, "quantize": 60.0, "export": 25.0, "eval": 20.0,
          "bench": 30.0, "report": 5.0}
TOTAL_BUDGET = 450.0  # + ~150 s install = the README's ten minutes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, default=None, help="run into this folder (must not exist) and keep it")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/make_run.json"))
    args = ap.parse_args(argv)
    from compact.pipeline.run import gemm_gflops

    before = gemm_gflops(1024, 1.0)
    with tempfile.TemporaryDirectory(prefix="compact-makerun-") as tmp:
        run_dir = args.keep or Path(tmp) / "run"
        env = {**os.environ, "COMPACT_CACHE": str(Path(tmp) / "cache")}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "compact.cli.main", "run", "-o", str(run_dir)], env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"compact run failed (exit {proc.returncode})", file=sys.stderr)
            return proc.returncode
        report = json.loads((run_dir / "report.json").read_text())
        stages = {k: v["seconds"] for k, v in report["stages"].items()}
    after = gemm_gflops(1024, 1.0)
    rows = [{"stage": s, "seconds": stages.get(s), "budget": b,
             "over": stages.get(s) is not None and stages[s] > b} for s, b in BUDGET.items()]
    total = sum(v for v in stages.values() if v)
    result = {"wall_seconds": round(wall, 1), "stage_total_seconds": round(total, 1), "budget_seconds": TOTAL_BUDGET,
              "within_budget": total <= TOTAL_BUDGET, "gemm_gflops_before": round(before, 1),
              "gemm_gflops_after": round(after, 1), "machine": report["machine"], "stages": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print("| stage | seconds | budget |\n|---|---|---|")
    for r in rows:
        flag = " **over**" if r["over"] else ""
        print(f"| {r['stage']} | {r['seconds']} | {r['budget']:.0f}{flag} |")
    print(f"| total | {total:.1f} (wall {wall:.1f}) | {TOTAL_BUDGET:.0f} |")
    print(f"fp32 GEMM {before:.0f} GFLOP/s before, {after:.0f} after; wrote {args.out}")
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())

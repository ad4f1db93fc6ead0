"""Distillation throughput with the teacher-embedding cache against an online teacher, side by side in one run.

    python -m bench.distill_cache                                   # reference teacher, documented recipe
    python -m bench.distill_cache --recipe bench/recipes/cache-vitb32.yaml --stage vision --steps 4
                                                                    # a real-size teacher (ViT-B-32)

Both runs train the same student from the same init on the same batches; only where the teacher's embeddings
come from differs. Writes runs/bench/distill_cache.json. The goal (issue #3) is a ratio >= 3x.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def measure(recipe_name: str, steps: int, stage: str, out: Path) -> dict:
    from compact.distill.cache import CacheConfig, TeacherCache, build_cache
    from compact.distill.recipe import load_recipe
    from compact.distill.trainer import DistillOptions, Distiller

    recipe = load_recipe(recipe_name)
    st = next(s for s in recipe.stages if s.name == stage)
    recipe = replace(recipe, stages=[replace(st, steps=steps)], val_every=0, checkpoint_every=10**9, val_limit=64)
    tmp = Path(tempfile.mkdtemp(prefix="compact-bench-"))
    d = Distiller(recipe, DistillOptions(out=tmp / "student"))
    d.setup()
    d.val_data = None  # time training steps only
    init = {k: v.clone() for k, v in d.student.state_dict().items()}

    def timed() -> float:
        d.student.load_state_dict(init)
        t0 = time.perf_counter()
        d.train()
        return time.perf_counter() - t0

    online_s = timed()
    t0 = time.perf_counter()
    texts = d.teacher_texts
    build_cache(d.teacher, d.train_data, texts, tmp / "cache", CacheConfig())
    cache_build_s = time.perf_counter() - t0
    d.targets = TeacherCache(tmp / "cache")
    cached_s = timed()
    samples = steps * st.batch_size
    result = {
        "recipe": recipe_name, "teacher": recipe.teacher, "stage": stage, "steps": steps, "batch_size": st.batch_size,
        "online_samples_per_s": round(samples / online_s, 1),
        "cached_samples_per_s": round(samples / cached_s, 1),
        "speedup": round(online_s / cached_s, 2),
        "cache_build_seconds": round(cache_build_s, 1),
        "cache_images": len(d.train_data.images), "cache_texts": len(texts),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text()) if out.is_file() else []
    runs = [r for r in (runs if isinstance(runs, list) else [runs])
            if (r.get("recipe"), r.get("stage")) != (recipe_name, stage)] + [result]
    out.write_text(json.dumps(runs, indent=2))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="reference")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--stage", default="align", choices=["text", "vision", "align"])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/distill_cache.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    r = measure(a.recipe, a.steps, a.stage, a.out)
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()

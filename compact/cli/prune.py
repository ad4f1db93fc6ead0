"""`compact prune MODEL -o OUT`."""

from __future__ import annotations

from pathlib import Path

import click

from compact.cli.progress import console, stage_bars

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command("prune", context_settings=CONTEXT)
@click.argument("model")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--keep", "keep_params", type=float, default=0.5, show_default=True,
              help="Fraction of the parameters to keep (0-1].")
@click.option("--importance", default="magnitude", show_default=True,
              help="Importance metric: magnitude, taylor, mope (see the registry).")
@click.option("--granularity", default="heads,mlp,layers", show_default=True,
              help="Comma-separated units to remove: heads, mlp, layers.")
@click.option("--langs", default=None, help="Trim the vocabulary to these languages' tokens (comma-separated).")
@click.option("--calib", default="reference:val", show_default=True, help="Calibration data (taylor, mope, vocab).")
@click.option("--calib-limit", type=int, default=500, show_default=True)
@click.option("--eval-data", default="reference:test", show_default=True, help="Evaluate before/after on this data.")
@click.option("--recover-steps", type=int, default=0, show_default=True,
              help="Distillation steps from the unpruned model after pruning (0 = none).")
@click.option("--towers", default="vision,text", show_default=True)
@click.option("--overwrite", is_flag=True)
def prune(model, out, keep_params, importance, granularity, langs, calib, calib_limit, eval_data, recover_steps,
          towers, overwrite) -> None:
    """Structured pruning: remove heads, FFN neurons, layers and vocabulary rows for real (smaller tensors).

    MODEL is any teacher spec (compact folder, open_clip, hf:, reference).

    \b
    Example:
      compact prune reference -o runs/teacher-pruned --keep 0.5 --langs en --recover-steps 200
    Not built yet: latency-aware importance and latency targets (they need the bench harness), iterative
    prune -> recover schedules.
    """
    from compact.cli.report import eval_table
    from compact.errors import CompactError
    from compact.prune.prune import PruneConfig, run_prune

    if recover_steps < 0 or calib_limit <= 0:
        raise CompactError("--recover-steps must be >= 0 and --calib-limit >= 1")
    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip()) if s else None  # noqa: E731
    cfg = PruneConfig(importance=importance, keep_params=keep_params, granularity=split(granularity),
                      langs=split(langs), calib=calib, calib_limit=calib_limit, eval_data=eval_data or None,
                      recover_steps=recover_steps, prune_towers=split(towers))
    with stage_bars() as bars:
        rep = run_prune(model, cfg, out, overwrite, progress=bars)
    p = rep["parameters"]
    console.print(f"parameters {p['before']['total']:,} -> {p['after']['total']:,} ({p['ratio']:.1%}); "
                  f"image {p['before']['image']:,} -> {p['after']['image']:,}, text {p['before']['text']:,} -> "
                  f"{p['after']['text']:,}")
    f = rep["flops"]
    console.print(f"FLOPs per image {f['before']['image']:,} -> {f['after']['image']:,}; per text "
                  f"{f['before']['text']:,} -> {f['after']['text']:,}")
    for k, r in rep.get("eval", {}).items():
        console.print(eval_table(r, title=k.replace("_", " ")))
    console.print(f"saved to {out}")

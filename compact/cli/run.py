"""`compact run [RECIPE.yaml] -o OUT`."""

from __future__ import annotations

from pathlib import Path

import click

from compact.cli.progress import console, stage_bars

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command("run", context_settings=CONTEXT)
@click.argument("recipe", required=False)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/compact-run"),
              show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT that is not a compact run folder.")
def run(recipe, out, overwrite) -> None:
    """Teacher -> distilled multilingual student -> pruned -> quantized -> exported -> benchmarked, with the
    per-language quality of each model, in one command. Ends with OUT/report.html.

    \b
    With no RECIPE it runs the built-in default offline on the reference benchmark (builds it if needed).
    Re-running resumes: stages whose config and inputs are unchanged are skipped.
    Recipes for real teachers (they need the network): recipes/*.yaml.
    Example:
      compact run
      compact run recipes/openai-vit-b32-multilingual.yaml -o runs/openai
    """
    from compact.pipeline.recipe import load_pipeline
    from compact.pipeline.run import run_pipeline

    r = load_pipeline(recipe)

    def stage_line(stage: str, what: str) -> None:
        if what == "skip":
            console.print(f"{stage}: unchanged, skipped", markup=False)
        elif what == "run":
            console.print(f"{stage}: running", markup=False)

    with stage_bars() as bars:
        res = run_pipeline(r, out, progress=bars, on_stage=stage_line, overwrite=overwrite)
    for name, s in res["stages"].items():
        console.print(f"{name:<10} {s.get('seconds', 0):>7.1f} s")
    m = res["machine"]
    console.print(f"machine: {m['cores']} cores, torch {m['torch_threads']} threads, bf16 autocast "
                  f"{'on' if m['bf16_autocast'] else 'off'}, fp32 GEMM {m['gemm_fp32_gflops']:.0f} GFLOP/s "
                  f"(timings in {out / 'report.json'})")
    for what, why in sorted(res["skipped"].items()):
        console.print(f"skipped {what}: {why}", soft_wrap=True)
    console.print(f"report: {out / 'report.html'}")

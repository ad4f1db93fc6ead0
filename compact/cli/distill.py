"""`compact distill run|cache|recipes`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from compact.cli.progress import console, stage_bars

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
def distill() -> None:
    """Distil a small multilingual student (image + text towers) from a teacher."""


def _recipe(recipe: str, teacher, data, tokenizer, langs, seed, parallel, captions=None, translations=None):
    from compact.distill.recipe import load_recipe

    r = load_recipe(recipe)
    if teacher:
        r.teacher = teacher
    if data:
        r.data = data
    if tokenizer:
        r.student = replace(r.student, tokenizer=replace(r.student.tokenizer, kind=tokenizer))
    if langs:
        r.langs = [x.strip() for x in langs.split(",") if x.strip()]
    if seed is not None:
        r.seed = seed
    if parallel:
        r.parallel = list(r.parallel) + [str(p) for p in parallel]
    if captions or translations:
        r.captions_file = str(captions) if captions else None
        r.translations_file = str(translations) if translations else None
    return r


@distill.command("run", context_settings=CONTEXT)
@click.argument("recipe")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output model folder (with report.json).")
@click.option("--teacher", default=None, help="Override the recipe's teacher spec.")
@click.option("--data", default=None, help="Override the recipe's training data.")
@click.option("--tokenizer", type=click.Choice(["trimmed", "trained", "bytes"]), default=None,
              help="Override the student's tokenizer kind.")
@click.option("--langs", default=None, help="Comma-separated target languages (overrides the recipe).")
@click.option("--parallel", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Extra parallel-text TSV (columns en, text, lang); repeatable.")
@click.option("--captions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="English captions (CSV/TSV/JSONL with id, caption) for the text stage ...")
@click.option("--translations", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="... and their translations (id, lang, text).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Teacher-embedding cache from `compact distill cache` (default: run the teacher online).")
@click.option("--seed", type=int, default=None)
@click.option("--max-steps", type=int, default=None, help="Cap every stage at this many steps.")
@click.option("--epochs", type=float, default=None, help="Train every stage for this many passes over its data.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint of an interrupted run.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--no-eval", "no_eval", is_flag=True,
              help="Skip the test-split evaluation of student and teacher at the end (`compact eval` runs it later).")
def run(recipe, out, teacher, data, tokenizer, langs, parallel, captions, translations, cache, seed, max_steps, epochs,
        resume, overwrite, no_eval) -> None:
    """Train a student with RECIPE (a YAML file or a shipped name, see `compact distill recipes`).

    \b
    Example:
      compact reference build
      compact distill run reference -o runs/student
    Also runs under torchrun --nproc_per_node=N (DDP, gloo on CPU).
    """
    from compact.cli.report import eval_table
    from compact.distill.trainer import DistillOptions, run_distill
    from compact.errors import CompactError

    if max_steps is not None and max_steps <= 0:
        raise CompactError("--max-steps must be >= 1")
    if epochs is not None and epochs <= 0:
        raise CompactError("--epochs must be > 0")
    r = _recipe(recipe, teacher, data, tokenizer, langs, seed, parallel, captions, translations)
    opts = DistillOptions(out=out, cache=cache, resume=resume, overwrite=overwrite, max_steps=max_steps, epochs=epochs,
                          evaluate=not no_eval)
    with stage_bars() as bars:
        report = run_distill(r, opts, progress=bars)
    if "student" not in report:  # a torchrun rank other than 0: rank 0 writes and reports
        return
    if report.get("eval"):
        console.print(eval_table(report["eval"]["teacher"], title="teacher, test split"))
        console.print(eval_table(report["eval"]["student"], title="student, test split"))
    p, tp = report["student"]["parameters"], report["teacher"]["parameters"]
    console.print(f"student {p['total'] / 1e6:.2f}M parameters (image {p['image'] / 1e6:.2f}M, text "
                  f"{p['text'] / 1e6:.2f}M) = {report['param_ratio']:.3f} of the teacher's {tp['total'] / 1e6:.2f}M")
    tk = report["student"]["tokenizer"]
    console.print(f"tokenizer {tk['kind']}: vocab {tk.get('vocab_before') or '-'} -> {tk['vocab_after']}; "
                  f"train {report['seconds']['train']}s; saved to {out}")


@distill.command("cache", context_settings=CONTEXT)
@click.argument("recipe")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--teacher", default=None)
@click.option("--data", default=None)
@click.option("--langs", default=None)
@click.option("--parallel", multiple=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--captions", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--translations", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--shard-size", type=int, default=4096, show_default=True)
@click.option("--overwrite", is_flag=True)
def cache(recipe, out, teacher, data, langs, parallel, captions, translations, shard_size, overwrite) -> None:
    """Embed the recipe's training images and English texts with the teacher, once (sharded, resumable).

    Example: compact distill cache reference -o runs/teacher-cache
    """
    from compact.distill.cache import CacheConfig
    from compact.distill.trainer import build_recipe_cache
    from compact.errors import CompactError

    if shard_size <= 0:
        raise CompactError("--shard-size must be >= 1")
    r = _recipe(recipe, teacher, data, None, langs, None, parallel, captions, translations)
    with stage_bars() as bars:
        m = build_recipe_cache(r, out, CacheConfig(shard_size=shard_size), overwrite=overwrite, progress=bars.simple)
    console.print(f"cached {m['n_images']} image and {m['n_texts']} text embeddings of teacher {m['teacher_hash']} "
                  f"in {out}")


@distill.command("recipes", context_settings=CONTEXT)
def recipes() -> None:
    """List the shipped recipes."""
    from compact.distill.recipe import RECIPES, shipped_recipes

    for name in shipped_recipes():
        first = (RECIPES / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        console.print(f"{name:<20} {first}")

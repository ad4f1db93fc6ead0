"""`compact reference build|eval`."""

from __future__ import annotations

from pathlib import Path

import click

from compact.cli.progress import console, stage_bars
from compact.cli.report import eval_table

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT)
def reference() -> None:
    """The reference benchmark: generated multilingual image-caption data and an English-only teacher."""


SIZE = click.option("--size", type=click.Choice(["full", "small", "quick"]), default=None,
                    help="full: the benchmark (~9 min); small: compact run's default (~2 min); quick: tests.")


def _size(size, quick) -> str:
    return size or ("quick" if quick else "full")


@reference.command(context_settings=CONTEXT)
@SIZE
@click.option("--quick", is_flag=True, help="Same as --size quick (about a minute).")
@click.option("--seed", default=0, show_default=True, help="Seed for data and training.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to build (default: $COMPACT_CACHE or ~/.cache/compact).")
@click.option("--overwrite", is_flag=True, help="Rebuild even if a cached build exists.")
def build(size, quick: bool, seed: int, cache_dir: Path | None, overwrite: bool) -> None:
    """Generate the benchmark, train the reference teacher and evaluate it (cached; resumes after a kill).

    Example: compact reference build --quick
    """
    from compact.reference.build import ReferenceBuildConfig, build_reference

    cfg = ReferenceBuildConfig(size=_size(size, quick), seed=seed, cache=cache_dir, overwrite=overwrite)
    with stage_bars() as bars:
        summary = build_reference(cfg, progress=bars)
    tr = summary["training"]
    console.print(eval_table(summary["eval"], title="reference teacher, test split"))
    console.print(f"teacher: {summary['teacher']}  ({tr['parameters']['total'] / 1e6:.2f}M parameters: "
                  f"image {tr['parameters']['image'] / 1e6:.2f}M, text {tr['parameters']['text'] / 1e6:.2f}M)")
    console.print(f"data: {summary['data']}")
    console.print(f"time: data {summary['data_seconds']}s, training {summary['train_seconds']}s, "
                  f"total {summary['total_seconds']}s (0 = reused from cache)")


@reference.command("eval", context_settings=CONTEXT)
@SIZE
@click.option("--quick", is_flag=True, help="Same as --size quick.")
@click.option("--seed", default=0, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--langs", default=None, help="Comma-separated languages (default: all).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for report.json.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def eval_reference(size, quick, seed, cache_dir, split, langs, output, overwrite) -> None:
    """Evaluate the reference teacher per language on the reference benchmark.

    Example: compact reference eval --langs en,de,zh -o runs/teacher-eval
    """
    from compact.cli.eval import write_report
    from compact.errors import CompactError
    from compact.reference.build import evaluate_reference, reference_paths

    size = _size(size, quick)
    paths = reference_paths(size, seed, cache_dir)
    if not (paths.teacher / "open_clip_config.json").is_file():
        raise CompactError(f"no reference build in {paths.root}; run `compact reference build"
                           f"{'' if size == 'full' else ' --size ' + size}` first")
    lang_list = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    with stage_bars() as bars:
        report = evaluate_reference(paths, split, lang_list, progress=bars)
    console.print(eval_table(report, title=f"reference teacher, {split} split"))
    if output:
        write_report(report, output, overwrite)

"""The `compact` command line. Commands are thin: parse, build a config, call the library, print a summary."""

from __future__ import annotations

import logging
import sys

import click

from compact.errors import CompactError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class CompactGroup(click.Group):
    """Turns user errors (CompactError) into one line and a non-zero exit, without a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CompactError as e:
            raise click.ClickException(" ".join(str(e).split())) from None
        except KeyboardInterrupt:
            click.echo("interrupted; re-run the same command to resume", err=True)
            sys.exit(130)
        except Exception as e:
            from compact.utils.io import disk_full

            where = disk_full(e)
            if where is None:
                raise
            # Every writer goes through a temporary file or folder that is removed on error, so the output is the
            # previous one or absent; a stage's checkpoint is the last complete one.
            raise click.ClickException(f"no space left on the device{f' writing {where}' if where else ''}; free "
                                       "some space or write to another disk (-o), then re-run the same command "
                                       "(nothing was left half-written)") from None


@click.group(cls=CompactGroup, context_settings=CONTEXT)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option("--allow-pickle", is_flag=True,
              help="Load pickle-based weights (pytorch_model.bin, .pt) you trust; read with weights_only=True.")
@click.option("--trust-remote-code", is_flag=True, help="Allow Hugging Face models that ship their own code.")
@click.version_option(package_name="compact-clip")
def cli(verbose: int, allow_pickle: bool, trust_remote_code: bool) -> None:
    """compact: small multilingual CLIP models, from teacher to device, checked per language.

    \b
    Start here:
      compact run               the whole pipeline, offline, on the built-in default (report.html at the end)

    \b
    Stage by stage:
      compact reference build   generate the reference benchmark and train its teacher
      compact reference eval    evaluate the reference teacher per language
      compact eval MODEL        evaluate any CLIP (HF, open_clip, compact folder, your own) per language
      compact teachers          list the teacher adapters
      compact distill run       distil a small multilingual student (recipes: compact distill recipes)
      compact distill cache     precompute the teacher's embeddings once
      compact prune MODEL       structured pruning (heads, FFN neurons, layers, vocabulary), real smaller tensors
      compact quantize MODEL    int8 / bf16 / fp16 per tower, gated per language against fp32 (--auto picks)
      compact export T MODEL    ONNX / OpenVINO / Core ML / TensorRT-ready ONNX / ExecuTorch bundles, parity-checked
      compact bench run B...    latency per runtime (p50/p90/p99, throughput, RSS, size), reports and plots
      compact bench compare A B two bundles side by side in one process: the ratio with a 95% CI

    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    from compact.models.teachers import TeacherOptions, set_default_options

    set_default_options(TeacherOptions(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code))


def _register() -> None:
    from compact.cli import eval as eval_cmd
    from compact.cli import bench, distill, export, prune, quantize, reference, run, teachers

    cli.add_command(reference.reference)
    cli.add_command(distill.distill)
    cli.add_command(prune.prune)
    cli.add_command(quantize.quantize)
    cli.add_command(export.export)
    cli.add_command(bench.bench)
    cli.add_command(run.run)
    cli.add_command(eval_cmd.eval_command)
    cli.add_command(teachers.teachers)


_register()


def main() -> None:
    cli(prog_name="compact")


if __name__ == "__main__":
    main()

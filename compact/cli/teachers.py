"""`compact teachers`: what a MODEL/--teacher spec can be."""

from __future__ import annotations

import click

from compact.cli.progress import console


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def teachers() -> None:
    """List the teacher adapters and the spec each one accepts."""
    from compact.models.teachers import TEACHERS, list_teachers

    for name in list_teachers():
        adapter = TEACHERS[name]
        how = adapter.prefix + "..." if adapter.prefix else "(path or name)"
        doc = (adapter.__doc__ or adapter.load.__doc__ or "").strip().splitlines()
        console.print(f"{name:<14} {how:<14} {doc[0] if doc else ''}")

"""matplotlib, which plots need, is the optional extra `netaware[plots]`: the images that run in a cluster leave it out
(with fontTools and Pillow it is about 100 MB of the shared image, and nothing in a cluster draws)."""

from __future__ import annotations

from types import ModuleType

import typer
from rich.console import Console
from rich.markup import escape

INSTALL_HINT = "pip install 'netaware[plots]'"


class PlotsUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def pyplot() -> ModuleType:
    """matplotlib.pyplot drawing to files only (no display on a lab machine), or PlotsUnavailableError saying what to
    do. Commands that end in plots call it before their long work starts, so a missing extra costs no run."""
    try:
        import matplotlib
    except ModuleNotFoundError as missing:
        reason = f"plots need matplotlib, which this install leaves out: {INSTALL_HINT}"
        raise PlotsUnavailableError(reason) from missing
    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def exit_unless_plots(console: Console) -> None:
    """For commands that end in plots: stop before any work, with the reason and the fix, when matplotlib is missing."""
    try:
        pyplot()
    except PlotsUnavailableError as missing:
        console.print(f"[red]error:[/red] {escape(str(missing))}")  # "[plots]" is not markup
        raise typer.Exit(code=2) from None

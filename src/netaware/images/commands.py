"""`netaware images`: build netaware's images here (no Docker, no registry) and list them with their sizes."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from netaware.images.building import BuiltImage, ImageBuildError, ImageSettings, build_images

images_app = typer.Typer(help="Container images built on this machine (mmdebstrap + podman, no registry).",
                         no_args_is_help=True)  # fmt: skip
console = Console()


def _table(built: list[BuiltImage], total_s: float | None = None) -> Table:
    table = Table(title="images" + (f" (built in {total_s:.0f} s)" if total_s is not None else ""))
    for column in ("image", "runtime name", "size MB", "build s", "archive MB", "export s", "cached"):
        table.add_column(column, justify="right" if column.endswith(("MB", " s")) else "left")
    for image in built:
        table.add_row(
            image.key,
            image.runtime_reference,
            f"{image.size_bytes / 1e6:.0f}",
            f"{image.build_s:.1f}",
            f"{image.archive_bytes / 1e6:.0f}" if image.archive_bytes else "-",
            f"{image.export_s:.1f}",
            "yes" if image.cached else "no",
        )
    return table


@images_app.command("build")
def build(
    only: Annotated[list[str] | None, typer.Argument(help="Images to build (and their bases); default: all.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Build every image (cached: unchanged steps are skipped) and export the OCI archives the lab's nodes import."""
    settings = ImageSettings()
    try:
        built = build_images(settings, only=only or (), progress=lambda line: console.print(line, style="dim"))
    except ImageBuildError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from error
    report = json.loads(settings.report_file.read_text())
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        console.print(_table(built, report["totalSeconds"]))


@images_app.command("list")
def list_images(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The images of the last build, with sizes and times (from build/images/images.json)."""
    settings = ImageSettings()
    if not settings.report_file.exists():
        typer.echo("error: no images built yet (run `make images`)", err=True)
        raise typer.Exit(code=1)
    report = json.loads(settings.report_file.read_text())
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    console.print(_table([BuiltImage(**image) for image in report["images"]], report["totalSeconds"]))

"""`netaware tc apply | clear | show`: per-destination link shaping of one node from a link profile (htb classes,
u32 filters on destination addresses, netem delay/jitter/loss). `--dry-run` prints the exact tc commands."""

from __future__ import annotations

import shlex
import subprocess
from typing import Annotated

import typer
import yaml

from netaware.core.profiles import ProfileError, parse_profile
from netaware.paths import profile_path
from netaware.tc.shaping import Shaping, ShapingError, apply_commands, clear_commands, show_commands

tc_app = typer.Typer(
    help="Shape one node's links per destination from a link profile (for real clusters; needs netem and root).",
    no_args_is_help=True,
)

Device = Annotated[str, typer.Option(help="Egress device to shape (e.g. eth0)")]
Namespace = Annotated[str | None, typer.Option(help="Run tc inside this network namespace")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the tc commands instead of running them")]


def run(commands: list[list[str]], *, dry_run: bool, ignore_first_failure: bool = False) -> None:
    """The one thin step that touches the kernel: run each command, stop at the first failure with its message."""
    for index, command in enumerate(commands):
        if dry_run:
            typer.echo(shlex.join(command))
            continue
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.stdout:
            typer.echo(result.stdout.rstrip())
        if result.returncode != 0 and not (ignore_first_failure and index == 0):
            typer.echo(f"error: {shlex.join(command)}: {result.stderr.strip()}", err=True)
            raise typer.Exit(code=1)


def _addresses(pairs: list[str]) -> dict[str, str]:
    addresses = {}
    for pair in pairs:
        node, separator, address = pair.partition("=")
        if not separator or not node or not address:
            raise typer.BadParameter(f"{pair!r}: expected NODE=IP")
        addresses[node] = address
    return addresses


@tc_app.command("apply")
def tc_apply(
    node: Annotated[str, typer.Option(help="The node being shaped (its name in the profile)")],
    address: Annotated[list[str], typer.Option(help="NODE=IP of a destination (repeat for each peer)")],
    device: Device = "eth0",
    profile: Annotated[str, typer.Option(help="Profile name in tc-scripts/profiles/ or a YAML path")] = "three-zones",
    namespace: Namespace = None,
    no_netem: Annotated[bool, typer.Option("--no-netem", help="Rates only (for kernels without netem)")] = False,
    dry_run: DryRun = False,
) -> None:
    """Replace the node's shaping with the profile's (idempotent: running it twice gives the same state)."""
    try:
        parsed = parse_profile(yaml.safe_load(profile_path(profile).read_text()))
        commands = apply_commands(parsed, node, _addresses(address), Shaping(device, namespace), netem=not no_netem)
    except (OSError, ProfileError, ShapingError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    run(commands, dry_run=dry_run, ignore_first_failure=True)


@tc_app.command("clear")
def tc_clear(device: Device = "eth0", namespace: Namespace = None, dry_run: DryRun = False) -> None:
    """Remove the shaping (the root qdisc and everything under it)."""
    run(clear_commands(Shaping(device, namespace)), dry_run=dry_run, ignore_first_failure=True)


@tc_app.command("show")
def tc_show(device: Device = "eth0", namespace: Namespace = None, dry_run: DryRun = False) -> None:
    """Print the qdiscs (with statistics), classes and filters on the device."""
    run(show_commands(Shaping(device, namespace)), dry_run=dry_run)

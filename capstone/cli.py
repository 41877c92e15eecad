"""`learn chat serve|join|admin`: the capstone's commands (heavy imports inside each)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The capstone chat room: serve it, join it, administer it.", no_args_is_help=True)

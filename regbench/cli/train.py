"""`regbench train CONFIG`: train one experiment and write its run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import trainer
from ..config import load_config
from .common import LangOption, SetOption, check_lang, fail, guarded

app = typer.Typer()


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    set_: SetOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parent folder of the run directory.")] = Path("runs"),
    lang: LangOption = "ko",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but the run directory.")] = False,
) -> None:
    """Train the experiment in CONFIG, print the book's report, and save runs/<name>-<time>/."""
    check_lang(lang)
    cfg = guarded(load_config, config, set_ or [])
    try:
        run = guarded(trainer.train, cfg, out, lang=lang, quiet=quiet)
    except KeyboardInterrupt:
        raise fail("interrupted; the run directory is kept with status 'interrupted'", 130) from None
    typer.echo(f"Run saved in {run.path}")

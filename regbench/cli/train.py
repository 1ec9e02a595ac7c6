"""`regbench train CONFIG` (or `--resume RUN_DIR`): train one experiment and write its run directory."""

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
    config: Annotated[Path | None, typer.Argument(help="Experiment YAML file.")] = None,
    set_: SetOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parent folder of the run directory.")] = Path("runs"),
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this unfinished run directory from its last epoch.")
    ] = None,
    lang: LangOption = "ko",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but the run directory.")] = False,
) -> None:
    """Train the experiment in CONFIG, print the book's report, and save runs/<name>-<time>/."""
    check_lang(lang)
    if (config is None) == (resume is None):
        raise fail("give a CONFIG file to train, or --resume RUN_DIR to continue a run (not both)")
    if resume is not None and set_:
        raise fail("--set cannot change a run being resumed; it continues with its own config.yaml")
    try:
        if resume is not None:
            run = guarded(trainer.resume, resume, lang=lang, quiet=quiet)
        else:
            cfg = guarded(load_config, config, set_ or [])
            run = guarded(trainer.train, cfg, out, lang=lang, quiet=quiet)
    except KeyboardInterrupt:
        raise fail(
            "interrupted; the run directory is kept with status 'interrupted' (--resume continues it)", 130
        ) from None
    typer.echo(f"Run saved in {run.path}")

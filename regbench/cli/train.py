"""`regbench train CONFIG` (or `--resume RUN_DIR`): train one experiment and write its run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import LangOption, SetOption, check_lang, fail, guarded, interrupt_code

app = typer.Typer()


def parse_seeds(text: str | None) -> int | list[int] | None:
    """`--seeds 3` → 3 (seed, seed+1, seed+2); `--seeds 1,2,5` → [1, 2, 5]."""
    if text is None:
        return None
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part.strip()]
        return int(text)
    except ValueError:
        raise fail(f"--seeds: expected a count K or a list such as 1,2,3, got {text!r}") from None


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="Experiment YAML file.")] = None,
    set_: SetOption = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Parent folder of the run directory.")] = "runs",
    seeds: Annotated[
        str | None,
        typer.Option(
            "--seeds",
            metavar="K|A,B,C",
            help="Train a seed group: K seeds (the config's seed and the K-1 after it) or these seeds; "
            "one run directory each, shown as one row by compare.",
        ),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this unfinished run directory from its last epoch.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="With --resume: train the run (completed too) on to N epochs in all."),
    ] = None,
    stack: Annotated[
        int | None,
        typer.Option(
            "--stack",
            min=1,
            help="Seeds and ensemble members train side by side as one stacked model, at most K at a time "
            "(default: as many as fit in a quarter of memory).",
        ),
    ] = None,
    no_stack: Annotated[
        bool, typer.Option("--no-stack", help="Train seeds and ensemble members one at a time.")
    ] = False,
    lang: LangOption = "ko",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but the run directory.")] = False,
) -> None:
    """Train the experiment in CONFIG, print the book's report, and save runs/<name>-<time>/."""
    check_lang(lang)
    if (config is None) == (resume is None):
        raise fail("give a CONFIG file to train, or --resume RUN_DIR to continue a run (not both)")
    if no_stack and stack is not None:
        raise fail("--stack K and --no-stack contradict each other; give one")
    if not out.strip():  # Path("") would be the current directory
        raise fail('--out "": give a folder for the run directories, e.g. --out runs (the output directory is empty)')
    if epochs is not None and resume is None:
        raise fail("--epochs goes with --resume RUN_DIR; for a new run use --set train.epochs=N")
    if resume is not None and (set_ or seeds is not None):
        option = "--set" if set_ else "--seeds"
        raise fail(f"{option} cannot change a run being resumed; it continues with its own config.yaml")
    try:
        if resume is not None:
            runs = [guarded(api.resume, resume, epochs=epochs, lang=lang, quiet=quiet)]
        else:
            cfg = guarded(api.load_config, config, set_ or [])
            stacking = 1 if no_stack else stack
            result = guarded(
                api.train, cfg, Path(out), parse_seeds(seeds), quiet, lang=lang, stack=stacking, source=config
            )
            runs = result if isinstance(result, list) else [result]
    except KeyboardInterrupt as e:
        paths = [str(p) for p in getattr(e, "paths", [])]  # the runs it stopped (api's RunInterrupted)
        if not paths:
            raise fail(
                "interrupted; the run directory is kept with status 'interrupted' (--resume continues it)", 130
            ) from None
        kept = paths[0] if len(paths) == 1 else f"{len(paths)} runs ({', '.join(paths)})"
        how = " ".join(f"regbench train --resume {p};" for p in paths).rstrip(";")
        raise fail(f"interrupted; {kept} kept with status 'interrupted' (continue: {how})", interrupt_code()) from None
    for run in runs:
        typer.echo(f"Run saved in {run.path}")

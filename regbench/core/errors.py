"""The one error type the library raises; the CLI turns it into a one-line message and an exit code."""

from __future__ import annotations


class RegbenchError(Exception):
    """Base of every error regbench reports to a user.

    Its message is one line, complete on its own (file, key path, what is allowed).
    `exit_code` is what the CLI exits with: 2 for bad input, 3 for a diverged run.
    """

    exit_code = 2


class ConfigError(RegbenchError):
    """A config file, override or layer list is invalid."""

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None):
        self.source, self.path, self.detail = source, path, message
        where = ": ".join(p for p in (source, path) if p)
        super().__init__(f"{where}: {message}" if where else message)


class DataError(RegbenchError):
    """A data set is missing, unreadable or does not fit the config."""


class RunDirError(RegbenchError):
    """A run directory cannot be written or read."""


class DivergedError(RegbenchError):
    """Training produced a NaN or infinite loss."""

    exit_code = 3


def with_source(e: RegbenchError, source: object) -> RegbenchError:
    """The same error with its message starting with `source` (the config file it came from), unless it
    names it already or is about something else than the file (`seeds`, a run directory)."""
    if (
        str(e).startswith(str(source))
        or isinstance(e, RunDirError)
        or (isinstance(e, ConfigError) and e.path == "seeds")
    ):
        return e
    if isinstance(e, ConfigError) and e.source is None:
        return ConfigError(e.detail, source=str(source), path=e.path)
    new = type(e).__new__(type(e))
    new.__dict__.update(e.__dict__)
    new.args = (f"{source}: {e}",)
    return new


class Pruned(RegbenchError):
    """Raised by a run's `on_epoch` callback (a sweep's pruner) to stop a run not worth finishing (status
    `pruned`)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a stop signal) during training, after the runs were marked interrupted; `paths` are their
    run directories, for the message that tells how to continue them."""

    def __init__(self, paths: list):
        super().__init__(", ".join(str(p) for p in paths))
        self.paths = list(paths)

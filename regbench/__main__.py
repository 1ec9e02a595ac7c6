"""`python -m regbench`: as the console script (cli.entry), the signal handlers come before the slow imports."""

from .core import signals

signals.install()
try:
    from .cli.main import main
except KeyboardInterrupt:
    import sys

    sys.stderr.write("error: interrupted\n")
    signals.ignore()
    sys.exit(signals.exit_code())

main()

"""The `regbench` command line: one Typer sub-app per command module, composed in main.py."""

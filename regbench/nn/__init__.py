"""regbench.nn."""

"""regbench.experiments."""

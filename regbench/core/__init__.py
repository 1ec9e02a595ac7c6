"""regbench.core."""

"""regbench.analysis."""

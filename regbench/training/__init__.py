"""regbench.training."""

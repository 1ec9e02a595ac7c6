"""regbench.stacked: the K-member (side by side) variant of each layer type, and the stacked optimizer."""

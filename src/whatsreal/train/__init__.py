"""Training: the Lightning module, the trainer set-up, checkpoints and resumption."""

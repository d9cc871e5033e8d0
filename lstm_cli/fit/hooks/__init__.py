"""The loop's hooks: one side concern each (store logging, progress, the finite-loss check,
early stopping, pruning, checkpoints, stop requests), with named hook points (`base.Hook`)."""

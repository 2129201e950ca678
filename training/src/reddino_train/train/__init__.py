"""The training run: loop, schedules, optimiser, checkpoints, processes."""

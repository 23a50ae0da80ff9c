"""Training: the loop and its step, optimizers and schedules, checkpoints, evaluation, the presets of the
shipped models, several processes (torchrun), and the tuning of a training process."""

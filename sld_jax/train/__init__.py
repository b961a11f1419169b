"""Training: state, schedule, steps, checkpoints and the epoch loop (the only place joining data, models and losses)."""

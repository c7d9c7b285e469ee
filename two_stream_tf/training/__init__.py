"""Training: distribution strategies, learning-rate schedules, callbacks and the fit loop."""

"""Pretraining under Ray Train: the per-worker loop and the driver that fits it."""

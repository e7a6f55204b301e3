"""Torch models, training loops, quantisation-aware export (``plasticore.training``)."""

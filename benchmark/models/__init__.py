"""Benchmark models. See `base.StagedModel` for the protocol they share."""

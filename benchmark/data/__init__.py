"""Datasets the benchmark evaluates on."""

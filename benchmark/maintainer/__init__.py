"""Maintainer tools: train the reference models, select the target units, fetch InceptionV1's weights."""

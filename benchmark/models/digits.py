"""`digits-mlp`: a small MLP on scikit-learn's 8x8 digits: 64 → 64 → 32 → 10 (`mlp.ThreeLayerMLP`).

Input `# [b, 1, 8, 8]`, pixel values in [0, 1]; fc1 `# [b, 64]`, fc2 `# [b, 32]`, logits `# [b, 10]`.
"""

from __future__ import annotations

from .mlp import ThreeLayerMLP


class DigitsMLP(ThreeLayerMLP):
    """64 → 64 → 32 → 10."""

    input_shape = (1, 8, 8)
    hidden = (64, 32)

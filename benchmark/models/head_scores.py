"""The standard attention-head scores of a sequence model (placeholder until the heads branch lands)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class HeadScores:
    previous_token: np.ndarray  # [L, H]
    induction: np.ndarray  # [L, H]


def head_scores(model, data_dir=None) -> HeadScores:  # noqa: ANN001
    raise NotImplementedError

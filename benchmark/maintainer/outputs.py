"""What both recipes' training runs share (`train.py`, `train_full_batch.py`): the deterministic setting they train
in, the seeded model, and what they write and return (the result, the weights file and the software versions
recorded beside it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..download import sha256_file
from ..models.base import StagedModel
from ..models.weights import save_safetensors


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Within the block: `threads` torch threads and `torch.use_deterministic_algorithms(True)` (one thread sums CPU
    reductions in a fixed order); both restored on exit, as they were."""
    before = torch.get_num_threads()
    mode = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)


def seeded(build: Callable[[], StagedModel], seed: int) -> StagedModel:
    """`build()` after `torch.manual_seed(seed)`, inside `fork_rng` (the caller's global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@dataclass
class TrainResult:
    path: Path  # the .safetensors checkpoint
    sha256: str  # of the .safetensors file
    test_accuracy: float
    test_loss: float
    epochs: int
    seconds: float


def versions() -> dict[str, str]:
    """What a result record stores (`record.provenance.environment`), plus what training also depends on."""
    import safetensors
    import sklearn

    from ..record.provenance import environment

    return {**environment(), "safetensors": safetensors.__version__, "scikit-learn": sklearn.__version__}


def save_weights(model: StagedModel, path: Path) -> str:
    """Write the state dict as safetensors atomically (`models.weights.save_safetensors`); return its sha256.

    The bytes depend on the weights alone (`model_id` is recorded in the JSON beside it).
    """
    save_safetensors(model.state_dict(), path)
    return sha256_file(path)

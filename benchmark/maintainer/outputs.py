"""What a training run writes and returns, for both recipes (`train.py`, `train_full_batch.py`): the result, the
weights file and the software versions recorded beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..download import sha256_file
from ..models.base import StagedModel
from ..models.weights import save_safetensors


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

"""What depends on the kind of data and objective, behind one adapter per kind (`DataKind`).

The harness asks a task's kind, and nothing else, how to move inputs to the device, where the target units sit in
an activation, the per-example loss, log-probabilities (for KL) and top-k, how an example reads to a person, and the
held-out split. Everything else in the harness is the same for images and tokens. A dataset names its kind in the
zoo (`DatasetSpec.kind`); `kind_of(dataset)` returns the adapter.

    image   `images.ImageClassification`: images `# [b, C, H, W]` float32 → class logits `# [b, classes]`
    tokens  `tokens.AnswerAtLastPosition`: token ids `# [b, T]` int64 → the answer's logits at the last position
    text    `text.NextCharacter`: character ids `# [b, T]` int64 → next-character logits at every position
"""

from __future__ import annotations

from ..errors import UserError
from ..zoo import dataset_spec
from .base import DataKind


def kind_of(dataset: str) -> DataKind:
    """The adapter of a dataset's kind (`zoo.DatasetSpec.kind`)."""
    name = dataset_spec(dataset).kind
    if name == "image":
        from .images import ImageClassification

        return ImageClassification(dataset)
    if name == "tokens":
        from .tokens import AnswerAtLastPosition

        return AnswerAtLastPosition(dataset)
    if name == "text":
        from .text import NextCharacter

        return NextCharacter(dataset)
    raise UserError(f"dataset {dataset}: unknown kind '{name}'; the zoo's kinds are image, tokens and text.")


__all__ = ["DataKind", "kind_of"]

"""The staged-model protocol every benchmark model follows.

A model is an ordered chain of named stages. Stage `name` maps the previous
stage's activation (the image, for the first) to activation `name`, and it ends
by calling the module `getattr(model, name)` (a hook point, e.g. a ReLU or a
concatenation), so a forward hook on that module sees and may replace exactly
activation `name`, as in lucent's `layer:unit` naming (`mixed3b:379` is channel
379 of the output of module `mixed3b`). The last stage is named `logits`.

`run(x, after=a, until=b)` runs the stages strictly after `a` (the image when
None) up to and including `b` (the logits when None). The harness uses it to run
the layers before a target once and only the layers after it per condition.
"""

from __future__ import annotations

import torch
from torch import nn


class StagedModel(nn.Module):
    """Base class: subclasses set `stage_names` and implement `run_stage`."""

    #: Activation names in forward order; the last one is "logits".
    stage_names: tuple[str, ...] = ()

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Compute activation `name` from the previous stage's activation."""
        raise NotImplementedError

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits over the real classes, on which loss and accuracy are computed.

        Default: all outputs. InceptionV1 overrides it (1008 outputs, 1000 classes).
        """
        return logits

    def stage_index(self, name: str | None) -> int:
        """Position of stage `name` (-1 for None, meaning the image)."""
        if name is None or name == "image":
            return -1
        return self.stage_names.index(name)

    def run(self, x: torch.Tensor, after: str | None = None, until: str | None = None) -> torch.Tensor:
        """Run the stages strictly after `after` (None: from the image) through `until` (None: logits)."""
        start = self.stage_index(after) + 1
        stop = len(self.stage_names) if until is None else self.stage_index(until) + 1
        for name in self.stage_names[start:stop]:
            x = self.run_stage(name, x)
        return x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.run(image)

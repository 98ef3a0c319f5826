"""The staged-model protocol every benchmark model follows.

A model is an ordered chain of named stages. Stage `name` maps the previous
stage's activation (the image, for the first) to activation `name`, and it ends
by calling the module `getattr(model, name)` (a hook point, e.g. a ReLU or a
concatenation), so a forward hook on that module sees and may replace exactly
activation `name`, as in lucent's `layer:unit` naming (`mixed3b:379` is channel
379 of the output of module `mixed3b`). The last stage is named `logits`.

`run(x, after=a, until=b)` runs the stages strictly after `a` (the input when
None) up to and including `b` (the logits when None). The harness uses it to run
the layers before a target once and only the layers after it per condition.

A transformer is not a chain: a later stage may read an earlier one besides its
predecessor (the residual stream). Such a model lists those stages in `carried`;
`run` stores their outputs (after any hook) in the `carry` dict it is given, and
its `run_stage(name, x, carry)` reads them there. To resume after a stage, pass
a copy of the carry the run up to it filled (`dict(carry)`: a resumed run adds the
later carried stages to what it is given, and the stage it resumes after, as the
`x` it is given: a replaced activation is what later stages read). A chain
(`carried` empty) ignores it.
"""

from __future__ import annotations

import torch
from torch import nn


class StagedModel(nn.Module):
    """Base class: subclasses set `stage_names` and implement `run_stage`."""

    #: Activation names in forward order; the last one is "logits".
    stage_names: tuple[str, ...] = ()
    #: The name of the model's input ("image", or "tokens" for a transformer).
    input_name: str = "image"
    #: Stages a later stage reads besides its predecessor (kept in `carry`); empty for a chain.
    carried: tuple[str, ...] = ()
    #: The axis of a batch `# [b, ...]` where a stage's units sit, for stages where it is not 1 (channels of an image
    #: model, neurons of modadd's last position). A sequence model's neurons sit on the last axis at every position
    #: (`# [b, T, m]`: -1), an attention head on the heads' axis of `# [b, T, H, e]` (2), its e values part of it.
    unit_axes: dict[str, int] = {}

    def unit_axis(self, name: str, ndim: int) -> int:
        """The (non-negative) axis of stage `name`'s batch `# [b, ...]` (`ndim` axes) where its units sit."""
        axis = self.unit_axes.get(name, 1)
        return axis % ndim

    def run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Compute activation `name` from the previous stage's activation."""
        raise NotImplementedError

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits over the real classes, on which loss and accuracy are computed.

        Default: all outputs. InceptionV1 overrides it (1008 outputs, 1000 classes).
        """
        return logits

    def stage_index(self, name: str | None) -> int:
        """Position of stage `name` (-1 for None, meaning the input)."""
        if name is None or name == self.input_name:
            return -1
        return self.stage_names.index(name)

    def run(self, x: torch.Tensor, after: str | None = None, until: str | None = None,
            carry: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Run the stages strictly after `after` (None: from the input) through `until` (None: logits).

        `carry` (models with `carried` stages only): the carried activations so far; the ones this run makes are
        added to it in place when it is given, so a run up to a layer leaves what a resumed run needs there."""
        start = self.stage_index(after) + 1
        stop = len(self.stage_names) if until is None else self.stage_index(until) + 1
        if not self.carried:
            for name in self.stage_names[start:stop]:
                x = self.run_stage(name, x)
            return x
        carry = {} if carry is None else carry
        if after in self.carried:
            carry[after] = x  # resuming from a carried stage: the later stages read the (possibly modified) x
        for name in self.stage_names[start:stop]:
            x = self.run_stage(name, x, carry)  # type: ignore[call-arg]
            if name in self.carried:
                carry[name] = x
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

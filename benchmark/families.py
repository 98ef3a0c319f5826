"""Task families: the fixed settings of each task file that `select` fills with target units.

A light module (no torch), so the command line can name the families without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP_N = 5  # units in a family's group task, unless it says otherwise


@dataclass(frozen=True)
class Family:
    """Fixed settings of a model's task file; the selection fills in the units."""

    model: str
    layer: str
    inputs: tuple[str, ...]
    dataset: str
    eval_split: str
    eval_size: int
    fit_split: str
    fit_size: int
    batch_size: int = 500
    seed: int = 0
    name: str = ""  # the family's name (its task file is tasks/<name>.toml); "" for the model's main family
    note: str = ""  # what sets the family apart, for its task file's header
    singles: bool = True  # the top and random single-unit tasks (False: the group task only)
    group_n: int = 0  # units in the group task (0: GROUP_N)

    @property
    def family(self) -> str:
        return self.name or self.model


#: The harder family: the only input lies two nonlinear layers below the target (image → ReLU fc1 → ReLU fc2), so
#: no fitted map of the inputs reproduces a unit exactly, and a copy would need the 200,961 parameters behind it.
HARDER_NOTE = ("Harder family: the only input is the image, two nonlinear layers (fc1, fc2) below the target, so a "
               "fitted map of the inputs cannot copy a unit exactly.\n# One group task, measured on the eval set when the "
               "family was chosen: zeroing single fc2 units, or the top 5 together (+0.0013 nats, 95% CI [-0.0016, "
               "+0.0040]),\n# changes the loss too little to measure; zeroing the top 20 costs +0.030 nats [+0.023, +0.036].")

FAMILIES = {
    "digits-mlp": Family("digits-mlp", "fc1", ("image",), "digits", "test", 900, "train", 897),
    "mnist-mlp": Family("mnist-mlp", "fc1", ("image",), "mnist", "test", 10000, "train", 10000),
    "mnist-cnn": Family("mnist-cnn", "conv2", ("image", "conv1"), "mnist", "test", 10000, "train", 5000),
    "mnist-mlp-fc2": Family("mnist-mlp", "fc2", ("image",), "mnist", "test", 10000, "train", 10000,
                            name="mnist-mlp-fc2", note=HARDER_NOTE, singles=False, group_n=20),
}

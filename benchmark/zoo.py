"""The zoo: one spec per dataset and one per model. Adding a model means adding one `ModelSpec` here.

Everything the harness needs to know about a model lives in its spec: the class to build, the dataset it reads,
how its checkpoint is obtained (`replacebench train ID` from its `Recipe`, or `replacebench fetch ID`), and the
task families `select` fills with target units. A dataset's spec says how to open a split, how model-ready inputs
map back to pixels (pixels = x · pixel_scale + pixel_offset), the sandbox's default limits, and its held-out
transform. The command line's help texts and "did you mean" lists are read from here.

A light module (no torch, no numpy), so the command line can list models and families without loading one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from .errors import unknown

#: MNIST's pixel mean and sd (of pixels / 255): model-ready x = (pixels / 255 − MNIST_MEAN) / MNIST_STD.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
#: Lucid's InceptionV1 input: x = RGB − IMAGENET_OFFSET (0..255 per channel; no division).
IMAGENET_OFFSET = 117.0
GROUP_N = 5  # units in a family's group task, unless it says otherwise


def load_object(ref: str) -> Any:
    """`"package.module:name"` → the object, imported on first use (so listing the zoo stays light)."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Grid:
    """The values a dataset stores: x = (k / levels − mean) / std for integer k in [0, k_max], computed in float32 in
    that order (digits: k / 16, k ≤ 16; MNIST: (k / 255 − 0.1307) / 0.3081, k ≤ 255; ImageNet: k − 117, k ≤ 255)."""

    levels: float
    k_max: int
    mean: float = 0.0
    std: float = 1.0

    def to_dict(self) -> dict[str, float | int]:
        return {"levels": self.levels, "k_max": self.k_max, "mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class Transform:
    """The magnitudes of a dataset's held-out transform: shifts in [−max_shift_px, max_shift_px] pixels on each
    axis, rotations in [−max_rotation_deg, max_rotation_deg] degrees; `background` fills what moves in; `grid`: the
    dataset's stored values, which the moved images are mapped back onto (`data.heldout`)."""

    max_shift_px: float
    max_rotation_deg: float
    background: float
    grid: Grid

    def to_dict(self) -> dict[str, float | int | dict[str, float | int]]:
        return {"version": 2, "max_shift_px": self.max_shift_px, "max_rotation_deg": self.max_rotation_deg,
                "background": self.background, "grid": self.grid.to_dict()}


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset, of one kind (`kind`: "image" or "tokens", the adapter in `benchmark.kinds` that owns how its
    inputs load, where units sit, the loss and how examples show). Model-ready image inputs x display as
    pixels = clip(x · pixel_scale + pixel_offset, 0, 255); a token dataset has no pixels."""

    name: str
    opener: str  # "module:function" with signature (split, data_dir, imagenet_dir) -> ExampleSet
    scaling: str  # how x is made from the raw data, for `inspect` and the README
    _: KW_ONLY
    time_limit_s: float  # default wall-time limit of each submission child
    memory_limit_gib: int  # default memory limit of each submission child
    kind: str = "image"
    pixel_scale: float = 1.0  # images only
    pixel_offset: float = 0.0  # images only
    tile_px: int = 0  # images only: thumbnail size in figures (small digits are enlarged more, photographs less)
    heldout: Transform | None = None  # None: no held-out split is defined (no measured transform)
    fetcher: str = ""  # "module:function" behind `replacebench fetch NAME` ("" when bundled or supplied by the user)

    @property
    def value_range(self) -> tuple[float, float]:
        """The model-ready values of pixels 0 and 255 (images only)."""
        return (-self.pixel_offset / self.pixel_scale, (255.0 - self.pixel_offset) / self.pixel_scale)

    def open(self, split: str, data_dir: Any = None, imagenet_dir: Any = None) -> Any:
        """One split, verified, as an `ExampleSet` (imported on first use)."""
        opener: Callable[..., Any] = load_object(self.opener)
        return opener(split, data_dir, imagenet_dir)


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a training run (besides code and library versions)."""

    seed: int
    optimizer: str  # "adam"
    lr: float  # peak learning rate
    weight_decay: float
    batch_size: int
    epochs: int
    schedule: str  # "cosine": lr_t = lr * 0.5 * (1 + cos(pi * t / T)), per step
    threads: int  # torch.set_num_threads during training
    eval_batch_size: int = 1000


@dataclass(frozen=True)
class FullBatchRecipe:
    """Full-batch AdamW on a fixed training split, as for grokking (Nanda et al. 2023): every step reads the whole
    split; lr_t = lr · min(1, (t + 1) / warmup_steps), constant after the warm-up, for `steps` steps. The split is
    the dataset's own `train` split (in the order `split_pairs` gives)."""

    seed: int  # torch.manual_seed before the model is built
    optimizer: str  # "adamw"
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    warmup_steps: int
    steps: int
    threads: int
    curve_every: int = 250  # the grokking curve: train/test loss and test accuracy every this many steps


@dataclass(frozen=True)
class WindowRecipe:
    """AdamW on random windows of a character corpus, warm-up then cosine decay to `min_lr`
    (`maintainer/train_windows.py` states the schedule and the batches)."""

    seed: int
    optimizer: str  # "adamw"
    lr: float
    min_lr: float
    weight_decay: float  # on matrices only
    betas: tuple[float, float]
    warmup_steps: int
    steps: int
    batch_size: int  # windows per step
    grad_clip: float  # global gradient-norm clip
    threads: int
    eval_every: int = 500


@dataclass(frozen=True)
class Family:
    """Fixed settings of a model's task file; `select` fills in the units."""

    model: str
    layer: str
    inputs: tuple[str, ...]
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

    @property
    def dataset(self) -> str:
        return model_spec(self.model).dataset


@dataclass(frozen=True)
class ModelSpec:
    """One model: its class, its dataset, how its checkpoint is obtained, and its task families."""

    id: str
    model_class: str  # "module:ClassName", a `StagedModel`
    dataset: str
    _: KW_ONLY
    recipe: Recipe | FullBatchRecipe | WindowRecipe | None = None  # trained by `replacebench train ID` (else fetched by `replacebench fetch ID`)
    fetcher: str = ""  # "module:function" behind `replacebench fetch ID`, for a model without a recipe
    families: tuple[Family, ...] = ()
    selectors: tuple[str, ...] = ()  # further `select` families with their own procedure (e.g. seeded-random draws)

    @property
    def fetched(self) -> bool:
        """Its checkpoint comes from `replacebench fetch`, which records the sha256 beside it."""
        return self.recipe is None

    @property
    def how_to_get(self) -> str:
        return f"replacebench {'fetch' if self.fetched else 'train'} {self.id}"

    def build(self) -> Any:
        """A freshly initialised model (global RNG)."""
        return load_object(self.model_class)()


#: The harder family: the only input lies two nonlinear layers below the target (image → ReLU fc1 → ReLU fc2), so
#: no fitted map of the inputs reproduces a unit exactly, and a copy would need the 200,961 parameters behind it.
HARDER_NOTE = ("Harder family: the only input is the image, two nonlinear layers (fc1, fc2) below the target, so a "
               "fitted map of the inputs cannot copy a unit exactly.\n# One group task, measured on the eval set when the "
               "family was chosen: zeroing single fc2 units, or the top 5 together (+0.0013 nats, 95% CI [-0.0016, "
               "+0.0040]),\n# changes the loss too little to measure; zeroing the top 20 costs +0.030 nats [+0.023, +0.036].")
MODADD_SELECT = "modadd-p113"  # `select` family: frequency clusters, top, random and whole-MLP targets (maintainer/modadd_select.py)
SHAKESPEARE_SELECT = "shakespeare-char"  # `select` family: top and random neurons, two heads, a whole MLP (maintainer/shakespeare_select.py)
INCEPTION_RANDOM = "inceptionv1-random"  # `select` family: seeded-random InceptionV1 units (benchmark/maintainer/inception_random.py)

DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec("digits", "benchmark.data.digits:open_split",
                "x = pixels / 16 (scikit-learn's 0..16 grey levels), so x in [0, 1]; 0 is paper, 1 full ink",
                pixel_scale=255.0, pixel_offset=0.0, tile_px=72, time_limit_s=300, memory_limit_gib=4,
                # ±0.2 px and ±5°: one pixel is an eighth of the image (±1 px shifts alone cut digits-mlp's top-1 from
                # 97.1% to 60.9%; ±0.2 px, ±5° keeps 96.3% (mapped back onto the grid); README: Held-out split).
                heldout=Transform(max_shift_px=0.2, max_rotation_deg=5.0, background=0.0, grid=Grid(16.0, 16))),
    DatasetSpec("mnist", "benchmark.data.mnist:open_split",
                "x = (pixels / 255 − 0.1307) / 0.3081 (MNIST's mean and sd), so x in [−0.4242, 2.8215]; "
                "−0.4242 is paper, 2.8215 full ink",
                pixel_scale=255.0 * MNIST_STD, pixel_offset=255.0 * MNIST_MEAN, tile_px=84, time_limit_s=900,
                memory_limit_gib=8, heldout=Transform(max_shift_px=1.0, max_rotation_deg=10.0,
                                                      background=-MNIST_MEAN / MNIST_STD,  # a black pixel
                                                      grid=Grid(255.0, 255, MNIST_MEAN, MNIST_STD)),
                fetcher="benchmark.data.mnist:fetch_command"),
    DatasetSpec("imagenet", "benchmark.data.imagenet:open_split",
                "x = RGB − 117 (Lucid's InceptionV1: 0..255 per channel, minus 117; no division), channels R, G, B, "
                "so x in [−117, 138]; resized to 256 on the short side, centre crop 224",
                pixel_scale=1.0, pixel_offset=IMAGENET_OFFSET, tile_px=150, time_limit_s=7200, memory_limit_gib=16),
    DatasetSpec("modadd-p113", "benchmark.data.modadd:open_split",
                "the tokens a b = as int64 ids (a, b in 0..112, '=' is 113); the answer is (a + b) mod 113; all "
                "12,769 pairs, 3,830 of them (a seeded 30%) in 'train', the other 8,939 in 'test'",
                kind="tokens", time_limit_s=600, memory_limit_gib=4),
    DatasetSpec("tinyshakespeare", "benchmark.data.shakespeare:open_split",
                "the characters as int64 ids (the corpus's 65 in code-point order); an example is a window of 129 "
                "characters, its first 128 the input and its last 128 the next-character targets; windows do not "
                "overlap; the first 90% of the corpus is 'train', the rest 'val'",
                kind="text", time_limit_s=900, memory_limit_gib=8,
                fetcher="benchmark.data.shakespeare:fetch_command"),
)}

MODELS: dict[str, ModelSpec] = {m.id: m for m in (
    ModelSpec("digits-mlp", "benchmark.models.digits:DigitsMLP", "digits",
              recipe=Recipe(seed=0, optimizer="adam", lr=3e-3, weight_decay=0.0, batch_size=32, epochs=60, schedule="cosine", threads=1),
              families=(Family("digits-mlp", "fc1", ("image",), "test", 900, "train", 897),)),
    ModelSpec("mnist-mlp", "benchmark.models.mnist:MnistMLP", "mnist",
              recipe=Recipe(seed=0, optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=128, epochs=12, schedule="cosine", threads=1),
              families=(Family("mnist-mlp", "fc1", ("image",), "test", 10000, "train", 10000),
                        Family("mnist-mlp", "fc2", ("image",), "test", 10000, "train", 10000,
                               name="mnist-mlp-fc2", note=HARDER_NOTE, singles=False, group_n=20))),
    ModelSpec("mnist-cnn", "benchmark.models.mnist:MnistCNN", "mnist",
              recipe=Recipe(seed=0, optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=128, epochs=6, schedule="cosine", threads=1),
              families=(Family("mnist-cnn", "conv2", ("image", "conv1"), "test", 10000, "train", 5000),)),
    ModelSpec("modadd-p113", "benchmark.models.modadd:ModAddTransformer", "modadd-p113",
              recipe=FullBatchRecipe(seed=0, optimizer="adamw", lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98),
                                     warmup_steps=10, steps=7000, threads=1),
              selectors=(MODADD_SELECT,)),
    ModelSpec("shakespeare-char", "benchmark.models.shakespeare:ShakespeareChar", "tinyshakespeare",
              recipe=WindowRecipe(seed=0, optimizer="adamw", lr=2e-3, min_lr=2e-4, weight_decay=0.1, betas=(0.9, 0.99),
                                  warmup_steps=100, steps=3000, batch_size=32, grad_clip=1.0, threads=2),
              selectors=(SHAKESPEARE_SELECT,)),
    ModelSpec("inceptionv1", "benchmark.models.inception:InceptionV1", "imagenet",
              fetcher="benchmark.maintainer.fetch_inception:fetch_command", selectors=(INCEPTION_RANDOM,)),
)}

#: `select`'s families, by name (each model's, in zoo order).
FAMILIES: dict[str, Family] = {f.family: f for m in MODELS.values() for f in m.families}


def model_spec(model_id: str) -> ModelSpec:
    if model_id not in MODELS:
        raise unknown("model", model_id, MODELS, "replacebench tasks")
    return MODELS[model_id]


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise unknown("dataset", name, DATASETS, "replacebench tasks")
    return DATASETS[name]


def trainable() -> list[str]:
    """Models `replacebench train` makes."""
    return [m.id for m in MODELS.values() if not m.fetched]


def fetchers() -> dict[str, str]:
    """What `replacebench fetch` downloads, name → "module:function" (datasets, then models). Each function takes
    (data_dir, url, labels_url) and returns what it wrote as name → value lines."""
    return {**{d.name: d.fetcher for d in DATASETS.values() if d.fetcher},
            **{m.id: m.fetcher for m in MODELS.values() if m.fetcher}}


def selectable() -> list[str]:
    """Every `select` family: the zoo's families, then each model's own selectors."""
    return [*FAMILIES, *(s for m in MODELS.values() for s in m.selectors)]


def one_of(names: list[str]) -> str:
    """'a, b or c' for help texts."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def open_split(dataset: str, split: str, data_dir: Any = None, imagenet_dir: Any = None) -> Any:
    """One split of a dataset, verified, ready for `ExampleSet.load` (`DatasetSpec.open`)."""
    return dataset_spec(dataset).open(split, data_dir, imagenet_dir)

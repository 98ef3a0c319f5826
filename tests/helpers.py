"""Helpers for tests: CLI runs as real subprocesses, submission folders on disk, maps found in PNGs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def load_module(path: Path, name: str | None = None, register: bool = False) -> ModuleType:
    """The Python file at `path` (a submission's replacement.py, a benchmark script), imported afresh as a module
    named `name` (default: its folder and stem), without putting it on sys.path. `register`: also in sys.modules,
    for a file whose dataclasses look their module up by name."""
    name = name or f"{path.parent.name}_{path.stem}".replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_submission(name: str) -> ModuleType:
    """`submissions/<name>/replacement.py`, imported to call its functions directly."""
    return load_module(ROOT / "submissions" / name / "replacement.py")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m benchmark ARGS` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=cwd or ROOT)


def run_main(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`replacebench ARGS` through `benchmark.cli.main` in this process, with `env` set for the call only: the exit
    code, stdout and stderr, as `run_cli` gives them. The submission still runs in real, isolated children, forked
    from this process's zygote, which stays warm between calls (about 2.5 s less than a subprocess that imports
    torch). For what is not about the process itself (its exit, its environment, its signals)."""
    import contextlib
    import io

    from benchmark.cli import main

    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def write_submission(folder: Path, code: str, kind: str = "hand-written", name: str | None = None) -> Path:
    """A submission folder with the given replacement.py source."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or folder.name
    (folder / "submission.toml").write_text(
        f'name = "{name}"\nauthors = ["test"]\nkind = "{kind}"\ndescription = "test submission"\n'
    )
    (folder / "replacement.py").write_text(code)
    return folder


def assert_matches_committed(trained: Path, committed: Path, atol: float = 1e-4) -> None:
    """Retrained weights equal the committed ones: bit for bit on a CPU like the one that made them, and within
    `atol` on another (BLAS kernels sum in a different order on, e.g., AVX2 vs AVX-512 machines)."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(str(trained)), load_file(str(committed))
    assert list(a) == list(b)
    for key in a:
        assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, key
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=lambda m: f"{key}: {m}")


def board_column(board: str, title: str) -> int:
    """The index, in `row.split("|")`, of the board's column titled `title` (from the first table header)."""
    header = next(line for line in board.splitlines() if line.startswith("| # |"))
    return [cell.strip() for cell in header.split("|")].index(title)


MODADD_INPUTS = ("tokens", "hook_embed", "hook_resid_pre", "attn_hook_pattern", "attn_hook_z", "hook_resid_mid")


def modadd_task(layer: str, units: tuple[int, ...], inputs: tuple[str, ...] | None = None, **fields: object):
    """A `modadd-p113` task on the committed checkpoint, built in code (independent of tasks/modadd-p113.toml)."""
    from benchmark.download import sha256_file
    from benchmark.paths import PROJECT_ROOT
    from benchmark.tasks import Task

    checkpoint = "checkpoints/modadd-p113.safetensors"
    if inputs is None:
        names = ("tokens", "hook_embed", "hook_resid_pre", "attn_hook_pattern", "attn_hook_z", "hook_resid_mid",
                 "mlp_hook_pre", "mlp_hook_post")
        inputs = tuple(n for n in MODADD_INPUTS if names.index(n) < names.index(layer))
    task = dict(id=f"modadd-p113/{layer}:{'-'.join(map(str, units))}", model="modadd-p113", checkpoint=checkpoint,
                checkpoint_sha256=sha256_file(PROJECT_ROOT / checkpoint), dataset="modadd-p113", eval_split="test",
                eval_size=8939, fit_split="train", fit_size=3830, seed=0, layer=layer, units=tuple(units),
                inputs=inputs, ablation="zero", version=1, topk=(1,), batch_size=2048)
    task.update(fields)
    return Task(**task)


def rgb_of(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int64)  # [H, W, 3]


def find_map(png: np.ndarray, bare: np.ndarray) -> tuple[int, int]:
    """(y, x) of the top-left corner where `bare` `# [h, w, 3]` appears pixel for pixel in `png`; fails if nowhere."""
    (height, width), (h, w) = png.shape[:2], bare.shape[:2]
    assert height > h and width > w, "the PNG is no larger than its bare map: it has no axes or colour bar"
    code = lambda a: (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]  # noqa: E731
    png_codes, bare_codes = code(png), code(bare.astype(np.int64))
    colours, counts = np.unique(png_codes, return_counts=True)
    where = np.searchsorted(colours, bare_codes.ravel()).clip(0, len(colours) - 1)
    assert (colours[where] == bare_codes.ravel()).all(), "the map's colours are not in the PNG"
    k = int(np.argmin(counts[where]))  # the map pixel with the rarest colour in the PNG
    by, bx = divmod(k, w)
    for y, x in zip(*np.nonzero(png_codes == bare_codes.ravel()[k])):
        y, x = int(y) - by, int(x) - bx
        if 0 <= y <= height - h and 0 <= x <= width - w and (png[y:y + h, x:x + w] == bare).all():
            return y, x
    raise AssertionError("the map is not in the PNG")

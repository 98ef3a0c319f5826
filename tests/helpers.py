"""Helpers for tests: CLI runs as real subprocesses, submission folders on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m benchmark ARGS` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=cwd or ROOT)


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

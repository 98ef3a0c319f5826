"""The held-out split (README: Held-out split): secret-seeded transforms of the eval images, records that keep only
the secret's commitment, `verify` with and without the secret, the board's held-out column, a label look-up cheat
that the held-out split defeats and the board flags, and a hostile search for the secret.

Digits is bundled with scikit-learn, so these need no data directory. The CLI's `main` runs in this process; the
submissions run in real isolated children.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, board_column

from benchmark.sandbox.process import isolation_problem

HOSTILE = Path(__file__).parent / "hostile"
TASK = "digits-mlp/fc1:17"
SLUG = "digits-mlp__fc1-17"
MARKER = "RBHELDOUT-"  # the secret's format, known to an attacker; the rest is random per test

_problem = isolation_problem()
needs_isolation = pytest.mark.skipif(_problem is not None, reason=f"no process isolation here: {_problem}")


@pytest.fixture()
def secret_file(tmp_path: Path) -> tuple[Path, str]:
    """A secret file outside the project (mode 0600), and its text."""
    import secrets

    text = MARKER + secrets.token_hex(24)
    path = tmp_path / "maintainer" / "heldout.secret"
    path.parent.mkdir()
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path, text


# -- the transform ---------------------------------------------------------------------------------------------------

def test_commitment_is_the_documented_hash():
    from benchmark.data.heldout import commitment

    secret = b"s" * 16
    assert commitment(secret) == hashlib.sha256(b"replacebench-heldout-v1" + secret).hexdigest()


def test_transform_parameters_are_deterministic_bounded_and_depend_on_secret_task_and_index():
    from benchmark.data.heldout import TRANSFORMS, example_params

    t = TRANSFORMS["mnist"]
    a = example_params(b"a" * 16, "mnist-mlp/fc1:13", range(2000), t)
    assert np.array_equal(a, example_params(b"a" * 16, "mnist-mlp/fc1:13", range(2000), t))
    assert np.all(np.abs(a[:, :2]) <= t.max_shift_px) and np.all(np.abs(a[:, 2]) <= t.max_rotation_deg)
    assert np.abs(a[:, :2]).max() > 0.99 * t.max_shift_px and np.abs(a[:, 2]).max() > 0.99 * t.max_rotation_deg
    assert abs(a[:, 2].mean()) < 0.5  # uniform, centred
    assert len(np.unique(a, axis=0)) == 2000  # every example its own transform
    for other in (example_params(b"b" * 16, "mnist-mlp/fc1:13", range(2000), t),
                  example_params(b"a" * 16, "mnist-cnn/conv2:61", range(2000), t)):
        assert not np.any(np.all(other == a, axis=1))


def test_the_transform_is_identity_at_zero_and_moves_content_by_whole_pixels():
    from benchmark.data.heldout import apply

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((3, 1, 8, 8), dtype=np.float32))
    torch.testing.assert_close(apply(images, np.zeros((3, 3)), 0.0), images, atol=1e-6, rtol=0)
    moved = apply(images, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]), background=0.5)
    torch.testing.assert_close(moved[0, 0, :, 1:], images[0, 0, :, :-1], atol=1e-5, rtol=0)  # right by 1 px
    torch.testing.assert_close(moved[1, 0, 1:, :], images[1, 0, :-1, :], atol=1e-5, rtol=0)  # down by 1 px
    torch.testing.assert_close(moved[2, 0, :, :-1], images[2, 0, :, 1:], atol=1e-5, rtol=0)  # left by 1 px
    assert torch.allclose(moved[0, 0, :, 0], torch.tensor(0.5))  # the background moves in
    turned = apply(images, np.array([[0.0, 0.0, 90.0]] * 3), background=0.0)
    assert any(torch.allclose(turned[0, 0], torch.rot90(images[0, 0], k, (0, 1)), atol=1e-5) for k in (1, -1))


def _public_and_heldout(dataset: str, task_id: str):
    from benchmark.data.heldout import held_out
    from benchmark.zoo import open_split

    base = open_split(dataset, "test")
    return base, held_out(base, dataset, b"g" * 32, task_id)


#: MNIST's 10,000 held-out images take about 7 s, so that case runs with `pytest -m slow` (the same code as digits').
@pytest.mark.parametrize("dataset, task_id", [("digits", TASK),
                                              pytest.param("mnist", "mnist-cnn/conv2:61", marks=pytest.mark.slow)])
def test_heldout_values_are_the_stored_grid_values_with_the_public_histogram(dataset, task_id):
    """Every held-out value is bit-identical to a value the opener stores (digits k/16, MNIST (k/255 − m)/s), the
    range is the same, and the split's histogram of levels is the public one's."""
    from benchmark.data.heldout import grid_levels, grid_values
    from benchmark.zoo import DATASETS

    _needs_mnist(dataset)
    grid = DATASETS[dataset].heldout.grid
    base, held = _public_and_heldout(dataset, task_id)
    x, y = base.load(range(len(base))), held.load(range(len(base)))  # [n, 1, H, W]
    values = grid_values(grid)
    assert torch.equal(values[grid_levels(x, grid)], x)  # the grid is how the opener stores the data
    assert torch.equal(values[grid_levels(y, grid)], y)
    assert (x.min(), x.max()) == (y.min(), y.max())
    hx, hy = (np.bincount(grid_levels(t, grid).numpy().ravel(), minlength=grid.k_max + 1) / t.numel() for t in (x, y))
    assert np.abs(hx - hy).max() < 1e-3
    assert float((x != y).flatten(1).any(1).float().mean()) > 0.99  # still moved


SPLIT_DIGEST = """
import hashlib, sys
from benchmark.data.heldout import held_out
from benchmark.zoo import open_split
base = open_split(sys.argv[1], "test")
images = held_out(base, sys.argv[1], b"g" * 32, sys.argv[2]).load(range(len(base)))
print(hashlib.sha256(images.numpy().tobytes()).hexdigest())
"""


def _split_digest(dataset: str, task_id: str, scalar: bool) -> str:
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1" if scalar else "2", "MKL_NUM_THREADS": "1" if scalar else "2"}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if scalar:
        env["ATEN_CPU_CAPABILITY"] = "default"  # torch's scalar kernels
    proc = subprocess.run([sys.executable, "-c", SPLIT_DIGEST, dataset, task_id], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _needs_mnist(dataset: str) -> None:
    if dataset == "mnist":
        pytest.importorskip("torchvision")
        from benchmark.data.mnist import raw_dir
        if not (raw_dir() / "t10k-images-idx3-ubyte").is_file():
            pytest.skip("no MNIST in REPLACEBENCH_DATA")


@pytest.mark.slow
@pytest.mark.parametrize("dataset, task_id", [("digits", TASK), ("mnist", "mnist-cnn/conv2:61")])
def test_heldout_images_are_the_same_bits_on_scalar_kernels_and_one_thread(dataset, task_id):
    """The whole held-out split, moved and snapped, under torch's scalar kernels and one thread and under this
    machine's vector kernels and two threads: the same bytes (float32 `grid_sample` gave an ulp's difference, and
    a level flipped where a value sat at a threshold: 223 of MNIST's 10,000 held-out losses moved)."""
    _needs_mnist(dataset)
    assert _split_digest(dataset, task_id, scalar=True) == _split_digest(dataset, task_id, scalar=False)


@pytest.mark.parametrize("dataset, task_id", [("digits", TASK), ("mnist", "mnist-cnn/conv2:61")])
def test_every_sample_is_far_from_a_rounding_boundary_and_values_are_exact_integers(dataset, task_id):
    """The fixed-point coordinates cannot round differently under another C library's cos and sin: every unrounded
    coordinate is further than MIN_ROUNDING_MARGIN from a rounding boundary, for the board's task ids under a test
    secret. And the moved values are integers: two pixels with the same exact value are the same number, on one
    side of every threshold."""
    from benchmark.data.heldout import MIN_ROUNDING_MARGIN, example_params, held_out, min_rounding_margin
    from benchmark.zoo import open_split

    _needs_mnist(dataset)
    base = open_split(dataset, "test")
    held = held_out(base, dataset, b"g" * 32, task_id)
    h, w = base.load([0]).shape[2:]
    assert min_rounding_margin(example_params(b"g" * 32, task_id, range(len(base)), held.transform), h, w) > MIN_ROUNDING_MARGIN
    moved = held._moved(np.arange(50))
    assert moved.dtype == np.int64 and held.thresholds().dtype == np.int64


def test_fixed_point_resampling_is_exact_bilinear_interpolation():
    """Integer levels resampled at fixed-point coordinates: Σ w_x w_y k with integer weights, against the same sum
    in float64 by hand at one sample, and a whole-pixel shift moves the levels exactly (times 4^FIXED_BITS)."""
    from benchmark.data.heldout import ONE, resample, source_coordinates

    rng = np.random.default_rng(3)
    levels = rng.integers(0, 256, (2, 1, 6, 7))  # [n, C, h, w]
    params = np.array([[0.3, -0.7, 4.0], [1.0, 0.0, 0.0]])
    coords = source_coordinates(params, 6, 7)  # [2, 6, 7, 2]
    out = resample(levels, coords)
    assert out.dtype == np.int64
    x, y = coords[0, 2, 3] / ONE  # one sample of example 0, in pixels
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    by_hand = sum(levels[0, 0, y0 + dy, x0 + dx] * (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
                  for dy in (0, 1) for dx in (0, 1))
    assert out[0, 0, 2, 3] == pytest.approx(by_hand * ONE * ONE, abs=0.5)
    assert np.array_equal(out[1, 0, :, 1:], levels[1, 0, :, :-1] * ONE * ONE) and not out[1, 0, :, 0].any()


def test_a_grid_classifier_of_the_heldout_split_is_at_chance_on_real_digits():
    """'Is this image held out?' by its share of pixels off the 1/16 grid (the best threshold, chosen on half the
    images, scored on the other half), or by how many pixels sit at full ink or at paper: neither beats chance."""
    base, held = _public_and_heldout("digits", TASK)
    x, y = base.load(range(len(base))), held.load(range(len(base)))  # [900, 1, 8, 8]
    images = torch.cat([x, y]).flatten(1).double()  # [1800, 64]
    truth = np.r_[np.zeros(len(x)), np.ones(len(y))]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(truth))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    off = ((images * 16 - torch.round(images * 16)).abs() > 1e-6).double().mean(1).numpy()  # [1800]
    assert off.max() == 0.0  # nothing to threshold
    for feature in (off, (images == 1).double().mean(1).numpy(), (images == 0).double().mean(1).numpy()):
        best = max((np.mean((feature[train] > t) == truth[train]), t) for t in np.unique(feature[train]))[1]
        accuracy = max(np.mean((feature[test] > best) == truth[test]), np.mean((feature[test] <= best) == truth[test]))
        # chance: binomial sd of an accuracy over 900 images is 0.017; 3 sd
        assert accuracy < 0.5 + 3 * 0.5 / np.sqrt(len(test)), accuracy


def test_reading_the_secret_refuses_missing_or_short_files(tmp_path):
    from benchmark.errors import UserError
    from benchmark.data.heldout import read_secret

    with pytest.raises(UserError, match="no such file"):
        read_secret(tmp_path / "nothing")
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(UserError, match="at least 16"):
        read_secret(tmp_path / "short")
    (tmp_path / "ok").write_text("x" * 20 + "\n")
    assert read_secret(tmp_path / "ok") == b"x" * 20


def test_only_the_eval_set_moves_and_the_baseline_cache_keys_by_the_commitment(session_cache):
    from benchmark.harness.baseline import cache_file
    from benchmark.harness.context import prepare
    from benchmark.data.heldout import commitment
    from benchmark.tasks import get_task

    task = get_task(TASK)
    public, held = prepare(task), prepare(task, heldout_secret=b"k" * 32)
    assert held.heldout_commitment == commitment(b"k" * 32) and public.heldout_commitment is None
    np.testing.assert_array_equal(public.eval_indices, held.eval_indices)
    np.testing.assert_array_equal(public.eval_labels, held.eval_labels)
    assert torch.equal(public.fit_set.load(public.fit_indices), held.fit_set.load(held.fit_indices))
    a, b = public.eval_set.load(public.eval_indices), held.eval_set.load(held.eval_indices)
    assert not torch.equal(a, b) and (a != b).flatten(1).any(1).all()  # every example moved
    assert torch.equal(b, held.eval_set.load(held.eval_indices))  # deterministic
    assert public.data_hash != held.data_hash
    assert cache_file(public) != cache_file(held) and f"heldout-{held.heldout_commitment[:12]}" in cache_file(held).name
    assert cache_file(held) != cache_file(prepare(task, heldout_secret=b"m" * 32))


# -- the CLI: records, verify, the board -----------------------------------------------------------------------------

def one_error_line(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("replacebench: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert fragment in proc.stderr, proc.stderr


def test_user_mistakes_are_one_line_and_write_nothing(tmp_path, cli, secret_file):
    results = tmp_path / "results"
    one_error_line(cli("score", "zero", "--task", TASK, "--results-dir", str(results),
                       "--held-out-secret", str(tmp_path / "missing")), "no such file")
    one_error_line(cli("score", "zero", "--task", TASK, "--results-dir", str(results), "--in-process",
                       "--held-out-secret", str(secret_file[0])), "--in-process")
    (tmp_path / "short").write_text("short\n")
    one_error_line(cli("score", "zero", "--task", TASK, "--results-dir", str(results),
                       "--held-out-secret", str(tmp_path / "short")), "at least 16")
    assert not results.exists()


@needs_isolation
def test_heldout_records_sit_beside_public_ones_and_verify_needs_the_secret(tmp_path, cli, session_cache, secret_file):
    from benchmark.data.heldout import commitment

    path, text = secret_file
    results = tmp_path / "results"
    for extra in ((), ("--held-out-secret", str(path))):
        proc = cli("score", "zero", "--task", TASK, "--results-dir", str(results), *extra)
        assert proc.returncode == 0, proc.stderr
    folder = results / SLUG
    public, held = (json.loads((folder / f"zero{s}.json").read_text()) for s in ("", ".heldout"))
    assert (public["schema_version"], public["split"], public["heldout_commitment"]) == (7, "public", None)
    assert (held["split"], held["heldout_commitment"]) == ("held-out", commitment(text.encode()))
    assert held["sidecar"]["file"].startswith("zero.heldout.") and public["sidecar"]["file"].startswith("zero.")
    assert len(list(folder.glob("*.npz"))) == 2
    assert held["results"]["accuracy"]["top1"]["clean"] < public["results"]["accuracy"]["top1"]["clean"]
    for file in folder.iterdir():  # the secret is nowhere in what a board publishes
        assert text.encode() not in file.read_bytes() and MARKER.encode() not in file.read_bytes()
    caches = sorted(p.name for p in (session_cache / "baselines").glob(f"{SLUG}*"))
    assert any("heldout" in n for n in caches) and any("heldout" not in n for n in caches)
    for p in (session_cache / "baselines").iterdir():
        assert text.encode() not in p.read_bytes()

    # verify: without the secret the held-out record is skipped with one line; with a wrong one, an error
    proc = cli("verify", "--all", "--results-dir", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    skip = [line for line in proc.stdout.splitlines() if line.startswith("skip")]
    assert len(skip) == 1 and "zero.heldout.json" in skip[0] and "--held-out-secret" in skip[0]
    assert "1 verified, 0 failed, 1 skipped (held-out)" in proc.stdout and "Traceback" not in proc.stderr
    wrong = tmp_path / "wrong.secret"
    wrong.write_text(MARKER + "0" * 48)
    one_error_line(cli("verify", str(folder / "zero.heldout.json"), "--held-out-secret", str(wrong)), "does not match")
    proc = cli("verify", "--all", "--results-dir", str(results), "--held-out-secret", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 verified, 0 failed" in proc.stdout

    # the board: one row for zero, its held-out recovery in its own column
    proc = cli("leaderboard", "--results-dir", str(results), "--out", "-")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and line.split("|")[2].strip().startswith("zero")]
    assert len(rows) == 1
    cell = rows[0].split("|")[board_column(proc.stdout, "held-out recovery [95% CI]")].strip()
    assert cell == "0.0% [0.0, 0.0]"


# -- the label look-up cheat -----------------------------------------------------------------------------------------

def write_answers(folder: Path) -> np.ndarray:
    """What a cheater can build from public things: the public eval images and labels, and per class the value of
    unit 17 (from −30 to 30 in steps of 1) that most lowers that class's mean loss under the public model."""
    from benchmark.harness.context import prepare
    from benchmark.tasks import get_task

    ctx = prepare(get_task(TASK))
    images = ctx.eval_set.load(ctx.eval_indices)
    labels = torch.as_tensor(ctx.eval_labels)
    push = np.zeros(10, dtype=np.float32)
    with torch.no_grad():
        act = ctx.model.run(images, until="fc1")
        for c in range(10):
            mine = act[labels == c].clone()
            losses = []
            for v in np.arange(-30, 31):
                mine[:, 17] = float(v)
                losses.append(torch.nn.functional.cross_entropy(ctx.model.run(mine, after="fc1"), labels[labels == c]).item())
            push[c] = np.arange(-30, 31)[int(np.argmin(losses))]
    np.savez(folder / "answers.npz", images=images.reshape(len(images), -1).numpy(), labels=ctx.eval_labels, push=push)
    return push


@needs_isolation
def test_a_label_lookup_beats_the_neuron_in_public_is_flagged_and_collapses_on_the_heldout_split(
        tmp_path, cli, session_cache, secret_file):
    from benchmark.board.leaderboard import beats_by_other_means

    folder = tmp_path / "subs" / "label-lookup"
    shutil.copytree(HOSTILE / "label-lookup", folder)
    push = write_answers(folder)
    assert np.ptp(push) > 0
    results = tmp_path / "results"
    public_run = cli("score", str(folder), "--task", TASK, "--results-dir", str(results))
    assert public_run.returncode == 0, public_run.stderr
    held_run = cli("score", str(folder), "--task", TASK, "--results-dir", str(results), "--held-out-secret", str(secret_file[0]))
    assert held_run.returncode == 0, held_run.stderr
    assert "found 500 of 500" in public_run.stderr and "found 400 of 400" in public_run.stderr
    assert "found 0 of 500" in held_run.stderr and "found 0 of 400" in held_run.stderr  # no held-out image matches

    public, held = (json.loads((results / SLUG / f"label-lookup{s}.json").read_text()) for s in ("", ".heldout"))
    from benchmark.record.typed import Record

    p, h = public["results"]["primary"], held["results"]["primary"]
    assert p["recovery_low"] > 1.5  # beats the neuron in public, by far
    # and not on the held-out split: finding no image there, it is the mean ablation exactly (its recovery is the
    # mean's, near 100% on this unit; whether just above or below depends on the secret, so it is not asserted)
    assert h["recovery_high"] < p["recovery_low"]
    assert held["results"]["mean_loss"]["replaced"] == pytest.approx(held["results"]["mean_loss"]["mean"], rel=1e-5)
    assert beats_by_other_means(Record.from_dict(public)) and not beats_by_other_means(Record.from_dict(held))
    assert public["results"]["kl_recovery"]["zero"]["recovery_high"] < 0

    proc = cli("leaderboard", "--results-dir", str(results), "--out", "-")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| ") and "label-lookup" in line.split("|")[2])
    cells = [c.strip() for c in row.split("|")]
    # unranked either way: a copy (it stores the answers) sits in the task's reference table, else it is ranked "—"
    assert cells[board_column(proc.stdout, "#")] == ("ref" if public["complexity"]["copy"] else "—")
    assert "beats by other means" in cells[board_column(proc.stdout, "submission")]
    from benchmark.board.leaderboard import splits_differ
    assert splits_differ(Record.from_dict(public), Record.from_dict(held))
    assert "public ≠ held-out" in cells[board_column(proc.stdout, "submission")]
    site = tmp_path / "site"
    assert cli("leaderboard", "--results-dir", str(results), "--html", str(site)).returncode == 0
    page = (site / "tasks" / f"{SLUG}.html").read_text()
    assert "public ≠ held-out" in next(row for row in page.split("<tr") if "label-lookup" in row)
    assert cells[board_column(proc.stdout, "held-out recovery [95% CI]")].startswith(f"{100 * h['recovery']:.1f}%")
    assert "◆" not in cells[board_column(proc.stdout, "frontier")]
    print(f"label-lookup: public recovery {p['recovery']:.3f} [{p['recovery_low']:.3f}, {p['recovery_high']:.3f}], "
          f"r {public['results']['fidelity'][0]['pearson_r']:.3f}, KL recovery "
          f"{public['results']['kl_recovery']['zero']['recovery']:.3f}; held-out {h['recovery']:.3f} "
          f"[{h['recovery_low']:.3f}, {h['recovery_high']:.3f}]")


@needs_isolation
def test_a_submission_that_switches_off_the_grid_sees_no_heldout_image_and_scores_as_in_public(
        tmp_path, cli, session_cache, secret_file):
    """tests/hostile/grid-switch returns the fit mean on images on the 1/16 grid and zeros off it: on the held-out
    split it finds none off the grid, so its held-out losses are the mean ablation's, as its public ones are."""
    folder = tmp_path / "subs" / "grid-switch"
    shutil.copytree(HOSTILE / "grid-switch", folder)
    results = tmp_path / "results"
    for extra in ((), ("--held-out-secret", str(secret_file[0]))):
        proc = cli("score", str(folder), "--task", TASK, "--results-dir", str(results), *extra)
        assert proc.returncode == 0, proc.stderr
        assert "grid-switch: off-grid 0 of" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for stem in ("grid-switch", "grid-switch.heldout"):
        record = json.loads((results / SLUG / f"{stem}.json").read_text())
        with np.load(results / SLUG / record["sidecar"]["file"]) as arrays:
            np.testing.assert_allclose(arrays["loss.replaced"], arrays["loss.mean"], rtol=1e-5, atol=1e-6)


def test_the_committed_board_flags_only_the_known_false_alarm_for_differing_splits():
    """Honest entries (zero, mean, linear, hand-written ones) mostly keep their recovery across the splits. One does
    not: `mean` on mnist-mlp/fc1:top5 (public 43.8%, held-out 29.0%) — a constant fitted on unmoved images explains
    less of five units whose activations the moves change. The flag is evidence, not proof (it stays ranked); any
    other flag on the committed board is new and must be looked at."""
    from benchmark.board.leaderboard import load_board, split_tests, splits_differ

    board, heldout, _ = load_board(ROOT / "leaderboard" / "results", lambda message: None)
    tests = split_tests(heldout)
    pairs = [(r, heldout[t][r.submission.name]) for t, records in board.items() for r in records
             if r.submission.name in heldout.get(t, {})]
    assert tests >= 10 and len(pairs) >= 40
    assert [(p.task.id, p.submission.name) for p, h in pairs if splits_differ(p, h, tests)] == [
        ("mnist-mlp/fc1:top5", "mean")]


# -- a hostile search for the secret ---------------------------------------------------------------------------------

def test_the_secret_search_finds_it_when_run_outside_the_harness(tmp_path, secret_file):
    """The attack works where nothing isolates it: it reads the secret from the host path."""
    folder = tmp_path / "find-secret"
    shutil.copytree(HOSTILE / "find-secret", folder)
    (folder / "target.json").write_text(json.dumps({"marker_hex": MARKER.encode().hex(), "path": str(secret_file[0]), "walk": False}))
    out = subprocess.run([sys.executable, "-c", "import replacement"], cwd=folder, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "FOUND in ['the host path']" in out.stderr


#: The walk of every readable file under / takes about 15 s, so it runs with `pytest -m slow`; by default the search
#: covers its environment, every process's environment and command line, and the host path.
@needs_isolation
@pytest.mark.parametrize("walk", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["proc-env-path", "walk"])
def test_a_submission_cannot_find_the_secret(walk, tmp_path, cli, session_cache, secret_file, monkeypatch):
    """Scored on the held-out split, with the secret in a file it is told the path of and even in the harness's own
    environment, it finds nothing: its losses are the zero ablation's, exactly."""
    path, text = secret_file
    monkeypatch.setenv("REPLACEBENCH_TEST_HELDOUT_SECRET", text)  # children get a fixed environment, never this one
    folder = tmp_path / "find-secret"
    shutil.copytree(HOSTILE / "find-secret", folder)
    (folder / "target.json").write_text(json.dumps({"marker_hex": MARKER.encode().hex(), "path": str(path),
                                                    "walk": walk}))
    results = tmp_path / "results"
    proc = cli("score", str(folder), "--task", TASK, "--results-dir", str(results),
               "--held-out-secret", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "find-secret: searched" in proc.stderr and "nothing" in proc.stderr and "FOUND" not in proc.stderr
    assert "the host path: FileNotFoundError" in proc.stderr
    searched = int(proc.stderr.split("find-secret: searched ")[1].split()[0])
    assert searched > 1000 if walk else searched == 0  # it did read the files it could see (interpreter, packages)
    record = json.loads((results / SLUG / "find-secret.heldout.json").read_text())
    with np.load(results / SLUG / record["sidecar"]["file"]) as arrays:
        np.testing.assert_array_equal(arrays["loss.replaced"], arrays["loss.zero"])
    assert record["split"] == "held-out" and record["results"]["primary"]["recovery"] == 0.0
    assert text not in json.dumps(record)


# -- records: file names, sidecar clean-up, consistency ---------------------------------------------------------------

def test_public_and_heldout_sidecars_clean_up_only_their_own(tmp_path):
    import os
    import time

    from benchmark.record.io import STALE_SIDECAR_SECONDS, write_record
    from benchmark.record.typed import Record

    folder = tmp_path / SLUG
    folder.mkdir(parents=True)
    old = time.time() - STALE_SIDECAR_SECONDS - 60
    public, held = folder / "zero.0123456789ab.npz", folder / "zero.heldout.0123456789ab.npz"
    for path in (public, held):
        path.write_bytes(b"x")
        os.utime(path, (old, old))
    committed = json.loads((ROOT / "leaderboard" / "results" / SLUG / "zero.heldout.json").read_text())
    path, _ = write_record(Record.from_dict(committed), {"a": np.zeros(3)}, tmp_path, SLUG, "zero")
    assert path.name == "zero.heldout.json" and not held.exists() and public.exists()
    held.write_bytes(b"x")
    os.utime(held, (old, old))
    public_record = Record.from_dict({**committed, "split": "public", "heldout_commitment": None})
    path, _ = write_record(public_record, {"a": np.zeros(3)}, tmp_path, SLUG, "zero")
    assert path.name == "zero.json" and not public.exists() and held.exists()


def test_a_record_whose_split_disagrees_with_its_file_is_refused(tmp_path):
    from benchmark.errors import UserError
    from benchmark.record.typed import Record

    good = {**json.loads((ROOT / "leaderboard" / "results" / SLUG / "zero.heldout.json").read_text()),
            "heldout_commitment": "a" * 64}
    for name, record in (("x.json", good), ("x.heldout.json", {**good, "split": "public"}),
                         ("x.heldout.json", {**good, "heldout_commitment": None}),
                         ("x.heldout.json", {**good, "heldout_commitment": "secret"}),
                         ("x.json", {**good, "split": "public"}), ("x.json", {**good, "split": "private"})):
        path = tmp_path / name
        path.write_text(json.dumps(record))
        with pytest.raises(UserError, match="inconsistent split"):
            Record.read(path)
    (tmp_path / "x.heldout.json").write_text(json.dumps(good))
    assert Record.read(tmp_path / "x.heldout.json").split == "held-out"


def test_score_all_with_a_secret_refuses_tasks_without_a_heldout_split_before_scoring(tmp_path, cli, secret_file):
    results = tmp_path / "results"
    proc = cli("score", "curve-detector", "--all", "--imagenet", str(tmp_path), "--results-dir", str(results),
               "--held-out-secret", str(secret_file[0]))
    one_error_line(proc, "no held-out split is defined for imagenet")
    assert not results.exists()

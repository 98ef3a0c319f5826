"""Checking records: against their own per-example arrays (cheap), and by re-scoring in isolation (`verify`).

Tolerances (numbers in the record vs numbers recomputed):
- from the sidecar (float32 per-example losses, the record's figures came from
  float64): |a − b| ≤ SIDECAR_ATOL + SIDECAR_RTOL·|b| on mean losses, accuracy,
  KL, effect and recovery with their CIs (primary ablation); the primary KL recovery's effect, recovery
  and CIs within KL_ATOL + SIDECAR_RTOL·|b| (a mean KL can be 1e-5); `defined` exact;
- by re-scoring, on whatever CPU runs it (a public board's CI gets any): first the per-example arrays, fresh vs
  the record's sidecar: every float32 loss and KL within its noise floor (`tolerance.noise_floors`), for a loss
  |ΔL_i| ≤ LOSS_NOISE_ULPS·ε₃₂·(max(1,|L_i|) + min(1,|L_i|)·M_i) (`stats.loss_noise`: 16 units in the last place of
  the loss and of its logits' scale M_i, weighted by how much the loss depends on the logits), for a KL the same
  with √KL and the logit scales of both its distributions (`stats.kl_noise`); M_i is the fresh re-score's
  (`ScoreResult.scales`: the logits are recomputed here, never read from the record); the labels, indices and
  top-k correctness exact; then each
  figure that the losses determine (means, effects, recoveries, their intervals, p-values) within its own
  tolerance: how far that figure moves when the losses move by their noise floor (`tolerance.py`, perturb and
  recompute), not a flat relative one. The other numbers of `results` (activation fidelity, accuracy, McNemar)
  within RESCORE_ATOL + RESCORE_RTOL·|b|; booleans, strings, counts, the submission hash, the complexity figures and
  the original units' multiply-adds exact (wall times are measurements of a machine, not compared).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths, stats
from ..errors import SubmissionError, UserError
from ..harness.description import BITS_PER_WEIGHT
from ..record.io import read_sidecar
from ..record.typed import Complexity, Provenance, Record
from .tolerance import leaves

SIDECAR_ATOL, SIDECAR_RTOL = 1e-4, 1e-4
KL_ATOL = 1e-9
RESCORE_ATOL, RESCORE_RTOL = 1e-6, 1e-4
FLOAT64_ATOL, FLOAT64_RTOL = 1e-12, 1e-9  # summation order in float64, on top of a loss figure's own tolerance
RECOVERY_KEYS = ("effect", "effect_low", "effect_high", "recovery", "recovery_low", "recovery_high", "mean_clean",
                 "mean_ablated", "mean_replaced")


def _close(a: Any, b: Any, atol: float, rtol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= atol + rtol * abs(b)
    return a == b


def interval_functions(provenance: Provenance) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The (recovery, KL recovery) statistics a record was computed with: closed forms, or a legacy record's bootstrap."""
    if provenance.intervals == stats.INTERVALS:
        return stats.recovery_stats, stats.kl_recovery_stats
    if provenance.bootstrap_resamples is None or provenance.seed is None:
        raise UserError("a bootstrap record names no seed and resamples; score again.")
    legacy = {"n_resamples": provenance.bootstrap_resamples, "seed": provenance.seed}
    return (partial(stats.bootstrap_recovery_stats, **legacy), partial(stats.bootstrap_kl_recovery_stats, **legacy))


def check_against_sidecar(record: Record, arrays: dict[str, np.ndarray]) -> list[str]:
    """Headline figures recomputed from the per-example arrays; one line per figure that disagrees."""
    problems = []
    res = record.results
    losses = {c: arrays[f"loss.{c}"].astype(np.float64) for c in ("clean", "zero", "mean", "resample", "replaced")}
    for condition, value in losses.items():
        if not _close(float(value.mean()), res.mean_loss[condition], SIDECAR_ATOL, SIDECAR_RTOL):
            problems.append(f"mean loss ({condition}) {res.mean_loss[condition]!r} ≠ {float(value.mean())!r} from the arrays")
    for key, by_condition in res.accuracy.items():
        for condition, value in by_condition.items():
            fresh = float(arrays[f"{key}.{condition}"].mean())
            if not _close(fresh, value, SIDECAR_ATOL, 0):
                problems.append(f"{key} accuracy ({condition}) {value!r} ≠ {fresh!r} from the arrays")
    if not _close(float(arrays["kl"].astype(np.float64).mean()), res.mean_kl_clean_replaced, SIDECAR_ATOL, SIDECAR_RTOL):
        problems.append("mean KL differs from the arrays")
    primary = res.primary
    recovery, kl_recovery = interval_functions(record.provenance)
    # the fresh figures as JSON-ready values, the record's as its typed fields
    fresh = recovery(losses["clean"], {primary.ablation: losses[primary.ablation]},
                     losses["replaced"])[primary.ablation].to_dict()
    if fresh["defined"] != primary.defined:
        problems.append(f"primary recovery is {'defined' if fresh['defined'] else 'undefined'} from the arrays, "
                        f"but the record says otherwise")
    for key in RECOVERY_KEYS:
        if not _close(fresh[key], getattr(primary, key), SIDECAR_ATOL, SIDECAR_RTOL):
            problems.append(f"primary {key} {getattr(primary, key)!r} ≠ {fresh[key]!r} from the arrays")
    kl_primary = (res.kl_recovery or {}).get(primary.ablation)
    if kl_primary is not None:
        kl = kl_recovery({primary.ablation: arrays[f"kl.{primary.ablation}"].astype(np.float64)},
                         arrays["kl"].astype(np.float64))
        fresh_kl = kl[primary.ablation].to_dict()
        if fresh_kl["defined"] != kl_primary.defined:
            problems.append("primary KL recovery's 'defined' differs from the arrays")
        for key in ("effect", "effect_low", "effect_high", "recovery", "recovery_low", "recovery_high"):
            if not _close(fresh_kl[key], getattr(kl_primary, key), KL_ATOL, SIDECAR_RTOL):  # KL can be ~1e-5: relative
                problems.append(f"primary KL {key} {getattr(kl_primary, key)!r} ≠ {fresh_kl[key]!r} from the arrays")
    return problems


def check_complexity(c: Complexity) -> list[str]:
    """The complexity figures agree with each other (a record migrated from schema 2 has none to check)."""
    if c.description_bits is None:
        return []
    problems = []
    parts = sum(c.bits.to_dict().values())  # code + literals + data + fitted
    if c.description_bits != parts:
        problems.append(f"description_bits {c.description_bits} ≠ the sum of its parts {parts}")
    if c.stored_bits is not None:  # convention 2: the copy test counts bits
        if not c.bits.fitted <= c.stored_bits <= c.description_bits - c.bits.code:
            problems.append(f"stored_bits {c.stored_bits} is outside [fitted bits {c.bits.fitted}, description_bits − "
                            f"code bits {c.description_bits - c.bits.code}]")
        if c.copy != (c.stored_bits >= BITS_PER_WEIGHT * c.target_fan_in):
            problems.append(f"copy is {c.copy} but stored bits {c.stored_bits} vs {BITS_PER_WEIGHT} × fan-in "
                            f"{c.target_fan_in} say otherwise")
        return problems
    if c.stored_numbers is None or c.stored_numbers < c.fitted_parameters + c.literal_numbers:
        problems.append("stored_numbers is below fitted + literal numbers")
    elif c.copy != (c.stored_numbers >= c.target_fan_in):
        problems.append(f"copy is {c.copy} but stored numbers {c.stored_numbers} vs fan-in {c.target_fan_in} say otherwise")
    return problems


def load_checked(path: Path) -> tuple[Record | None, list[str]]:
    """A record that passes every cheap check (readable, schema, sidecar sha256, figures), or None and why not."""
    record, _, problems = load_checked_arrays(path)
    return record, problems


def load_checked_arrays(path: Path) -> tuple[Record | None, dict[str, np.ndarray], list[str]]:
    """`load_checked`, with the record's per-example arrays (empty when it fails)."""
    try:
        record = Record.read(path)
        arrays = read_sidecar(path, record)
        problems = check_against_sidecar(record, arrays) + check_complexity(record.complexity)
    except UserError as exc:
        return None, {}, [str(exc)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return None, {}, [f"malformed record ({type(exc).__name__}: {exc})"]
    return (None if problems else record), arrays, problems


def compare_results(stored: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Every leaf of two `results` objects, within the re-scoring tolerance."""
    a, b = leaves(stored), leaves(fresh)
    problems = [f"{key}: only in {'the record' if key in a else 'the re-score'}" for key in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        if not _close(b[key], a[key], RESCORE_ATOL, RESCORE_RTOL):
            problems.append(f"{key}: record {a[key]!r}, re-score {b[key]!r}")
    return problems


def check_heldout_secrets(paths: list[Path], secret: bytes | None) -> dict[Path, str]:
    """The held-out records among `paths` that need a secret to re-score, with their commitments (empty when a
    secret is given). A given secret must match every held-out record's commitment, else a UserError (before
    anything runs). Unreadable records are left to `verify_record` to report."""
    from ..data.heldout import commitment

    held: dict[Path, str] = {}
    for path in paths:
        try:
            record = Record.read(path)
        except UserError:
            continue
        if record.split == "held-out" and record.heldout_commitment is not None:
            held[path] = record.heldout_commitment
    if secret is None:
        return held
    mine = commitment(secret)
    wrong = [p for p, c in held.items() if c != mine]
    if wrong:
        raise UserError(f"the --held-out-secret file does not match {wrong[0]} (its commitment {held[wrong[0]][:12]}…, "
                        f"this secret's {mine[:12]}…)" + (f" nor {len(wrong) - 1} other record(s)" if len(wrong) > 1 else "")
                        + "; use the secret the record was scored with.")
    return {}


def crash_line(exc: BaseException) -> str:
    """One line for a re-score that crashed the harness: the exception's type and the first line of its message."""
    message = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = f"re-scoring crashed: {type(exc).__name__}" + (f": {message}" if message else "")
    return text if len(text) <= 300 else text[:299] + "…"


def guarded(check: Callable[..., Any]) -> Callable[..., Any]:
    """`check` (which returns a list of problems, or a plan), with any exception it raises turned into a one-line
    problem (`crash_line`): one record that crashes the harness must not hide the records after it."""

    def run(*args: Any) -> Any:
        try:
            return check(*args)
        except Exception as exc:  # noqa: BLE001 - the harness's own failure on this record, reported as its result
            return [crash_line(exc)]

    return run


def verify_record(path: Path, options: Any) -> list[str]:
    """Problems with the record at `path`: cheap checks, then a fresh isolated re-score compared figure by figure.

    A held-out record is re-scored on the held-out split with `options.heldout_secret`, which must match its
    commitment; a public record always on the public split (the secret is not used). Any exception on the way
    (the harness crashing on this record) is one problem line, not the end of `verify` (`guarded`).
    """
    return guarded(_verify_record)(path, options)


def _verify_record(path: Path, options: Any) -> list[str]:
    from ..harness.session import compute_record
    from ..harness.submissions import take_snapshot

    plan = rescore_plan(path, options)
    if isinstance(plan, list):
        return plan
    record, task, folder, run, stored = plan
    try:
        with take_snapshot(str(folder)) as snapshot:
            fresh, arrays, scales = compute_record(task, snapshot, run)
    except (UserError, SubmissionError) as exc:
        return [f"re-scoring failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"]
    return check_rescore(record, fresh, stored, arrays, scales)


def check_planned(plan: tuple[Record, Any, Path, Any, dict[str, np.ndarray]], fresh: Record,
                  arrays: dict[str, np.ndarray] | None, scales: dict[str, np.ndarray] | None = None) -> list[str]:
    """`check_rescore` for a plan of `rescore_plan` and a fresh record with its arrays and logit scales (the
    cluster's answer)."""
    return check_rescore(plan[0], fresh, plan[4], arrays, scales)


def rescore_plan(path: Path, options: Any) -> tuple[Record, Any, Path, Any, dict[str, np.ndarray]] | list[str]:
    """What re-scoring the record at `path` needs (record, task, submission folder, run options, and its per-example
    arrays to compare with the fresh ones), or its problems."""
    from ..data.heldout import commitment
    from ..harness.submissions import folder_hash
    from ..tasks import get_task

    record, stored, problems = load_checked_arrays(path)
    if record is None:
        return problems
    held_out = record.split == "held-out"
    secret = options.heldout_secret if held_out else None
    if held_out:
        if secret is None:
            return [f"a held-out record: re-scoring it needs the secret (--held-out-secret FILE, commitment "
                    f"{(record.heldout_commitment or '')[:12]}…)"]
        if commitment(secret) != record.heldout_commitment:
            return ["the held-out secret does not match this record's commitment"]
    name = record.submission.name
    folder = paths.submissions_dir() / name
    try:
        task = get_task(record.task.id)
    except UserError as exc:
        return [f"re-scoring failed: {exc}"]
    if task.content_hash() != record.task.hash:
        return [f"task {task.id} changed since scoring (hash {record.task.hash[:12]} → {task.content_hash()[:12]})"]
    if not folder.is_dir():
        return [f"no submission folder {folder} to re-score"]
    try:
        if folder_hash(folder) != record.submission.content_hash:
            return [f"stale: submissions/{name} changed since this record was scored; score it again"]
    except UserError as exc:
        return [f"re-scoring failed: {exc}"]
    overrides = record.task.overrides or {}
    run = replace(options, eval_size=overrides.get("eval_size"), fit_size=overrides.get("fit_size"), isolate=True,
                  heldout_secret=secret)
    return record, task, folder, run, stored


#: A line of `check_rescore` that starts with this is a finding, not a failure (`is_failure`).
NOTE = "note: "
#: A submission with a fit step may move its replaced side (REPLACED_KEYS) beyond the noise floor: its fitted
#: numbers are a function of float32 activations, and an ill-conditioned fit amplifies their last-bit differences
#: between CPUs. Measured under scalar kernels and one thread: `linear-text` on the whole layer-0 MLP of
#: shakespeare-char (a fit of 512 units) moved 19 of 864 replaced losses by up to 1.6 floors; `linear` on
#: mnist-mlp/fc2:top20 (held out, 20 units at once) moved 2 of 10,000 by 12 floors (6e-4). So every replaced-side
#: example may move up to FIT_DRIFT_FLOORS floors, and at most ⌈FIT_DRIFT_SHARE · n⌉ of them further; that is a note,
#: not a failure. Every figure must still be within its own tolerance (`compare_loss_figures`).
FIT_DRIFT_FLOORS = 10.0
FIT_DRIFT_SHARE = 0.001
#: The replaced side of the per-example float arrays: what a submission's fitted numbers reach (with `top<k>.replaced`,
#: `_replaced_side`).
REPLACED_KEYS = ("loss.replaced", "kl")


def _replaced_side(key: str) -> bool:
    """Whether a per-example array describes the replaced model: REPLACED_KEYS and its top-k correctness."""
    return key in REPLACED_KEYS or (key.startswith("top") and key.endswith(".replaced"))


def is_failure(problems: list[str]) -> bool:
    """Whether `check_rescore`'s lines hold a failure (anything but a `NOTE`)."""
    return any(not line.startswith(NOTE) for line in problems)


def compare_arrays(stored: dict[str, np.ndarray], fresh: dict[str, np.ndarray],
                   scales: dict[str, np.ndarray] | None = None, fitted: bool = False) -> list[str]:
    """The record's per-example arrays against a re-score's: float32 values (losses, KLs) within their noise floor
    at the stored value (`tolerance.noise_floors`, with the re-score's logit scales `scales`; None: M = 0),
    everything else (indices, labels, top-k correctness) exact. For a `fitted` submission, the replaced side
    (REPLACED_KEYS) may differ by up to FIT_DRIFT_FLOORS floors, and at most ⌈FIT_DRIFT_SHARE · n⌉ of its examples
    (or of the replaced model's top-k correctness) by more: that is a NOTE line, not a failure (the figures are
    checked separately)."""
    from .tolerance import KLS, LOSSES, noise_floors

    problems = [f"per-example {key}: only in {'the record' if key in stored else 'the re-score'}"
                for key in sorted(set(stored) ^ set(fresh))]
    floors = noise_floors(stored, scales) if set(LOSSES) | set(KLS) <= set(stored) else {}
    for key in sorted(set(stored) & set(fresh)):
        a, b = np.asarray(stored[key]), np.asarray(fresh[key])
        if a.shape != b.shape:
            problems.append(f"per-example {key}: shape {a.shape} in the record, {b.shape} in the re-score")
        elif a.dtype.kind == "f":
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            floor = floors[key] if key in floors else stats.loss_noise(a64)  # [n]
            excess = np.abs(b64 - a64) - floor  # [n]
            bad = ~(excess <= 0)  # NaN counts as bad
            if bad.any():
                i = int(np.nanargmax(np.where(bad, excess, -np.inf))) if not np.isnan(excess).all() else 0
                far = int((~(np.abs(b64 - a64) <= FIT_DRIFT_FLOORS * floor)).sum())
                problems.append(_finding(f"per-example {key}: {int(bad.sum())} of {len(a)} differ by more than the "
                                         f"float32 noise floor (example {i}: record {a64[i]!r}, re-score {b64[i]!r}, "
                                         f"allowed ±{float(floor[i]):.3g})", fitted and _replaced_side(key), far, len(a)))
        elif not np.array_equal(a, b):
            differ = int((a != b).sum())
            problems.append(_finding(f"per-example {key}: {differ} of {len(a)} differ", fitted and _replaced_side(key),
                                     differ, len(a)))
    return problems


def _finding(message: str, may_drift: bool, count: int, n: int) -> str:
    """`compare_arrays`' line: a NOTE when a fitted submission's replaced side (`may_drift`) moved at most
    ⌈FIT_DRIFT_SHARE · n⌉ of its n examples (`count`: those beyond FIT_DRIFT_FLOORS floors, or that differ), else
    a failure."""
    if may_drift and count <= math.ceil(FIT_DRIFT_SHARE * n):
        return f"{NOTE}{message}; within a fitted submission's drift between CPUs (FIT_DRIFT_SHARE), every figure " \
               "checked on its own"
    return message


def compare_loss_figures(stored: dict[str, Any], fresh: dict[str, Any], arrays: dict[str, np.ndarray],
                         primary: str, scales: dict[str, np.ndarray] | None = None) -> tuple[list[str], set[str]]:
    """The figures the per-example losses determine, each within its own tolerance (`tolerance.py`), computed at
    the record's arrays with the re-score's logit scales; and the keys compared here."""
    from .tolerance import figure_tolerances

    tolerances, boundary = figure_tolerances(arrays, primary, scales)
    a, b = leaves(stored), leaves(fresh)
    keys = (set(tolerances) | boundary) & set(a) & set(b)
    problems = []
    for key in sorted(keys):
        old, new = a[key], b[key]
        if key in boundary and old != new and key not in tolerances:
            continue  # None or a boolean on one side: the noise floor reaches its boundary
        if key in tolerances and isinstance(new, (int, float)) and not isinstance(new, bool):
            if abs(new - old) <= tolerances[key] + FLOAT64_ATOL + FLOAT64_RTOL * abs(old):
                continue
            problems.append(f"{key}: record {old!r}, re-score {new!r} (allowed ±{tolerances[key]:.3g}, its change "
                            f"under the losses' float32 noise)")
        elif key in boundary:
            continue
        elif old != new:
            problems.append(f"{key}: record {old!r}, re-score {new!r}")
    return problems, keys


def check_rescore(record: Record, fresh: Record, stored_arrays: dict[str, np.ndarray] | None = None,
                  fresh_arrays: dict[str, np.ndarray] | None = None,
                  fresh_scales: dict[str, np.ndarray] | None = None) -> list[str]:
    """A stored record against a fresh re-score of it: the per-example arrays, then every figure of `results` and
    of `complexity` (compared as the JSON holds them, leaf by leaf; the loss figures by their sensitivity to the
    losses' noise, module docstring, whose floor takes the re-score's logit scales `fresh_scales`; None: M = 0).
    Provenance (how and where each ran: machine, timings, `execution`) is not compared. Without both sets of arrays
    (or for a record with bootstrap intervals), every number is compared with the flat tolerance."""
    stored, new = record.results.to_dict(), fresh.results.to_dict()
    problems: list[str] = []
    if stored_arrays and fresh_arrays is not None and record.provenance.intervals == stats.INTERVALS:
        problems += compare_arrays(stored_arrays, fresh_arrays, fresh_scales,
                                   fitted=bool(record.complexity.fitted_parameters))
        found, done = compare_loss_figures(stored, new, stored_arrays, record.results.primary.ablation, fresh_scales)
        problems += found
        problems += [p for p in compare_results(stored, new) if p.split(":", 1)[0] not in done]
    else:
        problems += compare_results(stored, new)
    if fresh.heldout_commitment != record.heldout_commitment:
        problems.append("heldout_commitment differs from the re-score")
    stored = record.complexity.to_dict()
    for key, value in fresh.complexity.to_dict().items():
        if stored.get(key) != value:
            problems.append(f"complexity.{key}: record {stored.get(key)}, re-score {value}")
    old_macs = None if record.efficiency is None else record.efficiency.original_macs_per_example
    new_macs = None if fresh.efficiency is None else fresh.efficiency.original_macs_per_example
    if old_macs != new_macs:
        problems.append(f"efficiency.original_macs_per_example: record {old_macs}, re-score {new_macs}")
    if record.isolation.level != "namespaces":
        problems.append("the record was not scored in isolation; score it again without --in-process")
    return problems

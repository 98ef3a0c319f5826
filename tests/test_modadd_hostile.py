"""Cheating on modadd-p113 (issue 16, item 6): the answer (a + b) mod 113 is one line of code from public tokens.

Four hostile submissions (tests/hostile/answer-*) compute the answer c and push it through the target neurons,
with everything they store learned from the fit pairs alone (their tables are built here from the public model
and the fit pairs, as anyone could). Each is scored through the real CLI in an isolated child, the board is
rendered from a results folder holding only these records, and the test asserts what the board does with each
(`beats by other means` or not) and the measured facts that explain it:

- **The recovery bound.** Losses are ≥ 0, so no replacement's recovery can exceed
  mean L_zero / (mean L_zero − mean L_clean) = 1 + mean L_clean / (mean L_zero − mean L_clean), here
  100.0000114% (k = 8 cluster) and 100.0000187% (all 512 neurons): the clean loss is ~9e-7 nats and zeroing
  costs 4.7–9.4 nats. A cheat can only beat the neuron by ≤ 2e-7 in recovery, so the flag's gate (the 95% CI's
  low end > 100%) needs an interval narrower than that, which these per-pair losses give (the clean loss's
  standard deviation is 5e-6 nats over the eval pairs).
- **The KL arm cannot fire.** The clean model puts ~9e-7 of its probability on wrong answers, so a replacement
  that makes the right answer more certain moves KL(clean ‖ replaced) by at most Σ_c' p_clean(c') · Δmargin_c';
  with every output within ±10,000 (the harness's limit) that is ≤ 0.09 nats (k = 8) and ≤ 0.23 nats (all),
  against KL(clean ‖ zero) = 7.7 and 4.7 nats. KL recovery stays ≥ 99.99% for every cheat.
- **So only the fidelity arm (mean r < 0.5) can flag a cheat here**, and it does only when the cheat's output
  is a function of the answer alone (r 0.31–0.35: the answer carries ~10% of a neuron's variance, the rest
  depends on a and b apart). A cheat that adds its push to a real replacement keeps r ≈ 0.96, beats the neuron
  with a CI wholly above 100%, and is not flagged.
- **The copy rule keeps every table cheat off the ranking.** Since the description length became a real code
  (issue 17, convention 2), a table with an output per answer stores more bits than the targets' own weights at
  8 bits each: all five table entries are copies, references with no rank and off the frontier, the hybrid
  included, and the honest `fourier-cluster` ranks first. (Before, the hybrid ranked first, above it.) The single
  neuron's honest-looking Fourier rule is not a copy and ranks.

Whether a held-out split could help: no. Every input is public and the answer is computed, not looked up, so
no secret transform or subset of the pairs hides anything from these cheats; `--held-out-secret` is refused for
token tasks in one line (`test_heldout_secret_is_refused_for_modadd_with_the_reason`).

Slow (25 s on an idle 2-core machine, 100 s on a busy one): seven isolated scorings, two of them of the whole
MLP, and two tables tuned by Adam.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import ROOT, board_column, load_module

from benchmark.sandbox.process import isolation_problem

HOSTILE = Path(__file__).parent / "hostile"
P = 113
CLUSTER, WHOLE, SINGLE = (f"modadd-p113/mlp_hook_post:{t}" for t in ("freq8", "all", "137"))
LAYER = "mlp_hook_post"
OUTPUT_LIMIT = 1e4  # the harness's bound on every output value (docs/submissions.md)

_problem = isolation_problem()
needs_isolation = pytest.mark.skipif(_problem is not None, reason=f"no process isolation here: {_problem}")


# -- what a cheater builds from public things: the model and the fit pairs ------------------------------------------

def fit_pairs(task_id: str) -> SimpleNamespace:
    """The task's fit pairs run to the MLP: tokens `# [n, 3]`, answers `# [n]`, neurons `# [n, 512]`, the carried
    residual stream, and the model (public: its checkpoint is in the repository)."""
    from benchmark.harness.context import prepare
    from benchmark.tasks import get_task

    ctx = prepare(get_task(task_id))
    tokens = ctx.fit_set.load(ctx.fit_indices)
    labels = torch.as_tensor(ctx.fit_set.labels()[ctx.fit_indices])
    carry: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        mid = ctx.model.run(tokens, until="hook_resid_mid", carry=carry)
        post = ctx.model.run(mid, after="hook_resid_mid", until=LAYER, carry=carry)
    return SimpleNamespace(model=ctx.model, tokens=tokens, labels=labels, post=post, carry=carry,
                           units=torch.as_tensor(ctx.task.units))


def push(pairs: SimpleNamespace, base: torch.Tensor, steps: int = 400) -> torch.Tensor:
    """Per answer c, what to add to `base # [n, n_units]` (the units' values on the fit pairs) to lower the fit
    pairs' mean loss of answer c: delta `# [113, n_units]` minimising mean CE(rest + clamp(base + delta[c], 0, 1e4)
    W_out W_U) by Adam, where `rest` is the logits with the units zeroed (the readout after the MLP is linear)."""
    model, units = pairs.model, pairs.units
    readout = (model.W_out[units].double() @ model.W_U.double()).detach()  # [n_units, 113]
    zeroed = pairs.post.clone()
    zeroed[:, units] = 0
    with torch.no_grad():
        rest = model.run(zeroed, after=LAYER, carry=dict(pairs.carry)).double()  # [n, 113]
    answers = pairs.labels
    delta = torch.zeros(P, len(units), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=0.3)
    for _ in range(steps):
        values = (base.double() + delta[answers]).clamp(0, OUTPUT_LIMIT)  # [n, n_units]
        loss = torch.nn.functional.cross_entropy(rest + values @ readout, answers)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return delta.detach()


def answer_means(pairs: SimpleNamespace) -> torch.Tensor:
    """The fit pairs' mean activation of the units per answer `# [113, n_units]` (what `answer-mean` fits)."""
    y = pairs.post[:, pairs.units].double()
    return torch.stack([y[pairs.labels == c].mean(0) for c in range(P)])


def load_hostile(path: Path) -> ModuleType:
    return load_module(path, f"modadd_hostile_{path.parent.name}")


def kl_reach(task_id: str) -> tuple[float, float]:
    """(mean KL(clean ‖ zero), the most a replacement within ±10,000 can add to KL(clean ‖ ·) by widening margins)
    over the eval pairs. Widening the answer's margin over c' by m_c' adds Σ_c' p_clean(c') m_c' to the KL (to first
    order, the answer's own term ≤ 0), and m_c' = Σ_j (v_j − n_j)(R_jc − R_jc') with R = W_out W_U; with
    |v_j| ≤ L its maximum is L Σ_j |Σ_c' p(c') (R_jc − R_jc')|
    (the clean n_j's own part is ≤ 0.2% of L and left out)."""
    from benchmark import stats
    from benchmark.harness.context import prepare
    from benchmark.tasks import get_task

    ctx = prepare(get_task(task_id))
    tokens, labels = ctx.eval_set.load(ctx.eval_indices), torch.as_tensor(ctx.eval_labels)
    units = torch.as_tensor(ctx.task.units)
    carry: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        post = ctx.model.run(tokens, until=LAYER, carry=carry)
        clean = ctx.model.run(post, after=LAYER, carry=dict(carry))
        zeroed = post.clone()
        zeroed[:, units] = 0
        zero = ctx.model.run(zeroed, after=LAYER, carry=dict(carry))
        log_p = torch.log_softmax(clean.double(), 1)
        readout = ctx.model.W_out[units].double() @ ctx.model.W_U.double()  # [n_units, 113]
    kl_zero = stats.per_example_kl(torch.log_softmax(clean.float(), 1).numpy(),
                                   torch.log_softmax(zero.float(), 1).numpy())
    wrong = log_p.exp()
    wrong[torch.arange(len(labels)), labels] = 0  # [n, 113]: p_clean(c') for c' ≠ c
    gradient = readout[:, labels].T * wrong.sum(1, keepdim=True) - wrong @ readout.T  # [n, n_units]
    return float(kl_zero.mean()), float(OUTPUT_LIMIT * gradient.abs().sum(1).mean())


# -- scoring and the board -------------------------------------------------------------------------------------------

def slug(task_id: str) -> str:
    return task_id.replace("/", "__").replace(":", "-")


def prepare_folder(tmp_path: Path, source: str, name: str | None = None) -> Path:
    """A copy of tests/hostile/SOURCE under tmp_path, renamed to NAME (folder and submission.toml)."""
    name = name or source
    folder = tmp_path / "subs" / name
    shutil.copytree(HOSTILE / source, folder)
    meta = folder / "submission.toml"
    meta.write_text(meta.read_text().replace(f'name = "{source}"', f'name = "{name}"'))
    return folder


def score(cli, folder: Path, task_id: str, results: Path) -> dict:
    proc = cli("score", str(folder), "--task", task_id, "--results-dir", str(results))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((results / slug(task_id) / f"{folder.name}.json").read_text())
    assert record["isolation"]["level"] == "namespaces"
    return record


def sidecar(results: Path, record: dict) -> dict[str, np.ndarray]:
    with np.load(results / slug(record["task"]["id"]) / record["sidecar"]["file"]) as arrays:
        return {k: arrays[k] for k in arrays.files}


def board_rows(board: str, task_id: str) -> dict[str, list[str]]:
    """The task's rows on the rendered board, by submission name: its cells."""
    from benchmark.board.leaderboard import md

    section = board.split(f"## {md(task_id)}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| # |"):
            cells = [c.strip() for c in line.split("|")]
            rows[cells[2].split(" (")[0].replace("\\", "")] = cells
    return rows


def stable_excess_interval(arrays: dict[str, np.ndarray]) -> tuple[float, float]:
    """Fieller's 95% set for R − 1 = mean(L_c − L_r) / mean(L_z − L_c), the same set as the record's for R
    (N − R₀D = (N − D) − (R₀ − 1)D) without the cancellation of B² − AC at B² ≈ 1e2–1e4 (the record's interval
    can collapse to a point there)."""
    from benchmark import intervals

    c, z, r = (arrays[f"loss.{k}"].astype(np.float64) for k in ("clean", "zero", "replaced"))
    lo_hi = intervals.fieller_ratio_interval(c - r, z - c, 0.95)
    assert lo_hi is not None
    return lo_hi


@pytest.mark.slow
@needs_isolation
def test_pushing_the_answer_through_the_neurons(tmp_path, cli, session_cache):
    from benchmark.board.leaderboard import beats_by_other_means
    from benchmark.record.typed import Record

    results = tmp_path / "results"
    cluster = fit_pairs(CLUSTER)

    # (i) copy-like: the fit pairs' mean activation per answer, gain 1, on the cluster and on the whole MLP
    mean = prepare_folder(tmp_path, "answer-mean")
    # (ii) push: the same means times 3 on the whole MLP; on the cluster, a table tuned on the fit pairs (a gain
    # alone does not help a cluster: its own readout favours answers other than c, which the rest of the model
    # outvotes, so the fit pairs' loss at gain 3 is 5e5 times the clean loss)
    mean_x3 = prepare_folder(tmp_path, "answer-mean", "answer-mean-x3")
    (mean_x3 / "target.json").write_text(json.dumps({"gain": 3.0}))
    table = prepare_folder(tmp_path, "answer-push")
    means = answer_means(cluster)
    tuned = (means + push(cluster, means[cluster.labels])).clamp(0, OUTPUT_LIMIT)  # [113, n_units]
    np.savez(table / "push.npz", table=tuned.float().numpy())
    # (iv) a real replacement plus the push: fourier-cluster's output, and per answer what lowers its loss
    hybrid = prepare_folder(tmp_path, "answer-hybrid")
    shutil.copy(ROOT / "submissions" / "fourier-cluster" / "replacement.py", hybrid / "fourier_cluster.py")
    fourier = load_hostile(hybrid / "fourier_cluster.py")
    params = {k: v.float() for k, v in fourier.fit(cluster.tokens, cluster.post[:, cluster.units]).items()}
    np.savez(hybrid / "push.npz", delta=push(cluster, fourier.replace(cluster.tokens, params, None)).numpy())
    # (iii) looks honest, on the top single neuron: a ReLU of Fourier terms of (a + b) mod 113
    single = prepare_folder(tmp_path, "answer-fourier")

    runs = {
        ("answer-mean", CLUSTER): score(cli, mean, CLUSTER, results),
        ("answer-push", CLUSTER): score(cli, table, CLUSTER, results),
        ("answer-hybrid", CLUSTER): score(cli, hybrid, CLUSTER, results),
        ("fourier-cluster", CLUSTER): score(cli, ROOT / "submissions" / "fourier-cluster", CLUSTER, results),
        ("answer-mean", WHOLE): score(cli, mean, WHOLE, results),
        ("answer-mean-x3", WHOLE): score(cli, mean_x3, WHOLE, results),
        ("answer-fourier", SINGLE): score(cli, single, SINGLE, results),
    }
    proc = cli("leaderboard", "--results-dir", str(results), "--out", "-")
    assert proc.returncode == 0, proc.stderr
    board = proc.stdout
    rank, name_col = board_column(board, "#"), board_column(board, "submission")
    frontier = board_column(board, "frontier")

    facts = {}
    for (name, task_id), record in runs.items():
        primary, res = record["results"]["primary"], record["results"]
        arrays = sidecar(results, record)
        lc, lz = float(arrays["loss.clean"].mean()), float(arrays["loss.zero"].mean())
        bound = lz / (lz - lc)  # the largest recovery any replacement can reach: L_r ≥ 0
        kl = res["kl_recovery"]["zero"]
        cells = board_rows(board, task_id)[name]
        facts[name, task_id] = SimpleNamespace(
            recovery=primary["recovery"], low=primary["recovery_low"], high=primary["recovery_high"], bound=bound,
            stable=stable_excess_interval(arrays), kl=kl, r=Record.from_dict(record).results.mean_fidelity_r,
            ratio=res["mean_loss"]["replaced"] / lc,
            flagged="beats by other means" in cells[name_col], rank=cells[rank], frontier="◆" in cells[frontier],
            zero_losses=float(np.mean(arrays["loss.replaced"] == 0)), copy=record["complexity"]["copy"])
        f = facts[name, task_id]
        assert f.flagged == beats_by_other_means(Record.from_dict(record))  # the board shows what the rule says
        assert f.recovery <= bound + 1e-12
        print(f"{name:16s} {task_id.split(':')[1]:6s} recovery {100 * f.recovery:.7f}% [{100 * f.low:.7f}, "
              f"{100 * f.high:.7f}] (R − 1 without cancellation [{f.stable[0]:.3g}, {f.stable[1]:.3g}]; bound "
              f"{100 * bound:.7f}%)  KL recovery {100 * kl['recovery']:.5f}% [{100 * kl['recovery_low']:.5f}, "
              f"{100 * kl['recovery_high']:.5f}]  r {f.r:.3f}  L_r/L_c {f.ratio:.3g}  "
              f"L_r = 0 on {100 * f.zero_losses:.1f}%"
              f"  flagged {f.flagged}  rank {f.rank}  frontier {f.frontier}  copy {f.copy}")
    for f in facts.values():
        assert f.kl["recovery_low"] > 0.99  # the KL arm never comes near: KL recovery ≥ 99% for every cheat

    # the bound: beating the neuron is worth at most 2e-7 of recovery here
    for task_id, (lo, hi) in ((CLUSTER, (1 + 0.9e-7, 1 + 1.4e-7)), (WHOLE, (1 + 1.6e-7, 1 + 2.2e-7))):
        bounds = {f.bound for (_, t), f in facts.items() if t == task_id}
        assert len(bounds) == 1 and lo < bounds.pop() < hi

    # the tables that hold an output for each of the 113 answers store more bits than the targets' own weights at 8
    # bits each: copies (description length, convention 2), so references, never ranked, never on the frontier
    for key in (("answer-mean", CLUSTER), ("answer-push", CLUSTER), ("answer-hybrid", CLUSTER), ("answer-mean", WHOLE),
                ("answer-mean-x3", WHOLE)):
        assert facts[key].copy and facts[key].rank == "ref" and not facts[key].frontier, key
    # (i) copy-like on the cluster: r 0.32, the loss 0.9 × clean, the CI straddles 100%: not flagged
    f = facts["answer-mean", CLUSTER]
    assert f.r < 0.4 and 0.5 < f.ratio < 1.5 and f.low <= 1 < f.high and f.stable[0] <= 0 < f.stable[1]
    assert not f.flagged
    # (i) on the whole MLP the same means beat the neuron (loss 0.12 × clean): flagged by r alone
    f = facts["answer-mean", WHOLE]
    assert f.r < 0.4 and f.ratio < 0.5 and f.low > 1 and f.stable[0] > 0 and f.flagged
    # (ii) gain 3 on the whole MLP: every eval loss is exactly 0, the recovery is the bound itself; flagged by r
    f = facts["answer-mean-x3", WHOLE]
    assert f.zero_losses == 1.0 and f.recovery == pytest.approx(f.bound, abs=1e-12) and f.r < 0.4 and f.flagged
    # (ii) the tuned table on the cluster: loss 0.3 × clean, CI above 100%; flagged by r alone
    f = facts["answer-push", CLUSTER]
    assert f.r < 0.4 and f.ratio < 0.5 and f.low > 1 and f.stable[0] > 0 and f.flagged
    # (iv) the hybrid: beats the neuron with a CI above 100%, r ≈ 0.96, KL recovery ≈ 100%: the flag's rule does not
    # fire, but its push table makes it a copy, so the honest fourier-cluster ranks first, on the frontier
    f, honest = facts["answer-hybrid", CLUSTER], facts["fourier-cluster", CLUSTER]
    assert f.r > 0.9 and f.ratio < 0.5 and f.low > 1 and f.stable[0] > 0 and f.kl["recovery_high"] > 0
    assert not f.flagged and f.stable[0] > honest.stable[1]
    assert honest.rank == "1" and honest.frontier and not honest.flagged and not honest.copy
    # (iii) honest-looking, single neuron: 99.8% (below 100%, so the flag's gate is never reached), r 0.35, not a
    # copy (a ReLU of a few Fourier terms), ranked
    f = facts["answer-fourier", SINGLE]
    assert 0.99 < f.low <= f.high < 1 and f.r < 0.5 and not f.flagged and not f.copy and f.rank == "1"

    # why the KL arm cannot fire: no output within ±10,000 moves KL(clean ‖ ·) by a tenth of the zero ablation's
    for task_id in (CLUSTER, WHOLE):
        kl_zero, reach = kl_reach(task_id)
        print(f"{task_id}: mean KL(clean ‖ zero) {kl_zero:.3f} nats; most a ±10,000 output adds by widening margins "
              f"{reach:.3f} nats")
        assert reach < 0.1 * kl_zero


def test_heldout_secret_is_refused_for_modadd_with_the_reason(tmp_path, cli):
    """No held-out split for token tasks: one line that says why, before any model loads, and nothing written."""
    secret = tmp_path / "heldout.secret"
    secret.write_text("RBHELDOUT-" + "ab" * 24 + "\n")
    secret.chmod(0o600)
    results = tmp_path / "results"
    for task in (SINGLE, "modadd-p113/*"):
        proc = cli("score", "zero", "--task", task, "--results-dir", str(results), "--held-out-secret", str(secret))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("replacebench: error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "no held-out split is defined for modadd-p113 tasks: every input is public and the answer is a fixed " \
               "function of it" in proc.stderr and "without --held-out-secret" in proc.stderr
    assert not results.exists()

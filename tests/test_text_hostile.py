"""Cheating on shakespeare-char (issue 19, item 6): the whole corpus is public, so a submission can ship it.

Two hostile submissions replace the whole layer-0 MLP (`blocks_0_mlp_hook_post:all`, 512 neurons at every
position, `# [b, 128, 512]`) with values that push the model toward each position's true next character, without
computing a neuron. Per character c they write `table[c] # [512]`, tuned here by Adam on the fit windows only
(public model, public fit set, as anyone could): the neuron values that most lower the fit windows' loss of c
when written at every position whose next character is c.

- `text-lookup` embeds the validation text (`val.txt`, 111,540 bytes, written here from the public corpus) and,
  at each position, finds the window's characters up to it in that text to read the next character: causal, so
  the harness's causality audit passes it. Stored: the text (892,320 bits) and the float32 table (1,064,960
  bits), against the copy threshold 8 × fan-in = 8 × 66,304 = 530,432 bits.
- `text-peek` stores no text: the replacement sees the whole window, so at position t it reads token t + 1, which
  is position t's target. Its int8 table (33,280 bytes) keeps it under the copy threshold.

Each is scored through the real CLI in an isolated child. `text-peek` is refused by the causality audit
(`harness.passes.causal_audit`) before any figure; for `text-lookup` the test asserts what the record and the
board do with it (a copy, `beats by other means`) and that it is not a clean pass (ranked). docs/text.md
("Held-out split") measures what embedding the text costs and why a held-out split cannot exist for this corpus.

Slow: two isolated scorings of the whole layer and a table tuned by Adam on the fit windows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.sandbox.process import isolation_problem

HOSTILE = Path(__file__).parent / "hostile"
WHOLE = "shakespeare-char/blocks_0_mlp_hook_post:all"
LAYER = "blocks_0_mlp_hook_post"
VOCAB_SIZE = 65
COPY_THRESHOLD = 8 * 66_304  # 8 bits × the whole layer-0 MLP's fan-in from blocks_0_hook_resid_mid

_problem = isolation_problem()
needs_isolation = pytest.mark.skipif(_problem is not None, reason=f"no process isolation here: {_problem}")


def fit_windows(task_id: str, n: int = 96) -> SimpleNamespace:
    """The first `n` fit windows run to the layer: tokens `# [n, 128]`, next characters `# [n, 128]`, the layer's
    activation `# [n, 128, 512]` and the carried residual stream (all public: the checkpoint is in the repository)."""
    from benchmark.harness.context import prepare
    from benchmark.tasks import get_task

    ctx = prepare(get_task(task_id))
    indices = ctx.fit_indices[:n]
    tokens = ctx.fit_set.load(indices).long()
    labels = torch.as_tensor(ctx.fit_set.labels()[indices]).long()
    carry: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        post = ctx.model.run(tokens, until=LAYER, carry=carry)
    return SimpleNamespace(model=ctx.model, tokens=tokens, labels=labels, post=post, carry=carry)


def push_table(fit: SimpleNamespace, steps: int = 60) -> torch.Tensor:
    """`table # [65, 512]` minimising the fit windows' mean next-character loss when the layer's activation at
    every position is table[that position's next character], by Adam from the per-character mean activation."""
    model, labels = fit.model, fit.labels
    flat_post, flat_next = fit.post.reshape(-1, fit.post.shape[-1]), labels.reshape(-1)
    start = torch.stack([flat_post[flat_next == c].mean(0) if (flat_next == c).any() else flat_post.mean(0)
                         for c in range(VOCAB_SIZE)])
    table = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([table], lr=0.1)
    for _ in range(steps):
        logits = model.class_logits(model.run(table[labels], after=LAYER, carry=dict(fit.carry)))  # [n, 128, 65]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB_SIZE), flat_next)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return table.detach()


def prepare_folder(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "subs" / source
    shutil.copytree(HOSTILE / source, folder)
    return folder


def score(cli, folder: Path, task_id: str, results: Path) -> dict:
    proc = cli("score", str(folder), "--task", task_id, "--results-dir", str(results))
    assert proc.returncode == 0, proc.stderr
    slug = task_id.replace("/", "__").replace(":", "-")
    record = json.loads((results / slug / f"{folder.name}.json").read_text())
    assert record["isolation"]["level"] == "namespaces"
    return record


@pytest.mark.slow
@needs_isolation
def test_embedding_the_validation_text_is_caught(tmp_path, cli, data_dir, session_cache):
    from benchmark.board.leaderboard import beats_by_other_means, is_copy, rankable
    from benchmark.data.shakespeare import read_corpus
    from benchmark.record.typed import Record

    corpus = read_corpus(data_dir)
    val = corpus[int(0.9 * len(corpus)):]
    table = push_table(fit_windows(WHOLE))

    lookup = prepare_folder(tmp_path, "text-lookup")
    (lookup / "val.txt").write_text(val, encoding="ascii")
    np.save(lookup / "push.npy", table.float().numpy())
    peek = prepare_folder(tmp_path, "text-peek")
    scale = float(table.abs().max()) / 127
    np.savez(peek / "push.npz", table=np.round(table.numpy() / scale).astype(np.int8),
             scale=np.float16(scale), mean=fit_windows(WHOLE).post.mean((0, 1)).numpy().astype(np.float16))

    results = tmp_path / "results"
    # the peek reads position t's answer from the window itself: the causality audit refuses it before any figure
    proc = cli("score", str(peek), "--task", WHOLE, "--results-dir", str(results))
    assert proc.returncode != 0 and "replace is not causal" in proc.stderr and "Traceback" not in proc.stderr
    assert not (results / WHOLE.replace("/", "__").replace(":", "-") / "text-peek.json").exists()
    records = {"text-lookup": score(cli, lookup, WHOLE, results)}
    proc = cli("leaderboard", "--results-dir", str(results), "--out", "-")
    assert proc.returncode == 0, proc.stderr
    board = proc.stdout

    facts = {}
    for name, raw in records.items():
        record = Record.from_dict(raw)
        res, cx = raw["results"], raw["complexity"]
        line = next(row for row in board.splitlines() if f"| {name}" in row or f" {name} " in row)
        facts[name] = SimpleNamespace(
            recovery=res["primary"]["recovery"], low=res["primary"]["recovery_low"], kl=record.results.primary_kl,
            loss=res["mean_loss"], stored=cx["stored_bits"], copy=cx["copy"], fan_in=cx["target_fan_in"],
            flagged=beats_by_other_means(record), copy_rule=is_copy(record), ranked=rankable(record),
            shown_flagged="beats by other means" in line, r=record.results.mean_fidelity_r)
        print(name, facts[name])
    for f in facts.values():
        assert f.fan_in == COPY_THRESHOLD // 8
        assert not f.ranked  # never a clean pass
        # it beats the neurons with a CI wholly above 100% (loss 0.33 nats against the clean 1.55: looked up causally,
        # an early position's few characters are ambiguous in the text),
        # without tracking them (r ≈ 0.06) and moving the output further from the clean model's than the mean
        # ablation (KL recovery ≈ −63%): both arms of `beats by other means` fire, and the board shows it
        assert f.low > 1.3 and f.loss["replaced"] < 0.3 * f.loss["clean"]  # measured: 140.4%, 0.33 of 1.55 nats
        assert f.r < 0.2 and f.kl.recovery_high < 0 and f.flagged and f.shown_flagged
    # the embedded text (and a float32 table) is also priced out: a copy
    lookup = facts["text-lookup"]
    assert lookup.stored > COPY_THRESHOLD and lookup.copy and lookup.copy_rule


def test_heldout_secret_is_refused_for_text_with_the_reason(tmp_path, cli):
    """No held-out split for text: one line that says why and points at the decision, before any model loads, and
    nothing written; the decision is documented where the line points."""
    secret = tmp_path / "heldout.secret"
    secret.write_text("RBHELDOUT-" + "ab" * 24 + "\n")
    secret.chmod(0o600)
    results = tmp_path / "results"
    for task in (WHOLE, "shakespeare-char/*"):
        proc = cli("score", "zero", "--task", task, "--results-dir", str(results), "--held-out-secret", str(secret))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("replacebench: error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "no held-out split is defined for tinyshakespeare tasks: the whole corpus is public" in proc.stderr
        assert "without --held-out-secret" in proc.stderr and "docs/text.md" in proc.stderr
    assert not results.exists()
    docs = (Path(__file__).parent.parent / "docs" / "text.md").read_text()
    section = docs.split("\n## Held-out split\n", 1)[1].split("\n## ", 1)[0]
    assert "no held-out split" in section and "--held-out-secret" in section

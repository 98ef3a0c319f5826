"""Independent check of a hand-written replacement of one shakespeare-char head, computed with the model directly (no
harness): the loss with the head clean, zeroed, mean-ablated and replaced, and the recovery with its CI.

    python benchmarks/head_replacement_check.py [--task ID] [--submission DIR] [--fit-windows N] [--explore]

Defaults: the previous-token head task `shakespeare-char/blocks_0_attn_hook_z:head1` and `submissions/previous-token-head`
(`benchmarks/induction_head_check.py` is the induction head's own, fuller check).

1. **The data.** Fit: `--fit-windows` windows of `train` (default 2,000), the seeded draw the task's fit set uses
   (`seeded_subset(labels, 2000, 1, balanced=False)`); eval: the 864 windows of `val` (128 input characters, the
   next 128 as targets). Both are run once to the task's layer `blocks_l_attn_hook_z # [n, T, H, e]` with the
   carried activations; each condition sets the head's slice `z[:, :, h]` `# [n, T, e]` and runs the rest.
2. **The submission** runs in this process as the harness would: `fit(tokens, target)` with tokens `# [n_fit, 128]`
   int64 and target `# [n_fit, 128, 1, e]` float32, its numbers cast to float32, then `replace(tokens, params,
   task)` on the eval windows (and, for the fit-set numbers, on the fit windows).
3. **The losses.** Per window, the mean over its 128 positions of the next-character cross-entropy: clean (L_c),
   zeroed (L_z), the head at its fit-set mean per position (L_m, the `mean` ablation), replaced (L_r); recovery
   R = (mean L_a − mean L_r) / (mean L_a − mean L_c) with Fieller's 95% interval (`stats.recovery_stats`), on the
   eval windows and (point values) on the fit windows; KL recovery; the fraction of the head's output variance
   explained (1 − SSE/SST over positions).
4. `--explore` (the previous-token head only): the attention-profile variants of `submissions/previous-token-head`,
   each fitted on the fit windows as it fits (alternating least squares of a shared value table and the weights on
   the offsets), with their fit-set recovery vs mean: the offsets {1}, {1, 2}, {0, 1, 2}, {0, 1, 2} plus a weight
   spread evenly over k ≤ q − 3, {0, 1, 2} with weights per current character, and the head's own pattern with a
   least-squares table.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmark import stats  # noqa: E402
from benchmark.data.base import seeded_subset  # noqa: E402
from benchmark.data.shakespeare import open_split  # noqa: E402
from benchmark.harness.description import measure  # noqa: E402
from benchmark.models import head_scores as heads  # noqa: E402
from benchmark.models.shakespeare import ShakespeareChar  # noqa: E402
from benchmark.sandbox.worker import TaskView, params_to_arrays, tensor_to_array  # noqa: E402

MODEL, BATCH, V = "shakespeare-char", 128, 65
FIT_WINDOWS, FIT_SEED = 2000, 1  # the task's fit set: seeded_subset(train labels, 2000, 0 + 1, balanced=False)
TASK = "shakespeare-char/blocks_0_attn_hook_z:head1"
SUBMISSION = ROOT / "submissions" / "previous-token-head"


def parse_task(task: str) -> tuple[str, int, int]:
    """(layer name, layer index, head) of `shakespeare-char/blocks_{l}_attn_hook_z:head{h}`."""
    layer, unit = task.split("/", 1)[1].split(":")
    if not (layer.endswith("_attn_hook_z") and unit.startswith("head")):
        raise SystemExit(f"{task}: not a head task (blocks_l_attn_hook_z:headH)")
    return layer, int(layer.split("_")[1]), int(unit[len("head"):])


class Split:
    """Windows of one split run to a head layer `blocks_l_attn_hook_z` (index l): tokens and targets `# [n, T]`, z
    `# [n, T, H, e]`, the carry the rest of the pass needs, and with `pattern` the attention patterns of those heads
    (an index: `# [n, T, T]`; a slice: `# [n, H', T, T]`; None: not kept). `benchmarks/induction_head_check.py` uses
    it too."""

    def __init__(self, model: ShakespeareChar, layer: str, index: int, split: str, n: int | None,
                 data_dir: str | None, pattern: int | slice | None = None) -> None:
        data = open_split(split, data_dir)
        self.model, self.layer = model, layer
        rows = torch.as_tensor(np.arange(len(data)) if n is None else seeded_subset(data.labels(), n, FIT_SEED, False))
        self.tokens = data.inputs[rows]  # [n, T] int64
        self.targets = torch.as_tensor(data.labels())[rows]  # [n, T]
        zs, carries, patterns = [], [], []
        with torch.no_grad(), heads.captured_patterns(model, [index]) as captured:
            for start in range(0, len(self.tokens), BATCH):
                carry: dict[str, torch.Tensor] = {}
                zs.append(model.run(self.tokens[start : start + BATCH], until=layer, carry=carry))
                carries.append(carry)
                if pattern is not None:
                    patterns.append(captured[index][:, pattern].clone())
        self.z = torch.cat(zs)  # [n, T, H, e]
        self.carry = {k: torch.cat([c[k] for c in carries]) for k in carries[0]}
        self.pattern = torch.cat(patterns) if pattern is not None else None

    def losses(self, head: int, values: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """(per-window loss `# [n]` float64, log-probabilities `# [n, T, V]`) with z[:, :, head] = values
        `# [n, T, e]` (clean when None)."""
        z = self.z.clone()
        if values is not None:
            z[:, :, head] = values
        out = []
        with torch.no_grad():
            for start in range(0, len(z), BATCH):
                part = slice(start, start + BATCH)
                carry = {k: v[part] for k, v in self.carry.items()}
                out.append(torch.log_softmax(self.model.run(z[part], after=self.layer, carry=carry).float(), -1))
        logp = torch.cat(out)  # [n, T, V]
        nll = F.nll_loss(logp.flatten(0, 1), self.targets.flatten(), reduction="none").view(self.targets.shape)
        return nll.mean(1).double().numpy(), logp


def load_submission(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("replacement_under_check", folder / "replacement.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def explained(y: torch.Tensor, yhat: torch.Tensor) -> float:
    """1 − SSE/SST of the head's output `# [n, T, e]` (SST about its mean over all positions)."""
    y, yhat = y.double(), yhat.double()
    return float(1 - ((y - yhat) ** 2).sum() / ((y - y.mean((0, 1))) ** 2).sum())


def pct(x: float | None) -> str:
    return "undefined" if x is None else f"{100 * x:.1f}%"


def window_kl(logp_clean: torch.Tensor, logp: torch.Tensor) -> np.ndarray:
    """Per window, the mean over positions of KL(clean ‖ other) `# [n]` float64."""
    return (logp_clean.exp() * (logp_clean - logp)).sum(-1).mean(1).double().numpy()


# --explore: the profile variants (module docstring, 4) -----------------------------------------------------------

def offset_parts(tokens: torch.Tensor, offsets: list[int], rest: bool) -> torch.Tensor:
    """One-hot of tokens[q − d] for each offset d (zero where q < d), and with `rest` the mean one-hot over
    k ≤ q − max(d) − 1 (zero where there is none) `# [b, T, K, 65]` float64."""
    t = tokens.shape[1]
    parts = [F.pad(F.one_hot(tokens, V).double(), (0, 0, d, 0))[:, :t] for d in offsets]
    if rest:
        start = max(offsets) + 1
        counts = F.one_hot(tokens, V).double().cumsum(1)
        n = torch.arange(1, t + 1, dtype=torch.float64)
        parts.append(F.pad(counts / n[None, :, None], (0, 0, start, 0))[:, :t])
    return torch.stack(parts, 2)


def profile_variant(tokens: torch.Tensor, y: torch.Tensor, offsets: list[int], rest: bool = False,
                    per_char: bool = False, rounds: int = 8) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Alternating least squares of z[q] = Σ_j w_j(c_q) · part_j[q] @ table, the weights renormalised over the parts
    that exist at q: (weights `# [65 or 1, K]`, table `# [65, e]`, stored numbers)."""
    parts = offset_parts(tokens, offsets, rest)  # [n, T, K, 65]
    exists = parts.sum(-1) > 0  # [n, T, K]
    keys = tokens if per_char else torch.zeros_like(tokens)
    w = torch.tensor([float(d == 1) for d in offsets] + ([0.0] if rest else []), dtype=torch.float64)
    w = w.expand(V if per_char else 1, -1).clone()
    full = slice(max(offsets) + int(rest), None)  # positions where every part exists
    for step in range(rounds + 1):
        a = w[keys] * exists
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)  # [n, T, K]
        x = torch.einsum("ntk,ntkv->ntv", a, parts).flatten(0, 1)  # [n T, 65]
        table = torch.linalg.lstsq(x.T @ x, x.T @ y.flatten(0, 1), driver="gelsd").solution  # [65, e]
        if step == rounds:
            break
        c = (parts[:, full] @ table).flatten(0, 1)  # [rows, K, e]
        gram = torch.einsum("rke,rle->rkl", c, c)
        rhs = torch.einsum("rke,re->rk", c, y[:, full].flatten(0, 1))
        k = keys[:, full].flatten()
        gram = torch.zeros(len(w), *gram.shape[1:], dtype=torch.float64).index_add_(0, k, gram)
        rhs = torch.zeros(len(w), rhs.shape[1], dtype=torch.float64).index_add_(0, k, rhs)
        solved = torch.linalg.lstsq(gram, rhs[..., None], driver="gelsd").solution[..., 0]
        w = torch.where(gram.diagonal(dim1=1, dim2=2).sum(1, keepdim=True) > 0, solved, w)
    a = w[keys] * exists
    a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
    return w, torch.einsum("ntk,ntkv->ntv", a, parts) @ table, w.numel() + table.numel()


def explore(fit: Split, head: int, y_fit: torch.Tensor, base: tuple[np.ndarray, np.ndarray]) -> None:
    l_c, l_m = base
    y = y_fit.double()

    def show(name: str, numbers: int, out: torch.Tensor, w: torch.Tensor | None = None) -> None:
        l_r, _ = fit.losses(head, out.float())
        rec = (l_m.mean() - l_r.mean()) / (l_m.mean() - l_c.mean())
        profile = "" if w is None else f"; weights (mean over characters) {np.round(w.mean(0).numpy(), 3).tolist()}"
        print(f"  {name:48s} {numbers:5d} numbers  L_r {l_r.mean():.4f}  recovery vs mean {pct(rec)}  variance "
              f"explained {explained(y, out):.3f}{profile}")

    print("variants on the FIT windows (offsets d: weights on q − d):")
    for name, offsets, rest, per_char in (("q − 1 only", [1], False, False), ("q − 1, q − 2", [1, 2], False, False),
                                          ("q, q − 1, q − 2", [0, 1, 2], False, False),
                                          ("q, q − 1, q − 2, and even over k ≤ q − 3", [0, 1, 2], True, False),
                                          ("q, q − 1, q − 2, per current character", [0, 1, 2], False, True),
                                          ("q, q − 1 per current character", [0, 1], False, True)):
        w, out, numbers = profile_variant(fit.tokens, y, offsets, rest, per_char)
        show(name, numbers, out, w)
    x = torch.einsum("nqk,nkv->nqv", fit.pattern.double(), F.one_hot(fit.tokens, V).double()).flatten(0, 1)
    table = torch.linalg.lstsq(x.T @ x, x.T @ y.flatten(0, 1), driver="gelsd").solution
    show("the head's own pattern (not a rule)", table.numel(), (x @ table).view_as(y))
    t = fit.pattern.shape[1]
    q = torch.arange(t)
    mass = [float(fit.pattern[:, q[d:], q[d:] - d].double().mean()) for d in range(3)]
    print(f"  the head's mean attention on q, q − 1, q − 2: {np.round(mass, 3).tolist()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--submission", type=Path, default=SUBMISSION)
    parser.add_argument("--checkpoint", default=heads.CHECKPOINT)
    parser.add_argument("--fit-windows", type=int, default=FIT_WINDOWS)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--explore", action="store_true", help="also fit and measure the profile variants")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from benchmark.models.registry import load_model
    model, _ = load_model(MODEL, str(ROOT / args.checkpoint) if not Path(args.checkpoint).is_absolute()
                          else args.checkpoint)
    layer, index, head = parse_task(args.task)
    t0 = time.perf_counter()
    fit = Split(model, layer, index, "train", args.fit_windows, args.data_dir, pattern=head)
    ev = Split(model, layer, index, "val", None, args.data_dir, pattern=head)
    y_fit, y_ev = fit.z[:, :, head].contiguous(), ev.z[:, :, head].contiguous()  # [n, T, e]
    n, t, e = y_ev.shape
    mean = y_fit.mean(0)  # [T, e], per position
    l_c, logp_c = ev.losses(head)
    l_z, logp_z = ev.losses(head, torch.zeros_like(y_ev))
    l_m, logp_m = ev.losses(head, mean.expand(n, t, e))
    lf_c, _ = fit.losses(head)
    lf_m, _ = fit.losses(head, mean.expand(len(y_fit), t, e))

    sub = load_submission(args.submission)
    start = time.perf_counter()
    arrays = params_to_arrays(sub.fit(fit.tokens.clone(), y_fit[:, :, None].clone()), "fit()")
    fit_s = time.perf_counter() - start
    params = {name: torch.from_numpy(v) for name, v in arrays.items()}
    task = TaskView(id=args.task, model=MODEL, layer=layer, units=(head,), inputs=("tokens",), target_shape=(t, 1, e))
    start = time.perf_counter()
    out = torch.from_numpy(tensor_to_array(sub.replace(ev.tokens.clone(), params, task), "replace()", (n, t, 1, e)))
    replace_s = time.perf_counter() - start
    out_fit = torch.from_numpy(tensor_to_array(sub.replace(fit.tokens.clone(), params, task), "replace()",
                                               (len(y_fit), t, 1, e)))
    l_r, logp_r = ev.losses(head, out[:, :, 0])
    lf_r, _ = fit.losses(head, out_fit[:, :, 0])

    print(f"{args.task}, {args.submission.name}: fit windows {len(y_fit)}, eval windows {n}; fit() {fit_s:.2f} s, "
          f"replace() on the eval windows {replace_s:.3f} s")
    print(f"fit set:  L_c {lf_c.mean():.4f}  L_mean {lf_m.mean():.4f}  L_replaced {lf_r.mean():.4f}  recovery vs "
          f"mean {pct((lf_m.mean() - lf_r.mean()) / (lf_m.mean() - lf_c.mean()))}; variance explained "
          f"{explained(y_fit, out_fit[:, :, 0]):.3f}")
    print(f"eval set: L_c {l_c.mean():.4f}  L_zero {l_z.mean():.4f}  L_mean {l_m.mean():.4f}  "
          f"L_replaced {l_r.mean():.4f}; variance explained {explained(y_ev, out[:, :, 0]):.3f}")
    rec = stats.recovery_stats(l_c, {"zero": l_z, "mean": l_m}, l_r)
    for name, r in rec.items():
        print(f"recovery vs {name}: {pct(r.recovery)} [{pct(r.recovery_low)}, {pct(r.recovery_high)}]  "
              f"(effect {r.effect:+.4f} [{r.effect_low:+.4f}, {r.effect_high:+.4f}])")
    kl = stats.kl_recovery_stats({"zero": window_kl(logp_c, logp_z), "mean": window_kl(logp_c, logp_m)},
                                 window_kl(logp_c, logp_r))
    print("KL recovery: " + ", ".join(f"vs {k} {pct(v.recovery)} [{pct(v.recovery_low)}, {pct(v.recovery_high)}]"
                                      for k, v in kl.items()))
    files = {p.name: p.read_bytes() for p in args.submission.iterdir() if p.is_file()}
    fitted = sum(int(np.asarray(v).size) for v in arrays.values())
    description = measure(files)
    print(f"fitted numbers {fitted}; description length {description.total_bits(fitted):,} bits")
    if args.explore:
        explore(fit, head, y_fit, (lf_c, lf_m))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

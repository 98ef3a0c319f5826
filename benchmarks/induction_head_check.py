"""Independent check of `submissions/induction-head` on shakespeare-char: the head scores, the induction head chosen by
them, and the loss with that head clean, ablated and replaced, computed with the model directly (no harness).

    python benchmarks/induction_head_check.py [--checkpoint PATH | --random] [--fit-windows N] [--head L.H]

1. **The head.** `models.head_scores.head_scores` on the checkpoint (previous-token on the 864 val windows; induction and
   duplicate-token on repeated random characters); the head is the layer-1 head with the highest induction score
   (or `--head`).
2. **The data.** Fit: `--fit-windows` windows of `train` (default 2,000), the seeded draw the task's fit set
   uses (`seeded_subset(labels, 2000, 1, balanced=False)`, as `maintainer/shakespeare_select.py`); eval: the 864
   windows of `val`
   (`data.shakespeare`: 128 input characters, the next 128 as targets, no overlap). Both are run once to
   `blocks_1_attn_hook_z # [n, T, H, e]` with the carried residual stream; each condition sets the head's slice
   `z[:, :, h]` `# [n, T, 32]` and runs the rest (`model.run(z, after=…, carry=…)`).
3. **The submission** is imported from its folder and run in this process as the harness would: `fit(tokens,
   target)` with tokens `# [n_fit, 128]` int64 and target `# [n_fit, 128, 1, 32]` float32, its numbers cast to
   float32, then `replace(tokens, params, task)` on the eval windows.
4. **The losses.** Per window, the mean over its 128 positions of the float32 next-character cross-entropy: clean
   (L_c), the head zeroed (L_z), the head at its fit-set mean per position (L_m, the `mean` baseline), and replaced
   (L_r); recovery R = (mean L_a − mean L_r) / (mean L_a − mean L_c) for each ablation a, with Fieller's 95%
   interval (`stats.recovery_stats`); KL recovery from the per-window mean KL(clean ‖ ·) over positions.
   Also: the submission with one default vector instead of one per current character (the variant not shipped),
   the fraction of the head's output variance each explains (1 − SSE/SST over eval positions), and how often the
   head's own strongest key is the position the algorithm attends to.
5. `--explore`: variants not shipped, fitted the same way (per-character means): matching the last two characters
   (the most recent j with tokens[j−1..j] = tokens[q−1..q], else the one-character match), and averaging the table
   over every earlier occurrence instead of the most recent.
"""

from __future__ import annotations

import argparse
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
from benchmark.models import head_scores as heads  # noqa: E402
from benchmark.harness.description import measure  # noqa: E402
from benchmark.models.shakespeare import ShakespeareChar  # noqa: E402
from benchmark.sandbox.worker import TaskView, params_to_arrays, tensor_to_array  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_replacement_check import Split, explained, load_submission, pct, window_kl  # noqa: E402

MODEL, LAYER = "shakespeare-char", "blocks_1_attn_hook_z"
FIT_WINDOWS = 2000  # the task's fit set: seeded_subset(train labels, 2000, 0 + 1, balanced=False), `Split`
SUBMISSION = ROOT / "submissions" / "induction-head"


def matched(tokens: torch.Tensor, chars: int) -> torch.Tensor:
    """`# [b, q, k]` bool: k < q and the `chars` characters ending at k equal those ending at q."""
    t = tokens.shape[1]
    pos = torch.arange(t)
    same = (tokens[:, :, None] == tokens[:, None, :]) & (pos[None, :] < pos[:, None])
    for back in range(1, chars):
        prev = torch.cat([torch.full_like(tokens[:, :back], -1), tokens[:, :-back]], 1)  # [b, T]
        same &= (prev[:, :, None] == prev[:, None, :]) & (prev[:, None, :] >= 0)
    return same


def most_recent(same: torch.Tensor) -> torch.Tensor:
    """The most recent matching k, plus 1, or −1 `# [b, T]`."""
    pos = torch.arange(same.shape[1], dtype=torch.int16)
    last = torch.where(same, pos, torch.tensor(-1, dtype=torch.int16)).amax(2).long()
    return torch.where(last >= 0, last + 1, -1)


def by_character(sub: ModuleType, tokens: torch.Tensor, at: torch.Tensor, y: torch.Tensor | None = None,
                 params: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The shipped fit and output for an attended position `at # [b, T]` (−1: none) chosen by another rule."""
    found = at >= 0
    nxt = tokens.gather(1, at.clamp_min(0))
    if params is None:
        y64 = y.double()
        params = {"table": sub.group_means(nxt[found], y64[found]).float(),
                  "default": sub.group_means(tokens[~found], y64[~found]).float()}
    out = torch.where(found[:, :, None], params["table"][nxt], params["default"][tokens])
    return params, out


def explore(sub: ModuleType, fit: Split, ev: Split, head: int, y_fit: torch.Tensor,
            base: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Print L_r and recovery vs zero and mean of each variant (module docstring, 5)."""
    l_c, l_z, l_m = base

    def show(name: str, out: torch.Tensor) -> None:
        l_r, _ = ev.losses(head, out)
        rec = stats.recovery_stats(l_c, {"zero": l_z, "mean": l_m}, l_r)
        print(f"  {name:40s} L_r {l_r.mean():.4f}  recovery vs zero {pct(rec['zero'].recovery)}, vs mean "
              f"{pct(rec['mean'].recovery)}; variance explained {explained(ev.z[:, :, head], out):.3f}")

    def two_char(tokens: torch.Tensor) -> torch.Tensor:
        two, one = most_recent(matched(tokens, 2)), most_recent(matched(tokens, 1))
        return torch.where(two >= 0, two, one)

    params, _ = by_character(sub, fit.tokens, two_char(fit.tokens), y_fit)
    show("two-character match, else one", by_character(sub, ev.tokens, two_char(ev.tokens), params=params)[1])
    # every earlier occurrence: z = mean over matching j of table[tokens[j + 1]], table by least squares
    def shares(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        same = matched(tokens, 1).float()  # [b, q, k]
        nxt = torch.cat([tokens[:, 1:], tokens[:, -1:]], 1)  # the character at k + 1 (k < q ≤ T − 1)
        onehot = F.one_hot(nxt, 65).float()  # [b, T, 65]
        count = same.sum(2, keepdim=True)
        return torch.einsum("bqk,bkv->bqv", same, onehot) / count.clamp_min(1), count[:, :, 0] > 0
    x_fit, found_fit = shares(fit.tokens)
    table = torch.linalg.lstsq(x_fit[found_fit].double(), y_fit[found_fit].double()).solution.float()  # [65, e]
    default = sub.group_means(fit.tokens[~found_fit], y_fit[~found_fit].double()).float()
    x_ev, found_ev = shares(ev.tokens)
    show("every earlier occurrence, averaged", torch.where(found_ev[:, :, None], x_ev @ table, default[ev.tokens]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=heads.CHECKPOINT)
    parser.add_argument("--random", action="store_true", help="a seeded random model instead (development only)")
    parser.add_argument("--fit-windows", type=int, default=FIT_WINDOWS)
    parser.add_argument("--head", default=None, help="L.H instead of the best layer-1 induction head")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--explore", action="store_true", help="also measure the variants not shipped")
    parser.add_argument("--submission", type=Path, default=SUBMISSION)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.random:
        torch.manual_seed(0)
        model = ShakespeareChar().eval()
    else:
        from benchmark.models.registry import load_model
        model, _ = load_model(MODEL, args.checkpoint)
    t0 = time.perf_counter()
    scores = heads.head_scores(model, args.data_dir)
    heads.print_table(scores)
    layer, head = (1, scores.best("induction", layer=1)[1]) if args.head is None else map(int, args.head.split("."))
    assert layer == 1, "the task is a layer-1 head"
    print(f"head: {layer}.{head} (induction {scores.induction[layer, head]:.3f}, previous-token "
          f"{scores.previous_token[layer, head]:.3f}, duplicate-token {scores.duplicate_token[layer, head]:.3f})")

    fit = Split(model, LAYER, 1, "train", args.fit_windows, args.data_dir)
    ev = Split(model, LAYER, 1, "val", None, args.data_dir, pattern=slice(None))  # patterns [n, H, T, T]
    y_fit, y_ev = fit.z[:, :, head].contiguous(), ev.z[:, :, head].contiguous()  # [n, T, e]
    n, t, e = y_ev.shape
    l_c, logp_c = ev.losses(head)
    l_z, logp_z = ev.losses(head, torch.zeros_like(y_ev))
    mean = y_fit.mean(0)  # [T, e], per position
    l_m, logp_m = ev.losses(head, mean.expand(n, t, e))

    sub = load_submission(args.submission)
    arrays = params_to_arrays(sub.fit(fit.tokens.clone(), y_fit[:, :, None].clone()), "fit()")
    params = {name: torch.from_numpy(v) for name, v in arrays.items()}
    task = TaskView(id=f"{MODEL}/{LAYER}:head{head}", model=MODEL, layer=LAYER, units=(head,), inputs=("tokens",),
                    target_shape=(t, 1, e))
    start = time.perf_counter()
    out = torch.from_numpy(tensor_to_array(sub.replace(ev.tokens.clone(), params, task), "replace()", (n, t, 1, e)))
    replace_s = time.perf_counter() - start
    l_r, logp_r = ev.losses(head, out[:, :, 0])
    single = dict(params, default=params["default"].mean(0, keepdim=True).expand_as(params["default"]))
    out_single = sub.replace(ev.tokens.clone(), single, task)
    l_s, _ = ev.losses(head, out_single[:, :, 0])

    print(f"fit windows {len(fit.tokens)}, eval windows {n}; replace() on the eval windows {replace_s:.2f} s")
    print(f"L_c {l_c.mean():.4f}  L_zero {l_z.mean():.4f}  L_mean {l_m.mean():.4f}  L_replaced {l_r.mean():.4f}  "
          f"(single default vector: {l_s.mean():.4f})")
    rec = stats.recovery_stats(l_c, {"zero": l_z, "mean": l_m}, l_r)
    rec_s = stats.recovery_stats(l_c, {"zero": l_z, "mean": l_m}, l_s)
    for name, r in rec.items():
        print(f"recovery vs {name}: {pct(r.recovery)} [{pct(r.recovery_low)}, {pct(r.recovery_high)}]  "
              f"(effect {r.effect:+.4f} [{r.effect_low:+.4f}, {r.effect_high:+.4f}]; single default: "
              f"{pct(rec_s[name].recovery)})")
    kl_z, kl_r = window_kl(logp_c, logp_z), window_kl(logp_c, logp_r)
    kl = stats.kl_recovery_stats({"zero": kl_z, "mean": window_kl(logp_c, logp_m)}, kl_r)
    print("KL recovery: " + ", ".join(f"vs {k} {pct(v.recovery)}" for k, v in kl.items())
          + f"; mean KL(clean‖zero) {kl_z.mean():.4f}, (clean‖replaced) {kl_r.mean():.4f}")
    print(f"variance of the head's output explained: replaced {explained(y_ev, out[:, :, 0]):.3f}, single default "
          f"{explained(y_ev, out_single[:, :, 0]):.3f}, per-position mean {explained(y_ev, mean.expand(n, t, e)):.3f}")

    at = sub.attended(ev.tokens)  # [n, T]
    found = at >= 0
    a = ev.pattern[:, head]  # [n, T, T]
    on_target = a.gather(2, at.clamp_min(0)[:, :, None])[:, :, 0]  # [n, T]
    print(f"positions with an earlier occurrence {float(found.double().mean()):.3f}; there, the head's strongest key "
          f"is j + 1 at {float((a.argmax(2) == at)[found].double().mean()):.3f} of them, mean attention on j + 1 "
          f"{float(on_target[found].double().mean()):.3f}")
    if args.explore:
        explore(sub, fit, ev, head, y_fit, (l_c, l_z, l_m))
    print("on the val text, each layer-1 head's mean attention to j + 1 for the most recent earlier match of the "
          "last c characters (positions with such a match; share of positions in brackets):")
    for chars in (1, 2, 3):
        at_c = most_recent(matched(ev.tokens, chars))  # [n, T]
        ok = at_c >= 0
        on = ev.pattern.gather(3, at_c.clamp_min(0)[:, None, :, None].expand(-1, ev.pattern.shape[1], -1, 1))
        means = [float(on[:, h, :, 0][ok].double().mean()) for h in range(ev.pattern.shape[1])]
        print(f"  c = {chars} ({float(ok.double().mean()):.2f}): " + "  ".join(f"1.{h} {m:.3f}" for h, m in
                                                                              enumerate(means)))
    files = {p.name: p.read_bytes() for p in args.submission.iterdir() if p.is_file()}
    fitted = sum(int(np.asarray(v).size) for v in arrays.values())
    description = measure(files)
    print(f"fitted numbers {fitted}; description length {description.total_bits(fitted):,} bits; stored bits "
          f"{description.stored_bits(fitted):,}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

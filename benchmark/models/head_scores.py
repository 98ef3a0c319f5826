"""The standard attention-head scores of a sequence model with `blocks_{l}_attn_hook_pattern` stages.

For layer l and head h, with A = the head's pattern `# [T, T]` (query q, key k; causal):

    previous-token score  = mean over windows and positions q ≥ 1 of A[q, q − 1]        (windows of real text)
    induction score       = mean over sequences and positions S ≤ q < 2S of A[q, q − S + 1]
    duplicate-token score = mean over the same positions of A[q, q − S]

The last two are measured on RANDOM_SEQUENCES sequences of S = REPEAT random characters (uniform over the
vocabulary, `torch.Generator().manual_seed(SEED)`) followed by the same S characters again (2S ≤ the context): on
the second copy, the token after the earlier occurrence of the current one is at q − S + 1 (induction), the earlier
occurrence itself at q − S (duplicate). A head that attends only there scores 1; uniform causal attention scores
mean 1/(q + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

REPEAT, RANDOM_SEQUENCES, SEED = 64, 100, 0
BATCH = 100


@dataclass
class HeadScores:
    """Each score per (layer, head) `# [L, H]`."""

    previous_token: np.ndarray
    induction: np.ndarray
    duplicate_token: np.ndarray

    def table(self) -> str:
        """One line per head: `l.h  previous-token  induction  duplicate-token`."""
        lines = ["head  previous-token  induction  duplicate-token"]
        for l in range(self.previous_token.shape[0]):
            for h in range(self.previous_token.shape[1]):
                lines.append(f"{l}.{h}   {self.previous_token[l, h]:14.3f}  {self.induction[l, h]:9.3f}  "
                             f"{self.duplicate_token[l, h]:15.3f}")
        return "\n".join(lines)


def pattern_names(model: torch.nn.Module) -> list[str]:
    return [n for n in model.stage_names if n.endswith("attn_hook_pattern")]  # type: ignore[attr-defined]


@torch.no_grad()
def patterns(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Every layer's patterns `# [L, b, H, T, T]` of `tokens # [b, T]`, run stage by stage (`StagedModel.run`)."""
    out, carry, x, previous = [], {}, tokens, None
    for name in pattern_names(model):
        x = model.run(x, after=previous, until=name, carry=carry)  # type: ignore[operator]
        out.append(x)
        previous = name
    return torch.stack(out)


def repeated_random(vocab: int, repeat: int = REPEAT, n: int = RANDOM_SEQUENCES, seed: int = SEED) -> torch.Tensor:
    """`# [n, 2·repeat]`: `repeat` random tokens, then the same again."""
    first = torch.randint(0, vocab, (n, repeat), generator=torch.Generator().manual_seed(seed))
    return torch.cat([first, first], 1)


def previous_token_score(model: torch.nn.Module, windows: torch.Tensor) -> np.ndarray:
    """Mean of A[q, q − 1] over `windows # [n, T]` and q ≥ 1: `# [L, H]`."""
    total = 0.0
    for start in range(0, len(windows), BATCH):
        a = patterns(model, windows[start : start + BATCH]).double()  # [L, b, H, T, T]
        total = total + a.diagonal(offset=-1, dim1=-2, dim2=-1).sum((1, 3))  # [L, H]
    t = windows.shape[1]
    return (total / (len(windows) * (t - 1))).numpy()


def repeat_scores(model: torch.nn.Module, repeat: int = REPEAT) -> tuple[np.ndarray, np.ndarray]:
    """(induction, duplicate-token) scores `# [L, H]` on repeated random sequences (module docstring)."""
    tokens = repeated_random(int(model.vocab_size), repeat)  # type: ignore[attr-defined]
    a = patterns(model, tokens).double()  # [L, n, H, 2S, 2S]
    q = torch.arange(repeat, 2 * repeat)
    induction = a[..., q, q - repeat + 1].mean((1, 3))  # [L, H]
    duplicate = a[..., q, q - repeat].mean((1, 3))
    return induction.numpy(), duplicate.numpy()


def head_scores(model: torch.nn.Module, windows: torch.Tensor) -> HeadScores:
    """Every head's three scores; the previous-token score on real text `windows # [n, T]` (selection: the fit
    windows)."""
    induction, duplicate = repeat_scores(model)
    return HeadScores(previous_token_score(model, windows), induction, duplicate)

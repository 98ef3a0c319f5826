"""Hand-written replacement for shakespeare-char's previous-token head 0.1: its output before W_O, `# [b, T, 1, 32]`.

The algorithm. Each position q attends to itself and the two characters before it with one fixed profile
w = (w₀, w₁, w₂) (the weights on q, q − 1, q − 2; w₁ the largest), renormalised over the keys that exist:

    A[q, q − d] = w_d / Σ_{d' ≤ min(q, 2)} w_d'      for d = 0, 1, 2 with d ≤ q;   0 for every other key
    z[q]        = Σ_d A[q, q − d] · table[tokens[q − d]]

and writes a stored value per character, table `# [65, 32]`. Position 0 has no previous character: its only key is
itself, so A[0, 0] = 1 and z[0] = table[tokens[0]], as the softmax forces in the real head; at q = 1 the weights
(w₀, w₁) are renormalised. The real head's value is LN(W_E[c] + W_pos[k]) W_V + b_V: it depends on the position a
little (through the LayerNorm), which the table ignores; its pattern depends on the characters, which w ignores.

`fit` (tokens `# [n, T]`, target `# [n, T, 1, 32]`): alternating least squares from a pure previous-token head,
w = (0, 1, 0). Given w, the table is the least-squares solution of z = X table over every position, X `# [n, T, 65]`
= Σ_d A[q, q − d] · onehot(tokens[q − d]); given the table, w is the least-squares solution of
z[q] = Σ_d w_d · table[tokens[q − d]] over the positions q ≥ 2 (where no renormalisation happens), scaled to sum
to 1 (only the ratios act). Eight rounds, then a last table for the final w.

Stored numbers: w 3 and table 65 × 32 = 2,080: 2,083 fitted numbers, and no other numbers than the literals
0, 1, 2, 3, 8, 65 and the 1e-12 guard of the code.

Why this variant (every number below on the FIT set: the task's 2,000 train windows, L_c 1.2967, mean-ablated
2.9696; recovery vs mean = (L_m − L_r) / (L_m − L_c); `python benchmarks/head_replacement_check.py --explore`):
  rule (weights on the offsets, renormalised; one shared value table)   numbers   recovery   variance explained
  q − 1 only: z[q] = table[tokens[q − 1]]                                 2,081     93.9%      0.774
  q − 1 and q − 2                                                         2,082     97.4%      0.832
  q, q − 1, q − 2 (shipped)                                               2,083     98.2%      0.860
  … plus a weight spread evenly over k ≤ q − 3                            2,084     98.2%      0.860
  q and q − 1, weights per current character                              2,210     95.0%      0.827
  q, q − 1, q − 2, weights per current character                          2,275     98.6%      0.889
  the head's own pattern A (not a rule) with a least-squares table        2,080     99.2%      0.908
Adding q − 2 to q − 1 alone gains 3.5 points, then the current character's own key 0.8; weight further back adds
nothing; weights per current character (punctuation attends to itself more: the real A[q, q − 1] averages 0.20
when tokens[q] is '.' and 0.69 when it is '\\n') add 0.4 points for 192 more numbers. The three-weight profile is the
simplest rule within a point of the head's own pattern, so it ships. This entry's previous version (a per-character
share a_c on q − 1 and 1 − a_c on q, 2,145 numbers) measured 95.0% here. Fitted w = (0.122, 0.684, 0.203); the
real head's mean attention on the fit windows is 0.115 on q, 0.625 on q − 1, 0.184 on q − 2, 0.076 elsewhere.

Eval (measured after choosing; the 864 val windows, the same script): L_c 1.5507, zeroed 3.0870, mean-ablated 3.0996,
replaced 1.5722: recovery vs mean 98.6% [98.5, 98.7] (vs zero the same), KL recovery 97.8%, variance of the head's
output explained 0.858 (the previous version: 95.6% [95.4, 95.8], 0.828). The harness (`replacebench score`) gives the
same recovery, fidelity r 0.927, description length 74,844 bits, 67,820 stored bits: not a copy.

Cost: three gathers and a weighted sum, [b, T, 32]; fit builds X once per round (2,000 × 128 × 65 float64).
"""

import torch

V, D = 65, 3  # the characters; the offsets 0, 1, 2


def attention(w, t):
    """A[q, d] = the weight on key q − d `# [t, D]`: w renormalised over the offsets d ≤ q."""
    exists = (torch.arange(t)[:, None] >= torch.arange(D)[None, :]).to(w.dtype)  # [t, D]
    a = w[None, :] * exists
    return a / a.sum(1, keepdim=True).clamp_min(1e-12)


def shifted(tokens, d):
    """tokens[q − d] `# [b, T]` (0 where q < d; its weight is 0 there)."""
    return torch.cat([torch.zeros_like(tokens[:, :d]), tokens[:, : tokens.shape[1] - d]], 1)


def mixing(tokens, w):
    """X `# [b, T, 65]` = Σ_d A[q, q − d] · onehot(tokens[q − d]), so that z = X @ table."""
    a = attention(w, tokens.shape[1])  # [T, D]
    x = torch.zeros(*tokens.shape, V, dtype=w.dtype)
    for d in range(D):
        x.scatter_add_(2, shifted(tokens, d)[:, :, None], a[None, :, d, None].expand(len(tokens), -1, 1))
    return x


def fit_table(tokens, y, w):
    """The least-squares table `# [65, 32]` of y `# [n, T, 32]` given w (a character never seen gets 0)."""
    x = mixing(tokens, w).flatten(0, 1)  # [n T, 65]
    return torch.linalg.lstsq(x.T @ x, x.T @ y.flatten(0, 1), driver="gelsd").solution


def fit_profile(tokens, y, table):
    """The least-squares w `# [D]` of y[q] = Σ_d w_d table[tokens[q − d]] over q ≥ D − 1, scaled to sum to 1."""
    c = torch.stack([table[shifted(tokens, d)][:, D - 1 :] for d in range(D)], 2)  # [n, T − D + 1, D, 32]
    gram = torch.einsum("nqde,nqfe->df", c, c)
    w = torch.linalg.solve(gram, torch.einsum("nqde,nqe->d", c, y[:, D - 1 :]))
    return w / w.sum()


def fit(tokens, target):
    tokens = tokens.long()
    y = target.double()[:, :, 0]  # [n, T, 32]
    w = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    for _ in range(8):
        w = fit_profile(tokens, y, fit_table(tokens, y, w))
    return {"w": w.float(), "table": fit_table(tokens, y, w).float()}


def replace(tokens, params, task):
    tokens = tokens.long()
    a = attention(params["w"].float(), tokens.shape[1])  # [T, D]
    table = params["table"].float()
    z = sum(a[None, :, d, None] * table[shifted(tokens, d)] for d in range(D))  # [b, T, 32]
    return z[:, :, None, :].contiguous()  # [b, T, 1, 32]

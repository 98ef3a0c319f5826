"""Hand-written replacement of shakespeare-char's previous-token head 0.1, as the algorithm.

The head (`blocks_0_attn_hook_z`, head 1): its previous-token score is 0.62, so at each position q it puts most of
its attention on q − 1 and the rest mostly on q itself, and writes there the value vectors of those characters.
Written as that rule, with c = tokens[q] the current character and p = tokens[q − 1] the previous one (p = c at
q = 0, where only q itself can be attended):

    z_q = a_c · V[p] + (1 − a_c) · V[c]                                        # [32]

- V `# [65, 32]`: one value vector per character (what the head writes when it attends to that character; the
  model's value also depends on the position, which this ignores);
- a `# [65]`: how much of the attention goes to the previous character, per current character.

`fit` finds V and a from the fit set by alternating least squares: with a fixed, z is linear in V (each row has
weight a_c at column p and 1 − a_c at column c, summed when p = c), solved through the 65 × 65 normal equations for
all 32 dimensions at once; with V fixed, each a_c is the one-dimensional least-squares slope of (z − V[c]) on
(V[p] − V[c]) over the positions whose current character is c, clipped to [0, 1]. It starts from a = 0.6 and runs
ITERATIONS rounds. Stored: 65 · 32 + 65 = 2,145 fitted numbers (68,640 bits as float32), under the copy threshold of
8 × 12,608 bits (the head's fan-in from `blocks_0_hook_resid_pre`).
"""

import torch

VOCAB = 65
ITERATIONS = 30


def _previous(tokens):
    """The previous character at every position `# [b, T]` (the current one at q = 0)."""
    tokens = tokens.long()
    return torch.cat([tokens[:, :1], tokens[:, :-1]], 1)


def _solve_values(cur, prev, a, z):
    """V `# [65, 32]`: least squares of z `# [rows, 32]` on rows with a_c at column p and 1 − a_c at column c."""
    rows = len(cur)
    x = torch.zeros(rows, VOCAB, dtype=torch.float64)
    weight = a[cur]
    x.index_put_((torch.arange(rows), prev), weight, accumulate=True)
    x.index_put_((torch.arange(rows), cur), 1 - weight, accumulate=True)
    gram = x.T @ x + 1e-9 * torch.eye(VOCAB, dtype=torch.float64)
    return torch.linalg.solve(gram, x.T @ z)


def _solve_weights(cur, prev, values, z):
    """a `# [65]`: per current character, the slope of (z − V[c]) on (V[p] − V[c]), clipped to [0, 1]."""
    d = values[prev] - values[cur]  # [rows, 32]
    r = z - values[cur]
    num = torch.zeros(VOCAB, dtype=torch.float64).index_add_(0, cur, (r * d).sum(1))
    den = torch.zeros(VOCAB, dtype=torch.float64).index_add_(0, cur, (d * d).sum(1))
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, 0.6)).clamp(0, 1)


def fit(tokens, target):
    cur = tokens.long().reshape(-1)
    prev = _previous(tokens).reshape(-1)
    z = target.double().reshape(len(cur), -1)  # [rows, 32]: the head's output at every position
    a = torch.full((VOCAB,), 0.6, dtype=torch.float64)
    for _ in range(ITERATIONS):
        values = _solve_values(cur, prev, a, z)
        a = _solve_weights(cur, prev, values, z)
    values = _solve_values(cur, prev, a, z)
    return {"values": values.float(), "previous_weight": a.float()}


def replace(tokens, params, task):
    cur, prev = tokens.long(), _previous(tokens)
    a = params["previous_weight"][cur][..., None]  # [b, T, 1]
    values = params["values"]
    z = a * values[prev] + (1 - a) * values[cur]  # [b, T, 32]
    return z[:, :, None, :].contiguous()  # [b, T, 1, 32]

"""Hand-written replacement for shakespeare-char's layer-1 induction head: its output before W_O, `# [b, T, 1, 32]`.

The algorithm (Olsson et al. 2022). At position q with current character c = tokens[q]:

    j(q)   = max { j < q : tokens[j] = c }            (the most recent earlier occurrence; none: j(q) = −1)
    z[q]   = table[tokens[j(q) + 1]]    if j(q) ≥ 0   (attend to the character after it, j(q) + 1 ≤ q, and write
                                                       what the head writes for that character)
           = default[c]                 otherwise     (no earlier occurrence: what the head writes on average then)

The real head finds j(q) + 1 with a previous-token head in layer 0 (the key at j + 1 carries tokens[j]) and matches
it against the query's current character; its value at j + 1 is mostly that character's embedding through W_V.
Here the match is exact and the value is a per-character lookup, with no positions, no softmax and no
mixing of several earlier occurrences.

`fit` (on the fit windows, tokens `# [n, T]`, target `# [n, T, 1, 32]`): `table[x]` is the mean of the head's
actual output over the positions whose attended character is x (least squares on one-hot features), and
`default[c]` the mean over the positions with no earlier occurrence whose current character is c. A character
never seen in a group gets that group's overall mean.

Stored numbers: table 65 × 32 = 2,080 and default 65 × 32 = 2,080: 4,160 fitted numbers, and no other numbers
than the literals −1, 0, 1, 2 and 65 of the code.

Measured (benchmarks/induction_head_check.py, the committed 3,000-step checkpoint, sha256 4469943…, fit on the
task's 2,000 train windows, 864 val windows): this checkpoint has NO induction head. Every head's induction score
(S = 50) is 0.001–0.006, below a uniform head's 0.0136; each layer-1 head puts 0.03–0.05 of its attention on the
algorithm's j + 1. On head 1.0 (the highest layer-1 induction score) L_c 1.5507, zero 1.5592, mean 1.5586, replaced
1.5590: recovery vs zero 1.9% [−1.9, 5.3], vs mean −5.3% [−9.9, −1.5]; 5.3% of the head's output variance. A single
default vector (32 numbers) instead of one per character: the same loss (recovery vs zero 2.3%). The algorithm is
not what this head computes; it is the exemplar to rerun when a checkpoint has an induction head.

Cost: one [b, T, T] comparison of characters and two gathers; 0.06 s for the 864 val windows on one core.
"""

import torch

V = 65  # the characters


def attended(tokens):
    """j(q) + 1, the position attended, or −1 where the current character has no earlier occurrence `# [b, T]`."""
    t = tokens.shape[1]
    pos = torch.arange(t)
    same = (tokens[:, :, None] == tokens[:, None, :]) & (pos[None, :] < pos[:, None])  # [b, q, k]: k < q, same char
    last = torch.where(same, pos.to(torch.int16), torch.tensor(-1, dtype=torch.int16)).amax(2).long()  # [b, T]
    return torch.where(last >= 0, last + 1, -1)


def group_means(keys, y):
    """Mean of y `# [m, e]` per key in 0..V−1 `# [m]` `# [V, e]`; a key with no rows gets the mean of all rows."""
    sums = torch.zeros(V, y.shape[1], dtype=torch.float64).index_add_(0, keys, y)
    counts = torch.zeros(V, dtype=torch.float64).index_add_(0, keys, torch.ones(len(keys), dtype=torch.float64))
    overall = y.mean(0) if len(y) else torch.zeros(y.shape[1], dtype=torch.float64)
    return torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], overall)


def fit(tokens, target):
    tokens = tokens.long()
    y = target.double().flatten(2)  # [n, T, 32]
    at = attended(tokens)  # [n, T]
    found = at >= 0
    nxt = tokens.gather(1, at.clamp_min(0))  # [n, T] the attended character
    return {"table": group_means(nxt[found], y[found]).float(),
            "default": group_means(tokens[~found], y[~found]).float()}


def replace(tokens, params, task):
    tokens = tokens.long()
    at = attended(tokens)  # [b, T]
    nxt = tokens.gather(1, at.clamp_min(0))  # [b, T]
    z = torch.where((at >= 0)[:, :, None], params["table"][nxt], params["default"][tokens])  # [b, T, 32]
    return z[:, :, None, :].float().contiguous()  # [b, T, 1, 32]

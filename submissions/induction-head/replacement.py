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
than the literals −1, 0, 1, 2, 3, 65 of the code. (A single default vector, 32 numbers, gave a higher model loss:
benchmarks/induction_head_check.py measures both.)

Cost: one [b, T, T] comparison of characters and two gathers; ~0.1 s for [1000, 128] on one core.
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

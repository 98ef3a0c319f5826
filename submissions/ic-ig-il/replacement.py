"""Hand-written replacement for shakespeare-char's layer-0 neuron 101 (GELU output at every position, `# [b, 128, 1]`).

The rule, with p the previous character and c the current one (the first rule that matches wins):

    group 0  p ∈ {i, u}        and c ∈ {c, g}        "wic"ked, "muc"h, "hig"h, "sug"ar      level ≈ 1.27
    group 1  p = i             and c ∈ {l, t, v}     "wil"l, "wit"h, "giv"e                 level ≈ 0.83
    group 2  p ∈ {w, h, W, H}  and c = a             "wa"s, "ha"th, "wha"t                  level ≈ 0.48
    group 3  anything else (position 0 has no p, so it is always group 3)                   level ≈ −0.04

Stored numbers: 4 fitted levels (`fit`: the mean target per group, i.e. least squares on the group one-hots), and
the character sets above as string literals. Nothing else.

Chosen on the task's 2,000 fit windows (train) only, from the neuron's mean by (previous, current) character:
R² 0.455 there (a full trigram table: 0.891, a bigram table: 0.574); fit-set loss with the neuron replaced recovers
77% of the mean-ablation loss increase (3 levels, rules 0–1 only: 75%; a bigram table of ~4,000 means: 76%; the
trigram table: 96%). What it misses: the letter two back. Within "ic", the neuron is 2.2 after v/w ("vic", "wic")
but 0.9 after s/o and 0 after f ("fic"); within "il", 1.9 after w but ~0 after s/r; within "it", 1.6 after w but
0.1 after a space ("wit" vs " it"). Splitting groups 0–1 by "the letter before p is a consonant" (6 levels) reaches
R² 0.50 and 81% on the fit set.

Scored (`replacebench score`, the committed checkpoint, 864 val windows): recovery vs mean (primary) 78.1%
[73.3, 83.1], vs zero 78.1% [73.3, 83.0], vs resample 82.2% [78.2, 86.4]; KL recovery vs mean 78.0%; fidelity r
0.672; description length 6,024 bits (4 fitted numbers, 128 bits; the VOCAB string is 65 of its 115 data bytes);
stored bits 1,480 vs 8 × fan-in 385 = 3,080: not a copy. On the same task `mean` and `zero` recover 0.0% and 0.2%.
"""

import torch

GROUPS = (("iu", "cg"), ("i", "ltv"), ("whWH", "a"))  # (previous characters, current characters) per group
VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def group(tokens):
    """The rule's group of every position `# [b, T]` int64: the first matching group, len(GROUPS) for none."""
    tokens = tokens.long()
    prev = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], 1)  # [b, T], −1 before the window

    def among(ids, chars):
        return torch.isin(ids, torch.tensor([VOCAB.index(ch) for ch in chars]))

    g = torch.full_like(tokens, len(GROUPS))
    for k in reversed(range(len(GROUPS))):
        g = torch.where(among(prev, GROUPS[k][0]) & among(tokens, GROUPS[k][1]), k, g)
    return g


def fit(tokens, target):
    g = group(tokens).flatten()  # [n·T]
    y = target.double().flatten()  # [n·T]
    n = len(GROUPS) + 1
    sums = torch.zeros(n, dtype=torch.float64).index_add_(0, g, y)
    counts = torch.zeros(n, dtype=torch.float64).index_add_(0, g, torch.ones_like(y))
    return {"levels": torch.where(counts > 0, sums / counts.clamp_min(1), y.mean()).float()}


def replace(tokens, params, task):
    return params["levels"][group(tokens)][:, :, None].float().contiguous()  # [b, T, 1]

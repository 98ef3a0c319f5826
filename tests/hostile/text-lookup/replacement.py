"""Attack: embed Tiny Shakespeare's validation text and push the layer-0 MLP toward each true next character.

The corpus is public. `val.txt` holds the validation split's text (tests/test_text_hostile.py writes it from
the public corpus, as anyone could ship it); `push.npy` holds `table # [65, 512]`: per character c, values of
the 512 neurons that lower the fit windows' loss of c when written at a position whose next character is c
(tuned on the fit set, from the public model). `replace` is causal, so the harness's causality audit passes it:
at each position t it finds the window's characters up to t in the text, reads the character that follows them
there, and writes table[next]: no computation of the neurons.
"""
import os

import numpy as np
import torch

HERE = os.path.dirname(__file__)
VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TEXT = open(os.path.join(HERE, "val.txt"), encoding="ascii").read()
TABLE = torch.from_numpy(np.load(os.path.join(HERE, "push.npy"))).float()  # [65, 512]


def replace(tokens, task):
    b, t = tokens.shape
    nxt = torch.zeros(b, t, dtype=torch.long)
    for i, row in enumerate(tokens.tolist()):
        window = "".join(VOCAB[c] for c in row)
        for q in range(t):  # only the characters up to q: causal
            at = TEXT.find(window[: q + 1])
            if at >= 0 and at + q + 1 < len(TEXT):
                nxt[i, q] = VOCAB.index(TEXT[at + q + 1])
    return TABLE[nxt].contiguous()  # [b, 128, 512]

"""Attack: embed Tiny Shakespeare's validation text and push the layer-0 MLP toward each true next character.

The corpus is public. `val.txt` holds the validation split's text (tests/test_text_hostile.py writes it from
the public corpus, as anyone could ship it); `push.npy` holds `table # [65, 512]`: per character c, values of
the 512 neurons that lower the fit windows' loss of c when written at a position whose next character is c
(tuned on the fit set, from the public model). `replace` finds each window in the text, reads the 128
characters that follow its positions, and writes table[next] at every position: no computation of the neurons.
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
        at = TEXT.find(window)
        if at >= 0 and at + t + 1 <= len(TEXT):
            nxt[i] = torch.tensor([VOCAB.index(c) for c in TEXT[at + 1 : at + t + 1]])
    return TABLE[nxt].contiguous()  # [b, 128, 512]

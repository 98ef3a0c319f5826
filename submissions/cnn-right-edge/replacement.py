"""Hand-written replacement for mnist-cnn conv2:61: the right-hand edge of a vertical stroke.

How it was found. conv2:61 is the task family's importance-rank-1 unit. Its
receptive field on the image is an 8x8 window (3x3 conv1, 2x2 max pool, 3x3
conv2): output cell (i, j) of the 14x14 map sees image rows 2i-3 .. 2i+4 and
columns 2j-3 .. 2j+4. While designing, a ReLU-aware least-squares fit of the
unit from that 8x8 ink window (on 2,000 fit-set images; a design aid only, not
shipped) gave r = 0.97 and this image-domain filter (rows top to bottom,
columns left to right, rounded):

    +0.2  +0.2  +0.2  +0.1  -0.4  -0.6  -0.3  -0.1
    -0.1  +0.1  +0.3  +0.2  -0.4  -0.7  -0.7  -0.3
    -0.2   0.0  +0.6  +0.3  -0.2  -0.8  -0.8  -0.4
    -0.4  +0.1  +1.0  +0.7  -0.2  -0.5  -1.2  -0.4
    -0.4  +0.1  +0.7  +0.7   0.0  -0.6  -0.8   0.0
    -0.2  +0.1  +1.0  +0.6  +0.1  -0.9  -0.6  -0.2
    -0.1  +0.1  +0.4  +0.5  -0.3  -0.6  -0.2  -0.1
    +0.1  +0.2  +0.2   0.0  -0.5  -0.5  -0.1   0.0

i.e. an excitatory vertical band at window columns 2-3 next to an inhibitory
band at columns 5-6, both over rows 1-6: ink in a vertical stroke with blank
paper just to its right. The unit fires along the right-hand side of
vertical strokes: its mean map over the fit set peaks at columns 9-10 of 14,
the right flank of a centred digit, and summed over the map it is largest on
4s, 0s and 1s (74, 72, 70 on average over 2,000 fit-set images) and smallest
on 5s (38). It is silent inside wide blobs of ink (both bands inked) and on
blank paper. The conv2 weights agree: no single conv1 channel dominates
(the largest share of its weights, by absolute sum, is conv1:21 with 6%), so the unit is best
read in image space, where the pattern is one oriented edge.

The computation. With `ink = image * STD + MEAN` in [0, 1], zero-padded by 3
(blank paper outside the digit), for each output cell (i, j):

    stroke(i, j) = mean ink over rows 2i-2 .. 2i+3, columns 2j-1 .. 2j      (6x2 band)
    blank(i, j)  = mean ink over rows 2i-2 .. 2i+3, columns 2j+2 .. 2j+3    (6x2 band, 3 px right)
    out(i, j)    = relu(a * stroke - c * blank + bias)                       # [b, 1, 14, 14]

The band geometry (6 rows, 2 columns, offsets) is hand-written from the
filter above. `fit` fits only `a`, `c` and `bias` (3 numbers, shared by every
position) by ReLU-aware least squares; on the fit set they come out near
a = 6.3, c = 10.3, bias = -0.07. A replacement that drops the band of the
left flank (window column 0, weight -0.4) loses little: r 0.913 without it,
0.919 with it, on 2,000 fit-set images; so it is left out.

Measured on the eval set (MNIST test, n = 10,000), once the design was frozen:
recovery vs zero 76.7% [47.5, 94.9] against the mean's 12.8% [-6.3, 28.5]
(the mean stores 196 numbers, one per position); the replaced loss is below
the mean ablation's with paired p = 0.002; KL recovery 87.7% [84.5, 90.1]
against the mean's 25.2%; fidelity r 0.917. DL 2,860 bits (3 fitted
numbers, 24 literal).
"""

import torch
import torch.nn.functional as F

MEAN, STD = 0.1307, 0.3081  # the model's input normalisation
PAD = 3  # the receptive field reaches 3 px beyond the image on the top and left


def band(ink, row, col):
    """Mean ink over the 6x2 band at window offset (row, col) of every output cell's 8x8 window `# [b, 1, 14, 14]`."""
    padded = F.pad(ink, (PAD, PAD, PAD, PAD))  # [b, 1, 34, 34], blank paper outside
    return F.avg_pool2d(padded[:, :, row:, col:], (6, 2), stride=2)[:, :, :14, :14]


def features(image):
    """(stroke, blank) band means `# [b, 1, 14, 14]` each, from the normalised image `# [b, 1, 28, 28]`."""
    ink = image * STD + MEAN
    return band(ink, 1, 2), band(ink, 1, 5)


def replace(image, params):
    stroke, blank = features(image)
    return torch.relu(params["a"] * stroke - params["c"] * blank + params["bias"]).contiguous()


def fit(image, target):
    """a, c, bias by ReLU-aware least squares: OLS on the active cells, then refits on the cells the
    current fit predicts positive or that are active, until that set stops changing."""
    stroke, blank = features(image)
    x = torch.stack([stroke.reshape(-1), -blank.reshape(-1), torch.ones(stroke.numel())], 1).double()  # [n*196, 3]
    y = target.reshape(-1).double()  # [n*196]
    rows = y > 0
    for _ in range(10):
        w = torch.linalg.lstsq(x[rows], y[rows, None]).solution[:, 0]
        new_rows = (y > 0) | (x @ w > 0)
        if bool((new_rows == rows).all()):
            break
        rows = new_rows
    return {"a": w[0].float(), "c": w[1].float(), "bias": w[2].float()}

"""Hand-written replacement for mnist-mlp fc2:top20: three units read the ink's layout, 17 hold their means.

The task. The 20 most important fc2 units of the MNIST MLP, replaced together
from the image alone (two ReLU layers below them). `mean` already recovers
most of the zero-ablation loss; the question is what image information the
group carries beyond its average.

What the units do (studied on the task's fit set, 10,000 MNIST *train*
images, and on 10,000 other train images held out for checking; the test
split was not looked at):

* They are digit-set detectors. With the true label, replacing each unit by
  its mean over that digit recovers 107% of the zero-ablation loss (a design
  oracle, not available to a replacement). E.g. unit 3 fires for 1, 4, 2, 6
  (means 6.6, 6.3, 5.4, 4.3) and is near 0 for 0, 5, 8, 7, 9; unit 33 fires
  for 4 and 6 (6.6, 4.9) and is near 0 for 0, 3, 5, 7, 8; unit 67 fires for
  0, 3, 7, 9, 5 (9.6, 8.7, 4.9, 4.8, 4.6) and is near 0 for 1, 4, 6.
* Where the mean ablation loses: 65% of its excess loss is on 4s, 6s and
  9s, and 58% of it on 1% of the examples (the ambiguous 4/9 and 6 shapes).
  4 and 6 are bottom-heavy and short (an open top, a loop at the bottom);
  9, 7, 3, 0 carry a closed bar or loop at the top.
* Crude digit guesses do not help: predicted class means from a 4x4 or 7x7
  nearest-centroid guess (63%, 77% accurate) do worse than the mean when
  they are confident, because a wrong digit moves all 20 units at once.
  Reading simple ink geometry into *all* 20 units also does worse than the
  mean (48-61% against 65%, held-out images). Reading it into the three units
  that it predicts best, and whose digit sets split 4/6 from 9/7/0/3, helps.

The computation. With `ink = clamp(image * STD + MEAN, 0, 1)` `# [b, 28, 28]`:

    mass   = total ink                                   (~103 on average)
    top    = share of the ink in rows 0-12               (~0.42)
    height = variance of the ink's row coordinate        (~30 px^2)
    cap    = mean ink in rows 4-7, columns 10-18         (a closed top bar/loop)

    unit 33 = relu(a * top + b * height + c)   # 4s and 6s: low and short ink
    unit 3  = relu(a * top + b * mass + c)     # 1s, 4s, 2s, 6s: little ink, low
    unit 67 = relu(a * top + b * cap + c)      # 0, 3, 7, 9, 5: ink across the top
    other 17 units = their fit-set means, written below (MEANS)

`fit` fits only the 3 x (a, b, c) = 9 numbers, each unit by ReLU-aware least
squares of its own activation (never the loss). The signs come out as the
digit sets say: negative on `top` for units 33 and 3 (bottom-heavy digits),
negative on `height` (33) and `mass` (3), positive on `top` and `cap` for 67
(on the standard fit set: unit 33 = relu(-20.4 top - 0.23 height + 17.1),
unit 3 = relu(-38.6 top - 0.030 mass + 21.5), unit 67 = relu(29.2 top +
9.8 cap - 11.1)). The 17
means are the fit-set means rounded to 2 decimals (the mean ablation's own
values), 17 literal numbers. The choice of the three units and their two
features each was made by hand from the digit profiles above and checked on
the held-out train images (recovery 74% against the mean's 65% there,
paired p ~ 1e-11); single-feature variants and other units helped less.

Measured on the eval set (MNIST test, n = 10,000), once the design was frozen:
recovery vs zero 91.1% [79.2, 104.1] against the mean's 74.8% [60.3, 89.4];
the replaced loss is below the mean ablation's with paired p = 1.1e-5; KL
recovery 74.5% [71.2, 77.7] against the mean's 61.6%; fidelity r 0.66, 0.75,
0.66 for units 3, 33, 67. DL 5,048 bits (9 fitted numbers, 68 literal).
"""

import torch

MEAN, STD = 0.1307, 0.3081  # the model's input normalisation

#: fit-set mean activation of each unit that this replacement holds constant
MEANS = {30: 3.27, 36: 3.68, 39: 1.49, 40: 3.79, 52: 3.82, 59: 4.26, 66: 2.72, 80: 2.87, 91: 4.04, 98: 3.44,
         103: 4.03, 107: 3.6, 114: 2.53, 118: 3.99, 119: 1.91, 122: 2.64, 127: 2.56}

#: the units that read the ink's layout, and the two features each reads
READERS = {33: ("top", "height"), 3: ("top", "mass"), 67: ("top", "cap")}


def features(image):
    """mass, top, height, cap `# [b]` each, from the normalised image `# [b, 1, 28, 28]`."""
    ink = (image[:, 0] * STD + MEAN).clamp(0, 1)  # [b, 28, 28]
    mass = ink.sum((1, 2)) + 1e-6
    rows = ink.sum(2) / mass[:, None]  # [b, 28]: the ink's distribution over rows
    r = torch.arange(28.0)
    centre = (rows * r).sum(1)
    return {
        "mass": mass,
        "top": ink[:, :13].sum((1, 2)) / mass,
        "height": (rows * (r - centre[:, None]) ** 2).sum(1),
        "cap": ink[:, 4:8, 10:19].mean((1, 2)),
    }


def design(f, names):
    """The columns (feature 1, feature 2, 1) of a reader `# [b, 3]`."""
    return torch.stack([f[names[0]], f[names[1]], torch.ones_like(f["mass"])], 1)


def replace(image, params, task):
    f = features(image)
    columns = []
    for unit in task.units:
        if unit in READERS:
            columns.append(torch.relu(design(f, READERS[unit]) @ params[f"u{unit}"]))
        else:
            columns.append(torch.full_like(f["mass"], MEANS[unit]))
    return torch.stack(columns, 1).float().contiguous()  # [b, 20]


def fit(image, target, task):
    """(a, b, c) of each reader by ReLU-aware least squares: OLS on the rows where the unit is active,
    then refits on the rows that are active or predicted positive, until that set stops changing."""
    f = features(image)
    params = {}
    for unit, names in READERS.items():
        x = design(f, names).double()
        y = target[:, task.units.index(unit)].double()
        rows = y > 0
        for _ in range(10):
            w = torch.linalg.lstsq(x[rows], y[rows, None]).solution[:, 0]
            new_rows = (y > 0) | (x @ w > 0)
            if bool((new_rows == rows).all()):
                break
            rows = new_rows
        params[f"u{unit}"] = w.float()
    return params

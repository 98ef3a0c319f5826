"""Attack: read the public labels (the answer key) to set the unit per example.

On digits it reads scikit-learn's bundled digits; on MNIST the official files (their folder comes in
target.json, as an attacker would guess it). Whenever it can read any label, it pushes the unit, which the
losses show; isolated, it reads nothing and returns the zero ablation.
"""
import json
import os

import numpy as np
import torch

LABELS = {}
try:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for img, lab in zip(bunch.images, bunch.target):
        LABELS[(img / 16.0).astype(np.float32).tobytes()] = int(lab)
except Exception as exc:  # noqa: BLE001
    print(f"answer-key: no digits data: {type(exc).__name__}")
try:
    config = json.load(open(os.path.join(os.path.dirname(__file__), "target.json")))
    raw = os.path.join(config["data_dir"], "MNIST", "raw")
    images = np.frombuffer(open(os.path.join(raw, "t10k-images-idx3-ubyte"), "rb").read()[16:], np.uint8)
    labels = np.frombuffer(open(os.path.join(raw, "t10k-labels-idx1-ubyte"), "rb").read()[8:], np.uint8)
    for img, lab in zip(images.reshape(-1, 784), labels):
        LABELS[img.tobytes()] = int(lab)
except Exception as exc:  # noqa: BLE001
    print(f"answer-key: no MNIST data: {type(exc).__name__}")


def replace(image, task):
    out = torch.zeros(image.shape[0], *task.target_shape)
    if LABELS:
        out += 50.0  # the answer key was readable: any push on the unit shows it in the losses
    return out

"""Target selection: the committed task files are exactly what `replacebench select` regenerates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from benchmark import paths
from benchmark.maintainer.select import (
    ALPHA,
    FAMILIES,
    GROUP_N,
    MIN_ACTIVE,
    POWER_MARGIN,
    TOP_N,
    UnitImportance,
    choose,
    select_targets,
)


@pytest.mark.parametrize("model", [pytest.param("digits-mlp"), pytest.param("mnist-mlp", marks=pytest.mark.slow),
                                   pytest.param("mnist-cnn", marks=pytest.mark.slow),
                                   pytest.param("mnist-mlp-fc2", marks=pytest.mark.slow)])
def test_committed_task_file_regenerates_exactly(model, data_dir):
    text, path = select_targets(model, data_dir=data_dir if model != "digits-mlp" else None)
    assert path == paths.tasks_dir() / f"{model}.toml"
    assert text == path.read_text()


def test_choose_against_a_slow_reference():
    rng = np.random.default_rng(3)
    n_units, n = 40, 200
    effects = rng.normal(0, 0.01, n_units) + np.where(rng.random(n_units) < 0.3, 0.05, 0.0)
    d = effects + rng.normal(0, 0.1, (n, n_units))
    d[:, 7] = 0.0  # a dead unit
    d_eval = effects + rng.normal(0, 0.1, (n, n_units))  # the eval set: the same effects, other noise
    importance = []
    for u in range(n_units):
        p = 1.0 if not d[:, u].any() else float(scipy.stats.ttest_1samp(d[:, u], 0, alternative="greater").pvalue)
        t_eval = float(scipy.stats.ttest_1samp(d_eval[:, u], 0).statistic)
        importance.append(UnitImportance(u, float(d[:, u].mean()), p, 0.0 if u == 7 else 0.5,
                                         float(d_eval[:, u].mean()), t_eval, t_eval > 2))
    top, random_units, group = choose(importance, seed=0)
    # reference: filter by Bonferroni on the fit set and by t ≥ POWER_MARGIN on the eval set, sort by hand
    significant = [u for u in range(n_units) if importance[u].p_value < ALPHA / n_units and importance[u].mean_increase > 0]
    by_effect = sorted(significant, key=lambda u: -importance[u].mean_increase)
    powered = [u for u in by_effect if importance[u].eval_t >= POWER_MARGIN]
    assert len(powered) < len(by_effect)  # the power filter bites here
    assert [u.unit for u in top] == powered[:TOP_N]
    assert group == sorted(by_effect[:GROUP_N])
    assert 7 not in random_units and not set(random_units) & set(powered[:TOP_N])
    assert len(set(random_units)) == len(random_units) == 2
    assert all(importance[u].eval_t >= POWER_MARGIN and importance[u].eval_defined for u in random_units)
    assert choose(importance, seed=0)[1] == random_units  # seeded
    assert all(importance[u].active_fraction >= MIN_ACTIVE for u in random_units)


def test_every_family_has_a_task_file():
    for model in FAMILIES:
        assert (paths.tasks_dir() / f"{model}.toml").exists()

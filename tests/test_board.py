"""The board's orderings: the frontier of recovery against description length, and ranks that respect the CIs."""

from __future__ import annotations

import numpy as np


def test_pareto_frontier_against_brute_force():
    from benchmark.board.leaderboard import pareto_frontier

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        points = {f"s{i}": (float(rng.integers(0, 4)) / 4, float(rng.integers(0, 4))) for i in range(n)}
        brute = {a for a, (ra, ba) in points.items()
                 if not any(rb >= ra and bb <= ba and (rb > ra or bb < ba) for rb, bb in points.values())}
        assert pareto_frontier(points) == brute, points


def test_interval_ranks_share_a_rank_where_intervals_overlap():
    from benchmark.board.leaderboard import interval_ranks

    assert interval_ranks({"a": (0.9, 1.0), "b": (0.8, 0.95), "c": (0.1, 0.5), "d": (0.45, 0.6), "e": (-0.1, 0.05)}) \
        == {"a": 1, "b": 1, "c": 3, "d": 3, "e": 5}
    assert interval_ranks({f"s{i}": (i - 0.1, i + 0.1) for i in range(5)}) == {f"s{i}": 5 - i for i in range(5)}
    assert set(interval_ranks({f"s{i}": (0.0, 1.0 + i) for i in range(5)}).values()) == {1}
    rng = np.random.default_rng(1)
    for _ in range(200):  # against the definition by pairwise comparison
        lows = rng.uniform(0, 1, 6)
        intervals = {f"s{i}": (lo, lo + rng.uniform(0, 0.4)) for i, lo in enumerate(lows)}
        ranks = interval_ranks(intervals)
        for a, (low_a, high_a) in intervals.items():
            for b, (low_b, high_b) in intervals.items():
                if low_b > high_a:  # b is significantly above a: b ranks strictly better
                    assert ranks[b] < ranks[a]
            # by definition: one more than the number of entries whose CI lies wholly above
            assert ranks[a] == 1 + sum(low_b > high_a for low_b, _ in intervals.values())


def test_every_shipped_task_on_the_committed_board_is_powered():
    """Every non-ImageNet task has committed records, each with a defined primary recovery whose effect is at least
    POWER_MARGIN standard errors above 0 on the eval set (recomputed from the sidecar's per-example losses)."""
    import math

    from benchmark import paths
    from benchmark.board.records import find_records, read_record, read_sidecar
    from benchmark.maintainer.select import POWER_MARGIN
    from benchmark.tasks import all_tasks

    results = paths.leaderboard_dir() / "results"
    seen = set()
    for path in find_records(results):
        record = read_record(path)
        task = record["task"]["id"]
        if task not in all_tasks() or not record["task"].get("standard_protocol", True) or record["split"] != "public":
            continue  # the selection powers the public eval set; a held-out split moves its images
        arrays = read_sidecar(path, record)
        d = arrays["loss.zero"].astype(np.float64) - arrays["loss.clean"].astype(np.float64)
        t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        assert record["results"]["primary"]["defined"], (task, record["submission"]["name"])
        assert t >= POWER_MARGIN, (task, t)
        seen.add(task)
    shipped = {tid for tid, t in all_tasks().items() if t.dataset != "imagenet"}
    assert shipped <= seen, sorted(shipped - seen)


def test_every_committed_record_is_typed_round_trips_and_validates():
    """The board's own records load as `Record`, serialise back to the same JSON, and meet the published schema."""
    import json

    from benchmark import paths
    from benchmark.board.record_types import Record, json_schema, validate
    from benchmark.board.records import find_records

    schema = json_schema()
    found = find_records(paths.leaderboard_dir() / "results")
    assert len(found) >= 100
    for path in found:
        data = json.loads(path.read_text())
        record = Record.from_dict(data)
        assert record.to_dict() == data, path
        assert validate(data, schema) == [], path

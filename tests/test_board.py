"""The board's orderings: the frontier of recovery against description length, and ranks that respect the CIs."""

from __future__ import annotations

from pathlib import Path

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
    from benchmark.record.io import read_sidecar
    from benchmark.record.layout import find_records
    from benchmark.record.typed import Record
    from benchmark.maintainer.select import POWER_MARGIN
    from benchmark.tasks import all_tasks

    results = paths.leaderboard_dir() / "results"
    seen = set()
    for path in find_records(results):
        record = Record.read(path)
        task = record.task.id
        if task not in all_tasks() or record.task.standard_protocol is False or record.split != "public":
            continue  # the selection powers the public eval set; a held-out split moves its images
        arrays = read_sidecar(path, record)
        ablation = all_tasks()[task].ablation  # the primary one (zero for images and modadd, mean for text)
        d = arrays[f"loss.{ablation}"].astype(np.float64) - arrays["loss.clean"].astype(np.float64)
        t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        assert record.results.primary.defined, (task, record.submission.name)
        assert t >= POWER_MARGIN, (task, t)
        seen.add(task)
    shipped = {tid for tid, t in all_tasks().items() if t.dataset != "imagenet"}
    assert shipped <= seen, sorted(shipped - seen)


def test_every_committed_record_is_typed_round_trips_and_validates():
    """The board's own records load as `Record`, serialise back to the same JSON (as migrated to the current schema:
    the same JSON once the board is scored under it), and meet the published schema."""
    import json

    from benchmark import paths
    from benchmark.record.layout import find_records
    from benchmark.record.migrate import migrate
    from benchmark.record.typed import Record, json_schema, validate

    schema = json_schema()
    found = find_records(paths.leaderboard_dir() / "results")
    assert len(found) >= 100
    for path in found:
        data = migrate(json.loads(path.read_text()))
        record = Record.from_dict(data)
        assert record.to_dict() == data, path
        assert validate(data, schema) == [], path


# -- copies: a reference ceiling, never ranked ----------------------------------------------------------------------

def board_sections(board: str) -> dict[str, dict[str, list[list[str]]]]:
    """Per task heading of a rendered Markdown board: the rows (cells) of its ranked table and of its reference table."""
    out: dict[str, dict[str, list[list[str]]]] = {}
    for section in board.split("\n## ")[1:]:
        task, _, body = section.partition("\n")
        ranked, _, reference = body.partition("**Reference (copy)**")
        rows = lambda text: [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()  # noqa: E731
                             if line.startswith("| ") and not line.startswith("| # |")]
        out[task.replace("\\", "")] = {"ranked": rows(ranked), "reference": rows(reference)}
    return out


def render_board(results, tmp_path) -> str:
    """The board rendered by the real CLI from `results` into a file under tmp_path."""
    from helpers import run_cli

    out = tmp_path / "board.md"
    proc = run_cli("leaderboard", "--results-dir", str(results), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


def test_copies_on_the_committed_board_are_references_with_no_rank_and_no_frontier(tmp_path):
    """Rendered from the committed records: every copy sits in its task's reference table with # `ref`, never in the
    ranked table, never on the frontier; the committed leaderboard/README.md has no ranked copy either."""
    import json

    from benchmark import paths
    from benchmark.record.layout import default_results_dir

    results = default_results_dir()
    copies = {(r["task"]["id"], r["submission"]["name"]) for r in map(json.loads, map(Path.read_text, results.glob("*/*.json")))
              if r["complexity"]["copy"] and r.get("split", "public") == "public"}
    assert ("digits-mlp/fc1:17", "linear") in copies and len(copies) >= 16
    sections = board_sections(render_board(results, tmp_path))
    seen = set()
    for task, tables in sections.items():
        for row in tables["ranked"]:
            assert "copy" not in row[1], (task, row)
            assert (task, row[1].split(" (")[0]) not in copies, (task, row)
        for row in tables["reference"]:
            assert row[0] == "ref" and "copy" in row[1] and "◆" not in row, (task, row)
            seen.add((task, row[1].split(" (")[0]))
    assert seen == copies
    # on fc2:top20 linear is no copy (it stores 15,788 numbers, the units' fan-in from the pixels is 206,100): ranked
    assert any(row[1].startswith("linear") and row[0].isdigit() for row in sections["mnist-mlp/fc2:top20"]["ranked"])
    committed = board_sections((paths.leaderboard_dir() / "README.md").read_text())
    assert not [(t, row) for t, tables in committed.items() for row in tables["ranked"] if "copy" in row[1]]
    assert {(t, row[1].split(" (")[0]) for t, tables in committed.items() for row in tables["reference"]} == copies


def test_a_copy_with_the_best_recovery_takes_no_rank_from_the_others(tmp_path):
    """mnist-mlp/fc1:13: the copy `linear` (100.3% [99.6, 101.7]) lies wholly above `mean` (33.6% [17.1, 86.6]).
    Counted as an entry it would push `mean` to rank 2 and take rank 1 itself; as a reference, `mean` shares rank 1
    with `mnist-stroke`, and `zero` (below both) is 3."""
    import shutil

    from benchmark.record.layout import default_results_dir

    results = tmp_path / "results"
    shutil.copytree(default_results_dir() / "mnist-mlp__fc1-13", results / "mnist-mlp__fc1-13")
    section = board_sections(render_board(results, tmp_path))["mnist-mlp/fc1:13"]
    ranks = {row[1].split(" (")[0]: row[0] for row in section["ranked"]}
    assert ranks == {"mnist-stroke": "1", "mean": "1", "zero": "3"}
    assert [(row[0], row[1]) for row in section["reference"]] == [("ref", "linear (copy)")]


def test_an_undefined_p_at_least_clean_shows_as_equal_to_clean(tmp_path):
    """A record whose replaced losses equal the clean ones within float32 noise has p(R≥1) = None: "= clean"."""
    import json
    import shutil

    from benchmark.record.layout import default_results_dir

    results = tmp_path / "results"
    shutil.copytree(default_results_dir() / "mnist-mlp__fc1-13", results / "mnist-mlp__fc1-13")
    path = results / "mnist-mlp__fc1-13" / "mean.json"
    record = json.loads(path.read_text())
    record["results"]["p_at_least_clean"] = None
    path.write_text(json.dumps(record))
    section = board_sections(render_board(results, tmp_path))["mnist-mlp/fc1:13"]
    row = next(r for r in section["ranked"] if r[1].startswith("mean"))
    assert "= clean" in row


def test_a_task_with_only_copies_says_so(tmp_path):
    """A task whose only public records are copies has no ranked table, one line saying so, and its reference table."""
    import shutil

    from benchmark.record.layout import default_results_dir

    results = tmp_path / "results"
    (results / "digits-mlp__fc1-17").mkdir(parents=True)
    for path in (default_results_dir() / "digits-mlp__fc1-17").glob("linear.*"):
        shutil.copy(path, results / "digits-mlp__fc1-17" / path.name)
    board = render_board(results, tmp_path)
    section = board_sections(board)["digits-mlp/fc1:17"]
    assert section["ranked"] == [] and "No entry but copies yet." in board
    assert [row[0] for row in section["reference"]] == ["ref"]


def test_every_committed_sidecar_belongs_to_a_record():
    """A re-score writes a new `<sub>.<sha12>.npz`; the old one must go with it. Every committed sidecar is the one its
    folder's records name, and every named sidecar is committed (33 stale held-out sidecars were once left behind)."""
    import json

    from benchmark.record.layout import default_results_dir

    for folder in sorted(p for p in default_results_dir().iterdir() if p.is_dir()):
        named = {json.loads(r.read_text())["sidecar"]["file"] for r in folder.glob("*.json")}
        present = {p.name for p in folder.glob("*.npz")}
        assert present == named, (folder.name, sorted(present ^ named))

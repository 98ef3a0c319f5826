"""The one scoring session (`harness/session.py`): the only place a room is built, its checks on entering, and its
steps adding up to the whole run."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import UserError
from benchmark.harness.runner import RunOptions
from benchmark.harness.session import ScoringSession, compute_record
from benchmark.harness.submissions import take_snapshot
from benchmark.tasks import get_task
from helpers import write_submission

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"
TASK = "digits-mlp/fc1:17"


def test_the_room_is_built_in_the_session_only():
    """Every `IsolatedSubmission(...)` call in the package, read with `ast`: one, in `harness/session.py`."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name == "IsolatedSubmission":
                    calls.append(path.relative_to(PACKAGE).as_posix())
    assert calls == ["harness/session.py"]


def test_entering_refuses_a_secret_in_process_and_a_bad_signature_before_any_room(tmp_path):
    task = get_task(TASK)
    good = write_submission(tmp_path / "good", "def replace(image):\n    return image[:, :1]\n")
    bad = write_submission(tmp_path / "bad", "def replace(conv9):\n    return conv9\n")
    with take_snapshot(str(good)) as snapshot:
        session = ScoringSession(task, snapshot, RunOptions(isolate=False, heldout_secret=b"s" * 32))
        with pytest.raises(UserError, match="--held-out-secret cannot be combined with --in-process"):
            session.__enter__()
        with pytest.raises(RuntimeError, match="no room"):
            session.room
    with take_snapshot(str(bad)) as snapshot:
        session = ScoringSession(task, snapshot, RunOptions())
        with pytest.raises(UserError, match="not an input task"):
            with session:
                pass
        assert session.ctx is None  # refused before the model and the data load


def test_the_steps_add_up_to_the_whole_run(data_dir, session_cache):
    """prepare, load_baseline, load, fit, start_replace and replaced_pass, run one by one, give the replaced losses,
    KL and fidelity of `compute_record` (here in-process, on 300 eval examples)."""
    task = get_task(TASK)
    options = RunOptions(data_dir=str(data_dir), eval_size=300, isolate=False)
    with take_snapshot("linear") as snapshot:
        record, arrays, _ = compute_record(task, snapshot, options)
        with ScoringSession(task, snapshot, options) as session:
            session.prepare()
            baseline = session.load_baseline()
            session.load()
            session.start_replace(session.fit())
            replaced, fidelity, _ = session.replaced_pass()
    assert baseline.from_cache  # the whole run's baseline, cached under the same key
    assert set(session.seconds) == {"baseline", "load", "fit"}
    np.testing.assert_array_equal(replaced["loss.replaced"].astype(np.float32), arrays["loss.replaced"])
    np.testing.assert_array_equal(replaced["kl"].astype(np.float32), arrays["kl"])
    assert [f.to_dict()["pearson_r"] for f in fidelity] == [f.pearson_r for f in record.results.fidelity]
    assert record.isolation.level == "none" and record.task.n_eval == 300

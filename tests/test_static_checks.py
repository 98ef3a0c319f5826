"""Mistakes found before any model loads: a syntax error, no `replace`, parameters the task does not allow, a
misspelt `submission.toml` key; an import failure labelled `(import)`, not `(fit)`; and `score --explain`.

The CLI runs as a real subprocess, except in the three runs that get past the checks and load torch, which run its
`main` in this process (`run_main`; the submission still runs in isolated children). "Before the model loads" is
shown without a clock: the data directory is an empty folder, so a run that got as far as opening the data would
fail on it instead (the first test shows that it does).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import run_cli, run_main, write_submission

from benchmark.record.report import LEGEND, LEGEND_HINT
from benchmark.errors import SubmissionError
from benchmark.harness.static import MAX_READ_BYTES, described, read_code
from benchmark.sandbox.worker import describe

TASK = "mnist-cnn/conv2:61"  # inputs image, conv1
ZERO = "import torch\n\ndef replace(image, task):\n    return torch.zeros(image.shape[0], *task.target_shape)\n"


@pytest.fixture()
def no_data(tmp_path: Path) -> dict[str, str]:
    """An environment whose data directory is empty: any run that opens the data fails on it."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    return {"REPLACEBENCH_DATA": str(empty), "REPLACEBENCH_CACHE": str(tmp_path / "cache")}


def one_line(proc, status: int, prefix: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr
    assert lines and lines[0].startswith(prefix), proc.stderr
    return lines[0]


def test_a_good_submission_gets_as_far_as_the_missing_data(tmp_path, no_data):
    sub = write_submission(tmp_path / "good", ZERO)
    proc = run_main("score", str(sub), "--task", TASK, "--no-record", env=no_data)
    one_line(proc, 2, "replacebench: error: MNIST not found")


def test_syntax_error_is_reported_before_the_data_with_its_location(tmp_path, no_data):
    sub = write_submission(tmp_path / "syntax", "import torch\n\ndef replace(image, task:\n    return image\n")
    proc = run_cli("score", str(sub), "--task", TASK, "--no-record", env=no_data)
    line = one_line(proc, 1, "replacebench: submission 'syntax' (import): failed to import replacement.py (SyntaxError")
    assert "line 3" in line and "(fit)" not in proc.stderr
    assert 'replacement.py", line 3' in proc.stderr and "def replace(image, task:" in proc.stderr  # its own location
    assert "benchmark/" not in proc.stderr  # the user's code, never the harness's frames


def test_missing_replace_is_reported_before_the_data(tmp_path, no_data):
    sub = write_submission(tmp_path / "missing", ZERO.replace("def replace(", "def replce("))
    proc = run_cli("score", str(sub), "--task", TASK, "--no-record", env=no_data)
    one_line(proc, 1, "replacebench: submission 'missing' (import): replacement.py defines no function replace(...)")


#: Two run by default (replace's and fit's own parameter checks); the other two with `pytest -m slow`: their
#: messages are checked in process by test_harness.py::test_bad_signatures_are_refused ("defines no fit",
#: "not supported"), and the path before the data is the same one the default two take.
@pytest.mark.parametrize("code, fragments", [
    (ZERO.replace("image", "imgae"), ["replace(): parameter 'imgae' is not an input task", "Did you mean 'image'?"]),
    pytest.param(ZERO.replace("task)", "task, params)"), ["reads 'params' but the submission defines no fit()"],
                 marks=pytest.mark.slow),
    (ZERO + "\ndef fit(image, answer):\n    return {}\n", ["fit(): parameter 'answer'"]),
    pytest.param(ZERO.replace("task)", "task, *rest)"), ["*rest is not supported"], marks=pytest.mark.slow),
])
def test_parameters_the_task_does_not_allow_are_reported_before_the_data(tmp_path, no_data, code, fragments):
    sub = write_submission(tmp_path / "params", code)
    line = one_line(run_cli("score", str(sub), "--task", TASK, "--no-record", env=no_data), 2,
                    "replacebench: error: submission 'params'")
    for fragment in fragments:
        assert fragment in line, line


def test_misspelt_metadata_key_is_named(tmp_path, no_data):
    sub = write_submission(tmp_path / "typo", ZERO)
    meta = sub / "submission.toml"
    meta.write_text(meta.read_text().replace("authors =", "author ="))
    line = one_line(run_cli("score", str(sub), "--task", TASK, "--no-record", env=no_data), 2, "replacebench: error: ")
    assert "unknown key 'author'. Did you mean 'authors'?" in line and "missing" not in line
    meta.write_text(meta.read_text().replace("author =", "authors =") + 'task = ["mnist-cnn/*"]\n')
    line = one_line(run_cli("score", str(sub), "--task", TASK, "--no-record", env=no_data), 2, "replacebench: error: ")
    assert "unknown key 'task'. Did you mean 'tasks'?" in line  # it would otherwise serve every task, silently


def test_import_failure_without_fit_is_labelled_import_not_fit(tmp_path):
    sub = write_submission(tmp_path / "boom", "raise RuntimeError('boom at import')\n" + ZERO)
    proc = run_main("score", str(sub), "--task", "digits-mlp/fc1:17", "--no-record")
    one_line(proc, 1, "replacebench: submission 'boom' (import): failed to import replacement.py (RuntimeError: boom")
    assert "(fit)" not in proc.stderr


def test_explain_prints_the_legend_without_a_task():
    proc = run_cli("score", "--explain")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == LEGEND
    for term in ("recovery vs zero|mean|resample", "undefined ⚠", "KL recovery", "p(R >= 1)", "McNemar", "fidelity",
                 "description length", "COPY"):
        assert term in proc.stdout, term


def test_every_report_line_is_in_the_legend_and_the_report_ends_with_the_hint(tmp_path):
    proc = run_main("score", "linear", "--task", "digits-mlp/fc1:17", "--no-record")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.rstrip("\n").splitlines()
    assert lines[-1] == LEGEND_HINT
    for line in lines[1:-1]:
        words = line.split()
        key = " ".join(words[:2]) if words[0] in ("recovery", "KL", "description", "stored", "cost", "wall") else words[0]
        key = key.rstrip(":")
        assert key in LEGEND, f"the legend does not explain the report's line {line!r}"


# -- the source, read without running it ---------------------------------------------------------------------------
SIGNATURES = ["image, task", "image, /, task=None", "*, image, task", "image=1, *args, k, m=2, **inputs",
              "a, b=1, /, c=2, *, d, e=3, **kw", "", "**inputs"]


@pytest.mark.parametrize("params", SIGNATURES)
def test_a_signature_read_from_the_source_equals_inspect_signature(params):
    source = f"def replace({params}):\n    return 0\n"
    namespace: dict = {}
    exec(source, namespace)  # the test's own code: what the child's inspect.signature says
    assert described(ast.parse(source).body[0].args) == describe(namespace["replace"])
    assert read_code(source.encode(), "replacement.py", "s").replace == describe(namespace["replace"])


@pytest.mark.parametrize("code", [
    "import functools\n@functools.lru_cache\ndef replace(image): ...\n",  # a decorator may change the signature
    "def make():\n    def f(image): ...\n    return f\nreplace = make()\n",
    "def replace(image): ...\nreplace = other\n",
    "from helpers import *\n",  # may bind replace
    "from helpers import replace\n",
    "globals()['replace'] = lambda image: 0\n",
    "def replace(image): ...\nreplace.__signature__ = None\n",
    "if True:\n    def replace(image): ...\n",
    "def __getattr__(name): ...\n",
])
def test_what_the_source_cannot_say_is_left_to_the_child(code):
    assert read_code(code.encode(), "replacement.py", "s").replace is None


def test_no_binding_of_replace_at_all_is_an_error_and_fit_absence_is_known():
    with pytest.raises(SubmissionError, match="defines no function replace"):
        read_code(b"def fit(image): ...\n", "replacement.py", "s")
    code = read_code(b"def replace(image): ...\n", "replacement.py", "s")
    assert code.fit_absent and code.fit is None and code.replace == [["image", "POSITIONAL_OR_KEYWORD", False]]
    assert not read_code(b"def replace(image): ...\nfit = 3\n", "replacement.py", "s").fit_absent


@pytest.mark.parametrize("code", [b"return 1\ndef replace(image): ...\n", b"def replace(image):\n\treturn 1\n        x\n",
                                  b"def replace(image): ...\n\0"])
def test_compile_errors_past_the_parser_are_found_too(code):
    with pytest.raises(SubmissionError, match=r"\(import\): failed to import replacement.py"):
        read_code(code, "replacement.py", "s")


def test_a_file_over_the_cap_is_left_to_the_child():
    from benchmark.harness.static import MAX_READ_BYTES

    code = read_code(b"x = 1\n" * (MAX_READ_BYTES // 6 + 1), "replacement.py", "s")  # no replace, but not read here
    assert code.replace is None and not code.fit_absent


@pytest.mark.parametrize("body", ["-" * (MAX_READ_BYTES - 200) + "1",
                                  "not " * ((MAX_READ_BYTES - 200) // 4) + "1",
                                  "1" + " + 1" * ((MAX_READ_BYTES - 200) // 4)])
def test_hostile_nesting_up_to_the_cap_never_crashes_the_harness(body):
    """The harness parses untrusted source: nesting deep enough to exhaust the parser's or compiler's recursion is
    left to the child (signatures unknown), never a harness traceback or a crash."""
    source = f"x = {body}\ndef replace(image):\n    return image\n".encode()
    assert len(source) <= MAX_READ_BYTES
    code = read_code(source, "replacement.py", "submission 'deep'")
    assert code.replace is None and code.fit is None

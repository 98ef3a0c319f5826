"""Description length: prose and layout are free (the code runs without them), names, numbers, text, data and paths
are priced, pasted weights are a copy.

Each figure is checked against a count made another way: by hand on small sources, through `ast` rewrites
of the shipped submissions (comments, docstrings, renamed variables), and from the model's architecture for
the fan-in.
"""

from __future__ import annotations

import ast
import io
import json
import struct
import tokenize

import numpy as np
import pytest
import torch
from helpers import ROOT, board_column, write_submission

from benchmark.harness.description import (
    API_NAMES,
    DICTIONARY_FILE,
    Description,
    dictionary,
    dictionary_versions,
    live_dictionary,
    literal_bits,
    measure,
    render,
    runnable_files,
)
from benchmark.harness.fan_in import fan_in_from
from benchmark.harness.submissions import read_folder

SHIPPED = sorted(p for p in (ROOT / "submissions").iterdir() if (p / "replacement.py").exists())


def code_only(source: str) -> dict[str, bytes]:
    return {"replacement.py": source.encode()}


@pytest.mark.parametrize(("text", "bits"), [
    ("0", 4), ("0.0", 4), ("7", 4), ("784", 12), ("0.0125", 12), ("1.50", 12), ("1e-4", 8), ("2.5E+10", 16),
    ("1_000", 16), ("0x1F", 8), ("0o17", 6), ("0b101", 4), ("0b1", 4), ("3.141592653589793", 64), ("5.", 4),
    (".5", 4), ("2j", 4), ("1" * 100, 400),
])
def test_a_number_costs_four_bits_per_written_digit_at_least_4_no_cap(text, bits):
    assert literal_bits(text) == bits


def D(tokens, vocabulary, names, own, numbers, bits, data, path=len("replacement.py") + 1, own_path=0):  # noqa: N802
    return Description(tokens, vocabulary, names, own, numbers, bits, data, path, own_path)


def test_a_small_source_counted_by_hand():
    # def replace ( image ) : NEWLINE INDENT return image * 2.5 NEWLINE DEDENT → 14 tokens, 12 symbols;
    # names "replace" and "image" (8 + 6 bytes with their ends; API names, so not stored); one literal, 2 digits
    d = measure(code_only("def replace(image):\n    return image * 2.5\n"))
    assert d == D(14, 12, 14, 0, 1, 8, 0)
    # x = [ 1 , - 0.25 ] NEWLINE → 8 tokens (the minus sign is an operator, both numbers one symbol), 2 literals
    assert measure(code_only("x = [1, -0.25]\n")) == D(9, 8, 2, 2, 2, 12, 0)
    # a string literal is a token; its characters are 8 bits a byte, a digit run 8 + 4 per digit, and its end a byte
    assert measure(code_only('k = "gain 0.5"\n')) == D(4, 4, 2, 2, 2, 8, len("gain ") + len(".") + 2 + 1)
    # an f-string is a string token; its text is text, its fields are code: s = f"" NEWLINE, x . mean ( ), ":"
    f = measure(code_only('s = f"m={x.mean():.3f}"\n'))
    assert f.code_tokens == 4 + 5 + 1 and f.literal_numbers == 1
    # every name costs its spelling once, whatever its length: one name cannot carry a weight vector for free
    long = measure(code_only("x" * 1000 + " = 1\n"))
    assert long.name_bytes == long.own_name_bytes == 1001 and long.total_bits(0) > 8000
    assert measure(code_only("y = 1\n")).total_bits(0) == measure(code_only("x = 1\n")).total_bits(0)
    assert d.total_bits(fitted_numbers=3) == 14 * 8 + 14 * 8 + 8 + 8 * 15 + 3 * 32
    assert d.stored_bits(fitted_numbers=3) == 8 + 3 * 32  # names of the API and replacement.py's path are not stored


def test_data_files_are_priced_by_their_bytes(tmp_path):
    npy = io.BytesIO()
    np.save(npy, np.zeros((3, 5), np.float16))
    header = json.dumps({"w": {"dtype": "F32", "shape": [7, 3], "data_offsets": [0, 84]}}).encode()
    safetensors = struct.pack("<Q", len(header)) + header + bytes(84)
    files = {"replacement.py": b"", "a.npy": npy.getvalue(), "c.safetensors": safetensors,
             "d.csv": b"123456,7890\n", "e.bin": bytes(range(10)) + b"\0", "submission.toml": b'description = "1 2 3"\n'}
    d = measure(files)
    # the csv as text (cheaper than its bytes): digit runs "123456", "7890" (2 ends, 10 digits) and ",", "\n"; arrays
    # and binary files by their bytes; each file's end and path; the metadata file is free
    assert d.literal_numbers == 2 and d.literal_bits == 4 * 10
    assert d.data_bytes == (2 + 2 + 1) + (len(npy.getvalue()) + 1) + (len(safetensors) + 1) + (11 + 1)
    assert d.path_bytes == sum(len(n) + 1 for n in files if n != "submission.toml")
    assert d.code_tokens == 0


def test_array_files_cost_their_bytes_whatever_they_claim():
    npy = io.BytesIO()
    np.save(npy, np.zeros(4, np.float32))
    appended = measure({"w.npy": npy.getvalue() + b"hidden weights"})
    assert appended.data_bytes == measure({"w.npy": npy.getvalue()}).data_bytes + len(b"hidden weights")
    for shape, offsets in (([-5], [0, 0]), ([3], [0, 4]), ([1000], [0, 4000])):
        header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}).encode()
        blob = struct.pack("<Q", len(header)) + header + bytes(12)
        d = measure({"w.safetensors": blob})
        assert d.data_bits + d.literal_bits >= 8 * len(blob) * 0.5 and d.total_bits(0) <= 8 * (len(blob) + 20)


def test_a_file_that_is_not_python_counts_whole_as_data():
    d = measure({"replacement.py": b"def replace(:\n  # 123456 weights\n"})
    assert d.code_tokens == 0 and d.literal_numbers == 1 and d.literal_bits == 24
    assert d.data_bytes == len("def replace(:\n  # ") + 1 + len(" weights\n") + 1


def _with_comments(source: str) -> str:
    """A comment after every logical line, and one on a line of its own at the top."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    ends = {t.start[0] for t in tokens if t.type == tokenize.NEWLINE and t.string}
    out = ["# a comment with numbers 3.14159 and 42\n"]
    for number, line in enumerate(lines, start=1):
        out.append(line.rstrip("\n") + "  # 1.0 2.0 3.0 note\n" if number in ends and "#" not in line else line)
    return "".join(out)


class _AddDocstrings(ast.NodeTransformer):
    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)):
            node.body.insert(0, ast.Expr(ast.Constant("Docstring with 0.123, 456 and a formula y = w·x + b.")))
        return node


class _Rename(ast.NodeTransformer):
    """Every name the module binds (functions, arguments, assigned variables) → v0, v1, … by first binding."""

    def __init__(self, tree: ast.AST):
        bound: list[str] = []
        for node in ast.walk(tree):
            names = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.arg):
                names = [node.arg]
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names = [node.id]
            bound += [n for n in names if n not in bound and n not in API_NAMES and n not in dictionary()]
        used_otherwise = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | \
            {n.arg for n in ast.walk(tree) if isinstance(n, ast.keyword)}
        bound = [n for n in bound if n not in used_otherwise]
        # the same spelling length (so the same price): v0…, padded with underscores
        self.mapping = {n: f"v{i}".ljust(len(n), "_") for i, n in enumerate(bound) if len(n) >= len(f"v{i}")}

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self.mapping.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self.mapping.get(node.arg, node.arg)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self.mapping.get(node.name, node.name)
        self.generic_visit(node)
        return node

def _without_local_build(line: str) -> str:
    """`torch 2.14.1+cu130` and `torch 2.14.1+cpu` are the same release: the same names."""
    return " ".join(word.split("+")[0] for word in line.split())


def test_the_committed_dictionary_is_the_installed_libraries_names():
    """`dictionary.txt` holds exactly the names `live_dictionary` reads from python, numpy and torch, under the
    versions its first line names (the pinned ones), so reading the file changes no description length."""
    first = DICTIONARY_FILE.read_text(encoding="utf-8").splitlines()[0]
    assert _without_local_build(first) == _without_local_build(dictionary_versions()), \
        f"dictionary.txt was made under '{first}', this is '{dictionary_versions()}': remake it (write_dictionary)"
    assert dictionary() == live_dictionary()
    assert {"torch", "relu", "einsum", "tensor", "replace", "lambda", "match"} <= dictionary()
    assert "curve_weights" not in dictionary()


def test_every_committed_record_s_description_length_is_what_the_committed_dictionary_gives():
    """Measured now (with `dictionary.txt`), every shipped submission costs exactly what its board records say."""
    from benchmark.harness.submissions import content_hash, read_folder

    checked = 0
    for path in sorted((ROOT / "leaderboard" / "results").glob("*/*.json")):
        record = json.loads(path.read_text())
        folder = ROOT / "submissions" / record["submission"]["name"]
        files = read_folder(folder)
        if content_hash(files) != record["submission"]["content_hash"]:
            continue  # the folder changed since (verify calls that stale)
        d, c = measure(files), record["complexity"]
        fitted = c["fitted_parameters"]
        assert (d.total_bits(fitted), d.stored_bits(fitted)) == (c["description_bits"], c["stored_bits"]), path
        checked += 1
    assert checked >= 150


def test_a_bad_submission_is_refused_before_torch_loads(tmp_path):
    """Snapshotting (the folder, its metadata, its code's syntax, its description length) and the checks before the
    data (`preflight`) import no torch and no scipy: `score` refuses bad input at once."""
    import subprocess
    import sys

    sub = write_submission(tmp_path / "sub", "import torch\ndef replace(image):\n    return torch.relu(image)\n")
    code = ("import sys\nfrom benchmark.harness.preflight import check_signatures\n"
            "from benchmark.harness.submissions import take_snapshot\nfrom benchmark.tasks import get_task\n"
            f"with take_snapshot({str(sub)!r}) as snap:\n    check_signatures(snap, get_task('digits-mlp/fc1:17'))\n"
            "    print(snap.description.total_bits(0), sorted(m for m in ('torch', 'scipy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    bits, loaded = proc.stdout.split(" ", 1)
    assert int(bits) > 0 and loaded.strip() == "[]"



@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_comments_docstrings_layout_and_same_length_names_leave_the_length_unchanged(folder):
    source = (folder / "replacement.py").read_text()
    before = measure(code_only(source))
    assert before.code_tokens > 50
    assert measure(code_only(_with_comments(source))) == before
    # ast.unparse normalises layout, so compare unparsed forms with each other
    plain = ast.unparse(ast.parse(source))
    documented = ast.unparse(_AddDocstrings().visit(ast.parse(source)))
    assert documented.count('"""') + documented.count("'") > plain.count('"""') + plain.count("'")
    assert measure(code_only(documented)) == measure(code_only(plain))
    tree = ast.parse(source)
    renamer = _Rename(tree)
    renamed = ast.unparse(renamer.visit(tree))
    assert len(renamer.mapping) >= 1 and renamed != plain
    assert measure(code_only(renamed)) == measure(code_only(plain))
    # …but a longer name does, and a number
    assert measure(code_only(plain + "\nEXTRA_NAME = 1\n")).name_bytes == measure(code_only(plain)).name_bytes + 11
    assert measure(code_only(plain + "\nEXTRA = 0.123\n")).literal_numbers == measure(code_only(plain)).literal_numbers + 1


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_rendering_removes_prose_and_layout_and_keeps_the_code_and_a_line_map(folder):
    source = (folder / "replacement.py").read_bytes()
    rendering = render(source)
    assert rendering is not None
    tokens = list(tokenize.tokenize(io.BytesIO(rendering.source).readline))
    assert not any(t.type == tokenize.COMMENT for t in tokens)
    assert not any(line != line.rstrip() for line in rendering.source.decode().splitlines())
    # layout of its own (blank lines, trailing spaces, comments) does not reach the rendering
    relaid = b"\n\n".join(line + b"  \t" if line.strip() and not line.rstrip().endswith(b"\\") else line
                           for line in _with_comments(source.decode()).encode().split(b"\n"))
    if ast.dump(ast.parse(relaid)) == ast.dump(ast.parse(source)):
        assert render(relaid).source == rendering.source
    tree = ast.parse(rendering.source)
    assert not any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                   for n in ast.walk(tree))
    assert render(rendering.source).source == rendering.source  # a fixed point: the rendering is canonical
    # the line map sends each rendered def to the line where it is written
    written = {n.name: n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and not node.decorator_list:
            assert rendering.lines[node.lineno] == written[node.name]
    assert runnable_files({"replacement.py": source, "submission.toml": b"x"}) == {"replacement.py": rendering.source}


def test_f_strings_run_code_so_they_are_not_prose():
    source = b'def f(x):\n    f"{x.append(1)}"\n    return x\n'
    namespace: dict = {}
    exec(render(source).source, namespace)  # noqa: S102 - our own test source
    assert namespace["f"]([]) == [1]


def test_fan_in_equals_the_architectures_count():
    from benchmark.models.digits import DigitsMLP
    from benchmark.models.inception import InceptionV1
    from benchmark.models.mnist import MnistCNN, MnistMLP

    assert fan_in_from(DigitsMLP(), "fc1", (17,), "image", (1, 8, 8)) == 64 + 1
    assert fan_in_from(MnistMLP(), "fc1", (13,), "image", (1, 28, 28)) == 784 + 1
    assert fan_in_from(MnistMLP(), "fc1", (13, 14), "image", (1, 28, 28)) == 2 * (784 + 1)
    assert fan_in_from(MnistMLP(), "fc2", (3,), "fc1", (256,)) == 256 + 1
    assert fan_in_from(MnistCNN(), "conv2", (7,), "conv1", (32, 28, 28)) == 32 * 9 + 1
    assert fan_in_from(MnistCNN(), "conv2", (7,), "image", (1, 28, 28)) == 32 * (9 + 1) + 32 * 9 + 1
    # InceptionV1 mixed3b (random weights) from mixed3a: branches 1x1 0-127, 3x3 128-319, 5x5 320-415, pool 416-479
    net = InceptionV1()
    assert fan_in_from(net, "mixed3b", (100,), "mixed3a", (256, 28, 28)) == 256 + 1
    assert fan_in_from(net, "mixed3b", (200,), "mixed3a", (256, 28, 28)) == 256 * 128 + 128 + 9 * 128 + 1
    assert fan_in_from(net, "mixed3b", (379,), "mixed3a", (256, 28, 28)) == 256 * 32 + 32 + 25 * 32 + 1
    assert fan_in_from(net, "mixed3b", (450,), "mixed3a", (256, 28, 28)) == 256 + 1


PASTED = '''"""A stroke template for mnist-mlp fc1:13: the unit responds to ink where TEMPLATE is positive."""
import torch

TEMPLATE = torch.tensor([{weights}])
OFFSET = {bias}


def replace(image):
    """relu(<template, image> + offset): a hand-written stroke detector."""
    return torch.relu(image.reshape(image.shape[0], -1) @ TEMPLATE + OFFSET).reshape(-1, 1)
'''


@pytest.mark.slow
def test_pasted_weights_are_a_copy_and_off_the_frontier(tmp_path, data_dir, session_cache, cli):
    """The cheat of the issue: the unit's 784 weights pasted as 4-decimal literals in a 'hand-written' entry."""
    from safetensors.numpy import load_file

    state = load_file(str(ROOT / "checkpoints" / "mnist-mlp.safetensors"))
    weights = ", ".join(f"{w:.4f}" for w in state["fc1_linear.weight"][13])
    folder = write_submission(tmp_path / "pasted", PASTED.format(weights=weights, bias=f"{state['fc1_linear.bias'][13]:.4f}"))
    results = tmp_path / "results"
    task = "mnist-mlp/fc1:13"
    for name in (str(folder), "mnist-stroke", "mean", "zero"):
        proc = cli("score", name, "--task", task, "--results-dir", str(results), "--data-dir", str(data_dir))
        assert proc.returncode == 0, proc.stderr
    records = {p.stem: json.loads(p.read_text()) for p in (results / "mnist-mlp__fc1-13").glob("*.json")}
    pasted, stroke = records["pasted"]["complexity"], records["mnist-stroke"]["complexity"]
    assert records["pasted"]["results"]["primary"]["recovery"] > 0.99  # it really is the unit
    assert pasted["fitted_parameters"] == 0 and pasted["literal_numbers"] >= 785 and pasted["target_fan_in"] == 785
    assert pasted["copy"] is True and stroke["copy"] is False
    assert pasted["stored_bits"] >= 8 * 785 > stroke["stored_bits"]
    assert pasted["description_bits"] > 1.5 * stroke["description_bits"]
    board = cli("leaderboard", "--results-dir", str(results), "--out", "-").stdout
    rows = {r.split("|")[2].strip(): r.split("|") for r in board.splitlines() if r.startswith("| ") and "---" not in r
            and not r.startswith("| #")}
    frontier = board_column(board, "frontier")
    assert rows["pasted (copy)"][frontier].strip() == ""
    assert rows["mnist-stroke"][frontier].strip() == "◆"


def test_length_command_prints_the_parts(cli):
    proc = cli("length", "mnist-stroke", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    d = measure(read_folder(ROOT / "submissions" / "mnist-stroke"))
    assert shown["code_tokens"] == d.code_tokens and shown["bits_without_fitted"] == d.total_bits(0)
    text = cli("length", "mnist-stroke").stdout
    assert f"{d.code_tokens:,} tokens" in text
    missing = cli("length", "no-such-submission")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_records_of_schema_2_migrate_to_7_without_the_measure(tmp_path):
    from benchmark.board.leaderboard import numbers_cell
    from benchmark.record.migrate import SCHEMA_VERSION, migrate
    from benchmark.record.typed import Complexity

    old = {"schema_version": 2, "complexity": {"fitted_parameters": 66, "source_bytes_xz": 2352}, "results": {}}
    new = migrate(old)
    assert new["schema_version"] == SCHEMA_VERSION == 7 and new["complexity"]["fitted_parameters"] == 66
    assert new["results"]["kl_recovery"] is None and new["efficiency"] is None
    assert new["split"] == "public" and new["heldout_commitment"] is None
    assert new["complexity"]["description_bits"] is None and new["complexity"]["copy"] is None
    assert numbers_cell(Complexity.from_dict(new["complexity"])) == "66"
    assert new["complexity"]["stored_bits"] is None


def test_records_of_convention_1_migrate_with_free_names_and_no_stored_bits():
    from benchmark.board.verify import check_complexity
    from benchmark.record.migrate import migrate
    from benchmark.record.typed import Complexity

    old = {"convention": 1, "description_bits": 540, "bits": {"code": 536, "literals": 4, "data": 0, "fitted": 0},
           "code_tokens": 67, "fitted_parameters": 0, "literal_numbers": 1, "data_bytes": 0, "stored_numbers": 1,
           "target_fan_in": 65, "copy": False, "source_bytes_xz": 300}
    new = migrate({"schema_version": 6, "complexity": old})["complexity"]
    assert new["bits"] == {"code": 536, "names": 0, "literals": 4, "data": 0, "fitted": 0}
    assert new["stored_bits"] is None and check_complexity(Complexity.from_dict(new)) == []


def test_rendered_code_computes_what_the_written_code_computes(tmp_path):
    """mnist-stroke run from its rendering gives the same outputs as from its source."""
    import importlib.util

    source = (ROOT / "submissions" / "mnist-stroke" / "replacement.py").read_bytes()
    outputs = []
    for index, text in enumerate((source, render(source).source)):
        path = tmp_path / f"copy{index}.py"
        path.write_bytes(text)
        spec = importlib.util.spec_from_file_location(f"stroke_copy{index}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        torch.manual_seed(0)
        outputs.append(module.replace(torch.randn(6, 1, 28, 28)))
    assert outputs[0].abs().sum() > 0
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


@pytest.mark.parametrize("source", [
    b"(" * 100_000,  # too deeply nested for the parser
    b"x = " + b"1 + " * 200_000 + b"1\n",  # a very long expression
    b"x = 1\n" * 200_000,  # over 1 MiB: not parsed at all
    b"\xff\xfe not utf-8 \x00",  # not text
    b"def f(:\n",  # a syntax error
], ids=["nested", "long-expression", "over-1-MiB", "binary", "syntax-error"])
def test_hostile_sources_are_measured_as_data_without_crashing_the_harness(source):
    """The harness parses untrusted code: whatever it cannot read as Python is priced whole, never an exception."""
    d = measure({"replacement.py": source})
    rendering = render(source)
    if rendering is None:  # not read as code: priced as data, at least 4 bits for every byte
        assert d.code_tokens == 0 and d.total_bits(0) >= 4 * len(source)
        assert runnable_files({"replacement.py": source})["replacement.py"] == source
    else:  # read as code: every token is priced
        assert d.code_tokens > 0 and d.total_bits(0) >= 8 * d.code_tokens
        assert runnable_files({"replacement.py": source})["replacement.py"] == rendering.source

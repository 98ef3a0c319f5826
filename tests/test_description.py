"""Description length: prose is free, names are free, every written number is priced, pasted weights are a copy.

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
    Description,
    blank_prose,
    literal_bits,
    measure,
    runnable_files,
)
from benchmark.harness.fan_in import fan_in_from
from benchmark.harness.submissions import read_folder

SHIPPED = sorted(p for p in (ROOT / "submissions").iterdir() if (p / "replacement.py").exists())


def code_only(source: str) -> dict[str, bytes]:
    return {"replacement.py": source.encode()}


@pytest.mark.parametrize(("text", "bits"), [
    ("0", 4), ("0.0", 4), ("7", 4), ("784", 12), ("0.0125", 12), ("1.50", 12), ("1e-4", 8), ("2.5E+10", 16),
    ("1_000", 16), ("0x1F", 8), ("0o17", 6), ("0b101", 4), ("0b1", 4), ("3.141592653589793", 32), ("5.", 4),
    (".5", 4), ("2j", 4),
])
def test_a_number_costs_four_bits_per_written_digit_within_4_and_32(text, bits):
    assert literal_bits(text) == bits


def test_a_small_source_counted_by_hand():
    # def replace ( image ) : return image * 2.5 → 9 tokens, one literal of 2 digits
    assert measure(code_only("def replace(image):\n    return image * 2.5\n")) == Description(9, 1, 8, 0)
    # x = [ 1 , - 0.25 ] → 6 tokens (the minus sign is an operator), 2 literals: 4 + 8 bits
    assert measure(code_only("x = [1, -0.25]\n")) == Description(6, 2, 12, 0)
    # an f-string is one token; its text is data, its fields are code: x . mean ( ) → 5 tokens; ".3" is a literal, "m=" and "f" data
    assert measure(code_only('s = f"m={x.mean():.3f}"\n')) == Description(2 + 1 + 5, 1, 4, len("m=") + len("f"))
    # a string literal is one token; its characters are data (8 bits each) except the numbers written in it
    assert measure(code_only('k = "gain 0.5"\n')) == Description(3, 1, 4, 5)
    # a name's first 32 characters are free, the rest are data: one name cannot carry a weight vector
    assert measure(code_only("x = 1\n")) == measure(code_only("x" * 32 + " = 1\n"))
    assert measure(code_only("x" * 1000 + " = 1\n")) == Description(2, 1, 4, 1000 - 32)
    d = measure(code_only("def replace(image):\n    return image * 2.5\n"))
    assert d.total_bits(fitted_numbers=3) == 9 * 8 + 8 + 3 * 32
    assert d.stored_numbers(fitted_numbers=3) == 4


def test_data_files_are_priced_by_what_they_hold(tmp_path):
    npy = io.BytesIO()
    np.save(npy, np.zeros((3, 5), np.float16))
    npz = io.BytesIO()
    np.savez(npz, a=np.zeros(4, np.float32), b=np.zeros((2, 2), np.int8))
    header = json.dumps({"w": {"dtype": "F32", "shape": [7, 3], "data_offsets": [0, 84]}}).encode()
    safetensors = struct.pack("<Q", len(header)) + header + bytes(84)
    files = {"replacement.py": b"", "a.npy": npy.getvalue(), "b.npz": npz.getvalue(), "c.safetensors": safetensors,
             "d.csv": b"0.5,-12\n", "e.bin": bytes(range(10)) + b"\0", "submission.toml": b'description = "1 2 3"\n'}
    d = measure(files)
    assert d.literal_numbers == 15 + 4 + 4 + 21 + 2
    assert d.literal_bits == 15 * 16 + 4 * 32 + 4 * 8 + 21 * 32 + 4 + 8
    # ",", "-", "\n" of the csv; every byte of the binary file; every byte of an array file that is not an element
    # (npy/npz headers and the zip container; the safetensors length and header); the metadata file is free
    overhead = (len(npy.getvalue()) - 15 * 2) + (len(npz.getvalue()) - (4 * 4 + 4)) + (8 + len(header))
    assert d.data_bytes == 3 + 11 + overhead
    assert d.code_tokens == 0


def test_array_files_cannot_hide_bytes_or_claim_negative_sizes():
    npy = io.BytesIO()
    np.save(npy, np.zeros(4, np.float32))
    appended = measure({"w.npy": npy.getvalue() + b"hidden weights"})
    assert appended.data_bytes == measure({"w.npy": npy.getvalue()}).data_bytes + len(b"hidden weights")
    for shape, offsets in (([-5], [0, 0]), ([3], [0, 4]), ([1000], [0, 4000])):
        header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}).encode()
        blob = struct.pack("<Q", len(header)) + header + bytes(12)
        assert measure({"w.safetensors": blob}) == Description(0, 0, 0, len(blob))  # malformed: all of it is data


def test_a_file_that_is_not_python_counts_whole_as_data():
    d = measure({"replacement.py": b"def replace(:\n  # 12 weights\n"})
    assert d.code_tokens == 0 and d.literal_numbers == 1
    assert d.data_bytes == len("def replace(:\n  # ") + len(" weights\n")


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
            bound += [n for n in names if n not in bound and n not in ("replace", "fit", "task", "params", "target")]
        self.mapping = {n: f"v{i}" for i, n in enumerate(bound)}

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


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_comments_docstrings_and_names_leave_the_length_unchanged(folder):
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
    assert len(renamer.mapping) >= 3 and renamed != plain
    assert measure(code_only(renamed)) == measure(code_only(plain))
    # …but a number does change it
    assert measure(code_only(plain + "\nEXTRA = 0.123\n")).literal_numbers == measure(code_only(plain)).literal_numbers + 1


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_blanking_removes_prose_and_keeps_the_code_and_its_line_numbers(folder):
    source = (folder / "replacement.py").read_bytes()
    blanked = blank_prose(source)
    assert blanked is not None and blanked.count(b"\n") == source.count(b"\n")
    for token in tokenize.tokenize(io.BytesIO(blanked).readline):
        assert token.type != tokenize.COMMENT or token.string == "#"

    def code_nodes(text: bytes) -> list[tuple[str, int]]:
        """(node type, line) of every node but the prose strings, whose content is all that changes."""
        tree = ast.parse(text)
        prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                 and isinstance(n.value.value, (str, bytes))}
        return [(type(n).__name__, getattr(n, "lineno", 0)) for n in ast.walk(tree) if id(n) not in prose]

    assert code_nodes(blanked) == code_nodes(source)
    docstrings = [n for n in ast.walk(ast.parse(blanked)) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)]
    assert all(not str(n.value.value).strip() for n in docstrings)
    assert runnable_files({"replacement.py": source, "submission.toml": b"x"}) == {"replacement.py": blanked}


def test_f_strings_run_code_so_they_are_not_prose():
    source = b'def f(x):\n    f"{x.append(1)}"\n    return x\n'
    assert blank_prose(source) == source
    namespace: dict = {}
    exec(blank_prose(source), namespace)  # noqa: S102 - our own test source
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
    assert stroke["stored_numbers"] < 200
    assert pasted["description_bits"] > 2 * stroke["description_bits"]
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


def test_records_of_schema_2_migrate_to_6_without_the_measure(tmp_path):
    from benchmark.board.leaderboard import numbers_cell
    from benchmark.record.migrate import SCHEMA_VERSION, migrate
    from benchmark.record.typed import Complexity

    old = {"schema_version": 2, "complexity": {"fitted_parameters": 66, "source_bytes_xz": 2352}, "results": {}}
    new = migrate(old)
    assert new["schema_version"] == SCHEMA_VERSION == 6 and new["complexity"]["fitted_parameters"] == 66
    assert new["results"]["kl_recovery"] is None and new["efficiency"] is None
    assert new["split"] == "public" and new["heldout_commitment"] is None
    assert new["complexity"]["description_bits"] is None and new["complexity"]["copy"] is None
    assert numbers_cell(Complexity.from_dict(new["complexity"])) == "66"


def test_blanked_code_computes_what_the_written_code_computes(tmp_path):
    """mnist-stroke run from its blanked copy gives the same outputs as from its source."""
    import importlib.util

    source = (ROOT / "submissions" / "mnist-stroke" / "replacement.py").read_bytes()
    outputs = []
    for index, text in enumerate((source, blank_prose(source))):
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
    if blank_prose(source) is None:  # not read as code: priced as data, at least 4 bits for every byte
        assert d.code_tokens == 0 and d.total_bits(0) >= 4 * len(source)
    else:  # read as code: every token is priced
        assert d.code_tokens > 0 and d.total_bits(0) >= 8 * d.code_tokens
    assert runnable_files({"replacement.py": source})["replacement.py"] in (source, blank_prose(source))

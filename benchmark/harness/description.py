"""Description length: how many bits it takes to write a submission down, as a code the submission cannot beat.

The convention (also in the README), for every file of a submission folder except `submission.toml` (its
metadata, which the code never sees). The rule it keeps: **every byte the code can read back costs at least the
bits it can carry**.

- **Code runs as it is priced.** Each `.py` file that parses is rendered canonically (`render`): parsed, every
  bare string statement (docstrings included) dropped (a body left empty becomes `pass`), then `ast.unparse`d.
  The children run that rendering, so comments, docstrings, `__doc__`, spacing, blank lines, trailing
  whitespace and line breaks carry nothing: the runnable file is a function of the tokens priced below.
  A `.py` file that does not parse, does not render (a literal `unparse` cannot write back), or is over 1 MiB
  is data, below, and runs as written (every byte of it is priced).
- **Tokens.** Every token of the rendering (name, keyword, operator, number, string, and the NEWLINE, INDENT and
  DEDENT that give its structure) costs `b = BITS_PER_TOKEN` = 8 bits while the vocabulary V (distinct
  keywords, operators, names, layout tokens, and one symbol each for "a number" and "a string") has at most
  256 symbols, else b = ⌈log₂ V⌉.
- **Names.** Each distinct name (not a keyword) also costs its spelling once, 8 bits per UTF-8 byte plus one
  byte to end it: a code point carries at most 21 bits and UTF-8 spends at least 8 bits per 7 it carries.
- **Numbers.** A numeric literal costs its token plus `literal_bits`: `BITS_PER_DIGIT` = 4 bits per significant
  digit (exponent digits included; 4 per hex digit, 3 per octal, 1 per binary), at least 4, no cap.
- **Text.** The characters of a string literal (as rendered, plus one byte to end it) and of a UTF-8 text file
  without NUL cost 8 bits per UTF-8 byte, except that a run of k ASCII digits costs 8 + 4k bits (its
  delimiter and its digits; leading zeros are digits). A file costs the cheaper of this and 8 bits per byte.
- **Other files**, arrays (`.npy`, `.npz`, `.safetensors`) included: 8 bits per byte of the file, plus one byte
  to end it. An array costs what its bytes can carry, whatever its dtype.
- **Paths.** Every file's relative path (folder names included) costs 8 bits per UTF-8 byte plus one byte to end
  it. The snapshot the children read holds only these files (no empty folders, no links, fixed modes).

In bits, with `b` the bits per token:

    DL = b·tokens + 8·name_bytes + literal_bits + 8·(data_bytes + path_bytes) + 32·fitted

It is a code: the symbols priced at 8 bits (tokens, bytes) and the digit runs (Σ_k 10^k·2^-(8+4k) ≈ 0.0065 of
the byte code space) satisfy Kraft's inequality, so no submission stores more bits than it is charged.

**Stored bits** are what the submission holds beyond its program's shape: `DL − b·tokens`, less the spelling of
dictionary names (`dictionary`: keywords, builtins, the public names of torch, numpy and math, the harness's API;
names a program uses because the libraries spell them so) and less the path of `replacement.py` (every submission
has it). So: its own names, literal digits, text, data, other paths, and fitted numbers at 32 bits. A submission is a *copy* when its stored bits reach
`BITS_PER_WEIGHT · fan_in` = 8 bits for each of the target's own weights (`fan_in.target_fan_in`): then it could
hold them quantised to int8. Bits, not elements: the same bytes cost the same in a `.npy`, a `.bin` or digits.
"""

from __future__ import annotations

import ast
import builtins
import functools
import io
import keyword
import math
import re
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONVENTION_VERSION = 2  # recorded with every description length; bump on any change to the rules below
BITS_PER_TOKEN = 8
BITS_PER_DIGIT = 4
BITS_PER_FITTED = 32
BITS_PER_DATA_BYTE = 8
BITS_PER_WEIGHT = 8  # the copy test: a target weight quantised to int8
META_FILE = "submission.toml"
CODE_FILE = "replacement.py"
#: The harness's API: the functions it calls, their arguments, what `task` holds (names every submission may use).
API_NAMES = ("replace", "fit", "task", "params", "target", "inputs", "image", "tokens", "self", "cls", "id",
             "model", "layer", "units", "target_shape")
MAX_CODE_BYTES = 1 << 20  # a larger .py file counts, whole, as data

#: A run of ASCII digits in text (`\d` would match other scripts' digits, each carrying more than 4 bits).
DIGIT_RUN = re.compile(r"[0-9]+")
#: Tokens that are structure, priced like any other (the rendering's layout follows from them).
LAYOUT_TOKENS = {tokenize.NEWLINE: "<newline>", tokenize.INDENT: "<indent>", tokenize.DEDENT: "<dedent>"}
FREE_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python ≥ 3.12 splits f-strings into tokens
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)
_PARSE_ERRORS = (SyntaxError, ValueError, tokenize.TokenError, UnicodeDecodeError, RecursionError, MemoryError)


@dataclass(frozen=True)
class Description:
    """What a submission folder costs to write down (fitted numbers are added by `total_bits`)."""

    code_tokens: int  # tokens of the rendered code (numbers and strings included, prose excluded)
    vocabulary: int  # distinct token symbols: keywords, operators, names, layout, "number", "string"
    name_bytes: int  # UTF-8 bytes of each distinct name, plus one each to end it
    own_name_bytes: int  # the same, for the names not in `dictionary()` (the submission's own choice)
    literal_numbers: int  # numeric literals in code, and digit runs in text
    literal_bits: int  # their digits' price (4 bits per decimal digit, no cap)
    data_bytes: int  # other characters of strings and text files, and bytes of other files
    path_bytes: int  # UTF-8 bytes of each file's relative path, plus one each to end it
    own_path_bytes: int  # the same, for every file but `replacement.py`

    @property
    def bits_per_token(self) -> int:
        """8 bits while the vocabulary fits a byte, else ⌈log₂ V⌉."""
        return max(BITS_PER_TOKEN, math.ceil(math.log2(self.vocabulary))) if self.vocabulary > 1 else BITS_PER_TOKEN

    @property
    def code_bits(self) -> int:
        return self.bits_per_token * self.code_tokens

    @property
    def name_bits(self) -> int:
        return BITS_PER_DATA_BYTE * self.name_bytes

    @property
    def data_bits(self) -> int:
        """Text, other files and paths: 8 bits per byte."""
        return BITS_PER_DATA_BYTE * (self.data_bytes + self.path_bytes)

    def total_bits(self, fitted_numbers: int) -> int:
        """DL = b·tokens + 8·name bytes + literal bits + 8·(data + path bytes) + 32·fitted numbers."""
        return (self.code_bits + self.name_bits + self.literal_bits + self.data_bits
                + BITS_PER_FITTED * fitted_numbers)

    def stored_bits(self, fitted_numbers: int) -> int:
        """Bits the submission stores, for the copy test: DL − b·tokens − dictionary names − `replacement.py`'s
        path = 8·(own names + data + other paths) + literal bits + 32·fitted."""
        return (BITS_PER_DATA_BYTE * (self.own_name_bytes + self.data_bytes + self.own_path_bytes)
                + self.literal_bits + BITS_PER_FITTED * fitted_numbers)

    def is_copy(self, fitted_numbers: int, fan_in: int) -> bool:
        """Stored bits ≥ 8 bits for each of the target's own weights."""
        return self.stored_bits(fitted_numbers) >= BITS_PER_WEIGHT * fan_in

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Rendering:
    """The canonical rendering of a Python file and, for tracebacks, its line → the original file's line."""

    source: bytes
    lines: dict[int, int] = field(default_factory=dict)


def literal_bits(text: str) -> int:
    """The price of one written number: 4 bits per significant digit (1 per binary, 3 per octal), at least 4.

    Significant digits: the mantissa's digits without leading zeros (a zero alone is one digit),
    plus the exponent's digits. `0.0125` → 3 digits, `1e-4` → 2, `784` → 3, `0x1F` → 2 (hex). No cap: a
    literal of 1,890 digits costs 7,560 bits.
    """
    text = text.replace("_", "").rstrip("jJ").lower()
    if text[:2] in ("0x", "0o", "0b"):
        per_digit = {"0x": 4, "0o": 3, "0b": 1}[text[:2]]
        digits = text[2:].lstrip("0") or "0"
        bits = per_digit * len(digits)
    else:
        mantissa, _, exponent = text.partition("e")
        significant = mantissa.replace(".", "").lstrip("0") or "0"
        bits = BITS_PER_DIGIT * (len(significant) + len(exponent.lstrip("+-")))
    return max(BITS_PER_DIGIT, bits)


def text_cost(text: str) -> tuple[int, int, int]:
    """(digit runs, their digit bits, other bytes) of text: each run of k ASCII digits is one delimiter byte and
    4k bits; every other character is its UTF-8 bytes (`surrogatepass`: a lone surrogate is 3 bytes too)."""
    runs = digits = 0
    for match in DIGIT_RUN.finditer(text):
        runs += 1
        digits += len(match.group())
    other = len(DIGIT_RUN.sub("", text).encode("utf-8", "surrogatepass"))
    return runs, BITS_PER_DIGIT * digits, other + runs


# -- the canonical rendering ---------------------------------------------------------------------------------------
class _DropProse(ast.NodeTransformer):
    """Remove every bare string statement; a statement list left empty gets `pass` (at the first one's place)."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                kept = [s for s in value if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                                 and isinstance(s.value.value, str))]
                if not kept and not isinstance(node, ast.Module):
                    kept = [ast.copy_location(ast.Pass(), value[0])]
                setattr(node, name, kept)
        return node


def render(source: bytes) -> Rendering | None:
    """The canonical rendering of Python source (module docstring); None when it is data (see the convention).

    The line map pairs the nodes of the rendered tree with those of the original, walked in the same order:
    each rendered line maps to the original line of the outermost node that starts on it.
    """
    if len(source) > MAX_CODE_BYTES:
        return None
    try:
        tree = _DropProse().visit(ast.parse(source))
        text = ast.unparse(tree)
        again = ast.parse(text)
        if ast.dump(again) != ast.dump(tree):
            return None  # not a faithful rendering: the file is data
        rendered = (text + "\n").encode("utf-8") if text else b""
        list(tokenize.tokenize(io.BytesIO(rendered).readline))
    except _PARSE_ERRORS:
        return None
    lines: dict[int, int] = {}
    for new, old in zip(ast.walk(again), ast.walk(tree)):
        if isinstance(new, (ast.stmt, ast.expr)) and isinstance(old, (ast.stmt, ast.expr)):
            lines.setdefault(new.lineno, old.lineno)
    return Rendering(rendered, lines)


DICTIONARY_FILE = Path(__file__).with_name("dictionary.txt")


@functools.cache
def dictionary() -> frozenset[str]:
    """Names no submission chooses, as committed in `dictionary.txt` (one a line; `live_dictionary` made it).

    Read from the file, not from the installed libraries, so that a description length is the same on every Python
    3.11+ and without importing torch: a bad submission is refused before torch loads. The file is checked
    against `live_dictionary` under the versions its first line names (`tests/test_description.py`)."""
    lines = DICTIONARY_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines[1:] if line)


def dictionary_versions() -> str:
    """The versions `dictionary.txt` was made under: its first line, `# python X.Y, numpy V, torch V`."""
    import sys

    import numpy
    import torch

    return f"# python {sys.version_info.major}.{sys.version_info.minor}, numpy {numpy.__version__}, torch {torch.__version__}"


def live_dictionary() -> frozenset[str]:
    """Names no submission chooses: keywords, builtins, the public names of `math`, `numpy`, `torch` (and
    `torch.nn`, `torch.nn.functional`, tensors, arrays, torch's named-tuple results, the builtin types), and the
    harness's API (`API_NAMES`), from the libraries installed now.
    Their spelling is in the description length but not in the stored bits (torch and numpy are pinned).

    `dir(torch)` grows as submodules load; `torch.onnx` is loaded here, as the harness's imports loaded it when
    the board was scored, so the set does not depend on what was imported before."""
    import numpy
    import torch
    import torch.onnx  # noqa: F401  (adds the name `onnx` to dir(torch))

    spaces: list[object] = [builtins, math, numpy, numpy.ndarray, numpy.linalg, numpy.random, torch, torch.nn,
                            torch.nn.functional, torch.Tensor, torch.linalg, torch.fft, torch.nn.Module,
                            dict, list, tuple, str, bytes, set, frozenset, int, float, complex, slice, range]
    spaces += [getattr(torch.return_types, n) for n in dir(torch.return_types) if not n.startswith("_")]
    names = {n for space in spaces for n in dir(space) if not n.startswith("_") or n.startswith("__")}
    return frozenset(names | set(keyword.kwlist) | set(keyword.softkwlist) | set(API_NAMES))


def write_dictionary(path: Path = DICTIONARY_FILE) -> None:
    """Remake `dictionary.txt` from the installed libraries (maintainers, after a pinned version changes; a change
    moves description lengths, so bump `CONVENTION_VERSION` and re-score):
    `python -c "from benchmark.harness.description import write_dictionary; write_dictionary()"`."""
    path.write_text("\n".join([dictionary_versions(), *sorted(live_dictionary())]) + "\n", encoding="utf-8")


# -- pricing ----------------------------------------------------------------------------------------------------------
class _Count:
    """The running counts of one folder: tokens by symbol, names, numbers, text."""

    def __init__(self) -> None:
        self.tokens = self.name_bytes = self.own_name_bytes = self.numbers = self.digit_bits = self.data = 0
        self.paths = self.own_paths = 0
        self.vocabulary: set[tuple[str, str]] = set()
        self.names: set[str] = set()

    def token(self, kind: str, symbol: str) -> None:
        self.tokens += 1
        self.vocabulary.add((kind, symbol))

    def name(self, spelling: str) -> None:
        self.token("name", spelling)
        if spelling not in self.names:
            self.names.add(spelling)
            size = len(spelling.encode("utf-8", "surrogatepass")) + 1
            self.name_bytes += size
            if spelling not in dictionary():
                self.own_name_bytes += size

    def text(self, text: str) -> None:
        runs, bits, other = text_cost(text)
        self.numbers, self.digit_bits, self.data = self.numbers + runs, self.digit_bits + bits, self.data + other

    def file(self, content: bytes) -> None:
        """A data file: the cheaper of text and bytes, plus one byte to end it."""
        self.data += 1
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and "\0" not in text:
            runs, bits, other = text_cost(text)
            if bits + 8 * other < 8 * len(content):
                self.numbers, self.digit_bits, self.data = self.numbers + runs, self.digit_bits + bits, self.data + other
                return
        self.data += len(content)

    def code(self, source: str) -> None:
        """The tokens of rendered source (its f-strings read through `ast`, the same on every Python)."""
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        starts = [0]
        for line in source.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        depth = begin = 0
        for token in tokens:
            if token.type == _FSTRING_START:
                depth += 1
                if depth == 1:
                    begin = starts[token.start[0] - 1] + token.start[1]
                continue
            if depth:
                if token.type == _FSTRING_END:
                    depth -= 1
                    if depth == 0:
                        self.fstring(source[begin : starts[token.end[0] - 1] + token.end[1]])
                continue
            if token.type in FREE_TOKENS or (token.type == tokenize.NEWLINE and not token.string):
                continue  # (an implied NEWLINE ends a fragment, such as an f-string's field: not written)
            if token.type in LAYOUT_TOKENS:
                self.token("layout", LAYOUT_TOKENS[token.type])
            elif token.type == tokenize.NAME:
                if keyword.iskeyword(token.string):
                    self.token("keyword", token.string)
                else:
                    self.name(token.string)
            elif token.type == tokenize.NUMBER:
                self.token("number", "")
                self.numbers += 1
                self.digit_bits += literal_bits(token.string)
            elif token.type == tokenize.STRING and "f" in _prefix(token.string):
                self.fstring(token.string)
            elif token.type == tokenize.STRING:
                self.token("string", "")
                self.text(_string_body(token.string))
                self.data += 1  # its end
            else:
                self.token("op", token.string)

    def fstring(self, literal: str) -> None:
        """One f-string: a string token, its text priced as text, its fields as code."""
        self.token("string", "")
        self.data += 1
        try:
            tree = ast.parse(literal, mode="eval").body
        except _PARSE_ERRORS:
            self.text(literal)  # not expected: price it as text, nothing free
            return

        def visit(node: ast.AST) -> None:
            for part in getattr(node, "values", []):
                if isinstance(part, ast.Constant):
                    self.text(str(part.value))
                elif isinstance(part, ast.FormattedValue):
                    self.code(ast.unparse(part.value))
                    if part.conversion != -1:
                        self.token("op", "!" + chr(part.conversion))
                    if part.format_spec is not None:
                        self.token("op", ":")
                        visit(part.format_spec)

        visit(tree)

    def description(self) -> Description:
        return Description(code_tokens=self.tokens, vocabulary=len(self.vocabulary), name_bytes=self.name_bytes,
                           own_name_bytes=self.own_name_bytes, literal_numbers=self.numbers,
                           literal_bits=self.digit_bits, data_bytes=self.data, path_bytes=self.paths,
                           own_path_bytes=self.own_paths)


def _prefix(token: str) -> str:
    """A string literal's prefix letters, lower case: '' for "x", 'rb' for rb"x", 'f' for f"x"."""
    return re.match(r"[A-Za-z]*", token).group().lower()  # type: ignore[union-attr]


def _string_body(token: str) -> str:
    """The characters between the quotes of a string literal token (its prefix dropped)."""
    body = token[len(_prefix(token)):]
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    return body[len(quote) : len(body) - len(quote)]


@dataclass(frozen=True)
class Measured:
    """A folder's description length, the files its code sees, and each rendered file's line map."""

    description: Description
    runnable: dict[str, bytes]
    line_maps: dict[str, dict[int, int]]


def measure_folder(files: dict[str, bytes]) -> Measured:
    """The description length of a submission folder (relative path → bytes), by the convention above; the folder
    as its code sees it (every Python file that renders, rendered; every other file as written; no metadata file);
    and the rendered files' line maps (rendered line → original line). Each file is parsed once."""
    count = _Count()
    runnable: dict[str, bytes] = {}
    line_maps: dict[str, dict[int, int]] = {}
    for name, content in sorted(files.items()):
        if name == META_FILE:
            continue
        size = len(name.encode("utf-8", "surrogatepass")) + 1
        count.paths += size
        count.own_paths += 0 if name == CODE_FILE else size
        rendering = render(content) if name.endswith(".py") else None
        if rendering is None:
            runnable[name] = content
            count.file(content)
            continue
        runnable[name], line_maps[name] = rendering.source, rendering.lines
        count.code(rendering.source.decode("utf-8"))
    return Measured(count.description(), runnable, line_maps)


def measure(files: dict[str, bytes]) -> Description:
    """The description length of a submission folder (see `measure_folder`)."""
    return measure_folder(files).description


def runnable_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """The folder as its code sees it (see `measure_folder`)."""
    return measure_folder(files).runnable

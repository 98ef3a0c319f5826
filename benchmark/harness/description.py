"""Description length: how many bits it takes to write a submission down, prose free, numbers priced.

The convention (also in the README), for every file of a submission folder
except `submission.toml` (its metadata, which the code never sees):

- **Code.** Each `.py` file that parses is read as Python tokens. Comments,
  docstrings and other bare string statements are prose: they cost nothing,
  and the harness runs the code with them blanked (`blank_prose`), so prose
  cannot smuggle data to the code. Layout (newlines, indentation) is free too.
  A `.py` file that does not parse (or is over 1 MiB) is data, below.
  Every other name, keyword and operator token costs `BITS_PER_TOKEN` = 8 bits,
  whatever its spelling, so renaming a variable changes nothing. (Code can read
  its own names back, so the characters of a name beyond the 32nd are data.)
- **Numbers.** Every numeric literal is a stored number, priced at the
  precision it is written in: `BITS_PER_DIGIT` = 4 bits per significant digit
  (exponent digits included; 4 bits per hex digit, 3 per octal, 1 per binary),
  at least 4 and at most `BITS_PER_FITTED` = 32, the price of a number `fit`
  returns (a float32). Numbers written inside strings and text files count the
  same way; each element of an `.npy`, `.npz` or `.safetensors` array is a
  stored number at its dtype's width.
- **Other data.** Every other character of a string literal or a text file,
  every byte of an array file that is not an element (headers, padding), and
  every byte of any other file, costs 8 bits, and counts as a quarter of a
  stored number for the copy test (4 bytes hold a float32).

So, in bits:

    DL = 8·tokens + Σ_literals bits(literal) + 8·data_bytes + 32·fitted

A submission is a *copy* when its stored numbers,
`fitted + literal + ⌊data_bytes / 4⌋`, reach the target's fan-in from its
inputs (`fan_in.target_fan_in`): then it could hold the target's own weights.
"""

from __future__ import annotations

import ast
import io
import json
import math
import re
import struct
import tokenize
import zipfile
from dataclasses import asdict, dataclass

import numpy as np

CONVENTION_VERSION = 1  # recorded with every description length; bump on any change to the rules below
BITS_PER_TOKEN = 8
BITS_PER_DIGIT = 4
BITS_PER_FITTED = 32
BITS_PER_DATA_BYTE = 8
BYTES_PER_NUMBER = 4  # opaque data counts as one stored number per 4 bytes (a float32)
META_FILE = "submission.toml"
ARRAY_SUFFIXES = (".npy", ".npz", ".safetensors")
MAX_CODE_BYTES = 1 << 20  # a larger .py file counts, whole, as data
MAX_FREE_NAME = 32  # characters of a name that are free; the rest are data (the code can read names back)

#: A decimal number written in text: digits with an optional fraction and exponent (its sign is data).
TEXT_NUMBER = re.compile(r"(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?")
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                     "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                  tokenize.ENCODING, tokenize.ENDMARKER}
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python ≥ 3.12 splits f-strings into tokens
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)


@dataclass(frozen=True)
class Description:
    """What a submission folder costs to write down (fitted numbers are added by `total_bits`)."""

    code_tokens: int  # names, keywords, operators and string literals of the code (not numbers, not prose)
    literal_numbers: int  # numeric literals in code and text, and array elements in data files
    literal_bits: int  # their price at the precision written (dtype width for arrays)
    data_bytes: int  # other characters of strings and text files, and bytes of other files

    @property
    def code_bits(self) -> int:
        return BITS_PER_TOKEN * self.code_tokens

    @property
    def data_bits(self) -> int:
        return BITS_PER_DATA_BYTE * self.data_bytes

    def total_bits(self, fitted_numbers: int) -> int:
        """DL = 8·tokens + literal bits + 8·data bytes + 32·fitted numbers."""
        return self.code_bits + self.literal_bits + self.data_bits + BITS_PER_FITTED * fitted_numbers

    def stored_numbers(self, fitted_numbers: int) -> int:
        """Numbers the submission stores, for the copy test: fitted + literal + ⌊data bytes / 4⌋."""
        return fitted_numbers + self.literal_numbers + self.data_bytes // BYTES_PER_NUMBER

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def literal_bits(text: str) -> int:
    """The price of one written number: 4 bits per significant digit (1 per binary, 3 per octal), in [4, 32].

    Significant digits: the mantissa's digits without leading zeros (a zero alone is one digit),
    plus the exponent's digits. `0.0125` → 3 digits, `1e-4` → 2, `784` → 3, `0x1F` → 2 (hex).
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
    return max(BITS_PER_DIGIT, min(BITS_PER_FITTED, bits))


def _text_cost(text: str) -> tuple[int, int, int]:
    """(numbers, their bits, other bytes) of text: the numbers written in it, and everything else as data."""
    numbers = bits = 0
    rest = 0
    position = 0
    for match in TEXT_NUMBER.finditer(text):
        rest += len(text[position : match.start()].encode())
        numbers += 1
        bits += literal_bits(match.group())
        position = match.end()
    rest += len(text[position:].encode())
    return numbers, bits, rest


def _prefix(token: str) -> str:
    """A string literal's prefix letters, lower case: '' for "x", 'rb' for rb"x", 'f' for f"x"."""
    return re.match(r"[A-Za-z]*", token).group().lower()  # type: ignore[union-attr]


def _string_body(token: str) -> str:
    """The characters between the quotes of a string literal token (its prefix dropped)."""
    body = token[len(_prefix(token)):]
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    return body[len(quote) : len(body) - len(quote)]


def _prose_spans(tokens: list[tokenize.TokenInfo]) -> set[int]:
    """Indices of the string tokens that form bare string statements (docstrings and the like).

    A statement is prose when it is only plain string literals (not f-strings, which run code): its first
    token starts a logical line and the next significant token ends the statement.
    """
    significant = [i for i, t in enumerate(tokens) if t.type not in (tokenize.COMMENT, tokenize.NL)]
    prose: set[int] = set()
    k = 0
    while k < len(significant):
        i = significant[k]
        previous = tokens[significant[k - 1]] if k else None
        starts_line = previous is None or previous.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                                           tokenize.ENCODING) or previous.string == ";"
        if tokens[i].type == tokenize.STRING and starts_line:
            run = k
            while run < len(significant) and tokens[significant[run]].type == tokenize.STRING:
                run += 1
            after = tokens[significant[run]] if run < len(significant) else None
            plain = all("f" not in _prefix(tokens[significant[j]].string) for j in range(k, run))
            if plain and (after is None or after.type in (tokenize.NEWLINE, tokenize.ENDMARKER) or after.string == ";"):
                prose.update(significant[k:run])
            k = run
        else:
            k += 1
    return prose


def _line_starts(text: str) -> list[int]:
    """The offset in `text` at which each line starts (then one past the end)."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _tokens(source: bytes) -> tuple[list[tokenize.TokenInfo], str] | None:
    """The file's tokens and its decoded text, or None when it is not Python this interpreter parses.

    A file over MAX_CODE_BYTES is not parsed (the harness parses untrusted text): it counts, whole, as data.
    """
    if len(source) > MAX_CODE_BYTES:
        return None
    try:
        ast.parse(source)
        tokens = list(tokenize.tokenize(io.BytesIO(source).readline))
    except (SyntaxError, ValueError, tokenize.TokenError, UnicodeDecodeError, RecursionError, MemoryError):
        return None
    encoding = tokens[0].string if tokens and tokens[0].type == tokenize.ENCODING else "utf-8"
    return tokens, source.decode(encoding)


def _blank(tokens: list[tokenize.TokenInfo], text: str) -> bytes | None:
    """`text` with every comment and prose string emptied, line numbers kept (see `blank_prose`); None if the
    result does not parse."""
    starts = _line_starts(text)

    def offset(position: tuple[int, int]) -> int:
        row, col = position
        return starts[row - 1] + col if row - 1 < len(starts) else len(text)

    edits: list[tuple[int, int, str]] = []
    for index in _prose_spans(tokens):
        token = tokens[index]
        lines = token.end[0] - token.start[0]
        edits.append((offset(token.start), offset(token.end), '""' if lines == 0 else '"""' + "\n" * lines + '"""'))
    for token in tokens:
        if token.type == tokenize.COMMENT:
            edits.append((offset(token.start), offset(token.end), "#"))
    pieces, position = [], 0
    for start, end, replacement in sorted(edits):  # the spans never overlap: one pass, in order
        pieces += [text[position:start], replacement]
        position = end
    blanked = ("".join(pieces) + text[position:]).encode("utf-8")
    try:
        ast.parse(blanked)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # a construct the blanker does not handle: the file runs, and counts, as written
    return blanked


def blank_prose(source: bytes) -> bytes | None:
    """The code with every comment and prose string emptied, line numbers kept; None if it does not parse.

    A comment becomes `#`; a docstring becomes `""` (or a triple-quoted string of only its newlines),
    so a traceback points at the same lines. The result is UTF-8 (a coding cookie is a comment too).
    """
    parsed = _tokens(source)
    return None if parsed is None else _blank(*parsed)


def _fstring_cost(literal: str) -> tuple[int, int, int, int]:
    """(tokens, numbers, number bits, data bytes) of one f-string: 1 token, its text as data, its fields as code.

    Read through `ast`, so the count is the same whether the interpreter tokenizes f-strings whole (3.11)
    or in parts (3.12+), and a renamed variable inside a field changes nothing.
    """
    tokens, numbers, bits, data = 1, 0, 0, 0

    def visit(node: ast.AST) -> None:
        nonlocal tokens, numbers, bits, data
        for part in getattr(node, "values", []):
            if isinstance(part, ast.Constant):
                found, found_bits, rest = _text_cost(str(part.value))
                numbers, bits, data = numbers + found, bits + found_bits, data + rest
            elif isinstance(part, ast.FormattedValue):
                cost = _code_cost(ast.unparse(part.value).encode())
                if cost is not None:
                    tokens, numbers, bits, data = tokens + cost[0], numbers + cost[1], bits + cost[2], data + cost[3]
                if part.format_spec is not None:
                    visit(part.format_spec)

    try:
        tree = ast.parse(literal, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        found, found_bits, rest = _text_cost(literal)  # not expected: price it as text, nothing free
        return 1, found, found_bits, rest
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            visit(node)
            break
    return tokens, numbers, bits, data


def _code_cost(source: bytes) -> tuple[int, int, int, int] | None:
    """(tokens, numbers, number bits, data bytes) of Python source; None if it does not parse."""
    parsed = _tokens(source)
    return None if parsed is None or _blank(*parsed) is None else _token_cost(*parsed)


def _token_cost(tokens: list[tokenize.TokenInfo], text: str) -> tuple[int, int, int, int]:
    """(tokens, numbers, number bits, data bytes) of a parsed file's tokens (see the module docstring)."""
    starts = _line_starts(text)
    prose = _prose_spans(tokens)
    n_tokens = numbers = bits = data = 0
    depth, fstring_start = 0, 0  # Python ≥ 3.12: the f-string being skipped over, read whole at its end
    for index, token in enumerate(tokens):
        if token.type == _FSTRING_START:
            depth += 1
            if depth == 1:
                fstring_start = starts[token.start[0] - 1] + token.start[1]
            continue
        if depth:
            if token.type == _FSTRING_END:
                depth -= 1
                if depth == 0:
                    cost = _fstring_cost(text[fstring_start : starts[token.end[0] - 1] + token.end[1]])
                    n_tokens, numbers, bits, data = n_tokens + cost[0], numbers + cost[1], bits + cost[2], data + cost[3]
            continue
        if token.type in SKIPPED_TOKENS or index in prose:
            continue
        if token.type == tokenize.NUMBER:
            numbers += 1
            bits += literal_bits(token.string)
            continue
        if token.type == tokenize.NAME and len(token.string) > MAX_FREE_NAME:
            cost = (1, 0, 0, len(token.string.encode()) - MAX_FREE_NAME)  # a name long enough to carry data
        elif token.type == tokenize.STRING and "f" in _prefix(token.string):
            cost = _fstring_cost(token.string)
        elif token.type == tokenize.STRING:
            found, found_bits, rest = _text_cost(_string_body(token.string))
            cost = (1, found, found_bits, rest)
        else:
            cost = (1, 0, 0, 0)
        n_tokens, numbers, bits, data = n_tokens + cost[0], numbers + cost[1], bits + cost[2], data + cost[3]
    return n_tokens, numbers, bits, data


def _array_cost(name: str, data: bytes) -> tuple[int, int, int] | None:
    """(elements, bits, other bytes) of an array file; None if it is not a well-formed array file.

    Elements are priced at their dtype's width. Every byte of the file that is not an element (headers,
    metadata, padding, anything appended) is other data, so nothing rides along for free.
    """
    try:
        if name.endswith(".safetensors"):
            (size,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8 : 8 + size])
            numbers = bits = payload = 0
            for key, entry in header.items():
                if key == "__metadata__":
                    continue
                shape, (start, end), width = entry["shape"], entry["data_offsets"], SAFETENSORS_BYTES[entry["dtype"]]
                if not all(isinstance(v, int) and v >= 0 for v in (*shape, start, end)):
                    return None
                count = math.prod(shape)
                if end - start != count * width or 8 + size + end > len(data):
                    return None
                numbers, bits, payload = numbers + count, bits + 8 * width * count, payload + end - start
            return numbers, bits, max(0, len(data) - payload)
        if name.endswith(".npz"):
            numbers = bits = other = 0
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for info in archive.infolist():
                    raw = archive.read(info)
                    array = np.load(io.BytesIO(raw), allow_pickle=False)
                    numbers, bits = numbers + int(array.size), bits + 8 * array.nbytes
                    other += len(raw) - array.nbytes
                other += len(data) - sum(info.compress_size for info in archive.infolist())
            return numbers, bits, max(0, other)
        array = np.load(io.BytesIO(data), allow_pickle=False)
        return int(array.size), 8 * array.nbytes, len(data) - array.nbytes
    except (ValueError, KeyError, TypeError, OSError, EOFError, struct.error, zipfile.BadZipFile, json.JSONDecodeError,
            AttributeError, OverflowError):
        return None


def measure_and_blank(files: dict[str, bytes]) -> tuple[Description, dict[str, bytes]]:
    """The description length of a submission folder (relative path → bytes), by the convention above, and the
    folder as its code sees it: prose blanked from every Python file that parses, no metadata file.

    What is free in the description length is exactly what the code cannot read. Each file is parsed once.
    """
    tokens = numbers = bits = data = 0
    runnable: dict[str, bytes] = {}
    for name, content in sorted(files.items()):
        if name == META_FILE:
            continue
        runnable[name] = content
        parsed = _tokens(content) if name.endswith(".py") else None
        blanked = None if parsed is None else _blank(*parsed)
        if parsed is not None and blanked is not None:
            runnable[name] = blanked
            code = _token_cost(*parsed)
            tokens, numbers, bits, data = tokens + code[0], numbers + code[1], bits + code[2], data + code[3]
            continue
        array = _array_cost(name, content) if name.endswith(ARRAY_SUFFIXES) else None
        if array is not None:
            numbers, bits, data = numbers + array[0], bits + array[1], data + array[2]
            continue
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and "\0" not in text:
            found, found_bits, rest = _text_cost(text)
            numbers, bits, data = numbers + found, bits + found_bits, data + rest
        else:
            data += len(content)
    return Description(code_tokens=tokens, literal_numbers=numbers, literal_bits=bits, data_bytes=data), runnable


def measure(files: dict[str, bytes]) -> Description:
    """The description length of a submission folder (see `measure_and_blank`)."""
    return measure_and_blank(files)[0]


def runnable_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """The folder as its code sees it (see `measure_and_blank`)."""
    return measure_and_blank(files)[1]

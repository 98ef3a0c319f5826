"""The description length is a code (issue 17, §1): every byte a submission's code can read back costs at least the
bits it can carry, and the copy test counts bits, whatever the file format.

Each attack of the issue hides the 785 weights of `mnist-mlp/fc1:13` (its 784 input weights and bias, quantised to
int8: 6,280 bits) in one channel: a single integer literal, digits in a text file, file and folder names, layout,
wide-character identifiers, a wide structured dtype, and the same bytes as `.npy` and `.bin`. Each must cost at least
6,280 bits and be a copy. A property test then hides random bytes in every channel and checks the description length
grows by at least their information content. Layout, which is free, is shown unreadable: the code runs rendered.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, write_submission

from benchmark.harness.description import BITS_PER_WEIGHT, measure, render, runnable_files

FAN_IN = 785  # mnist-mlp fc1:13 from the image: 784 weights and a bias
CODE = b"import numpy as np\n\n\ndef replace(image, params):\n    return image\n"


@pytest.fixture(scope="module")
def unit_bytes() -> bytes:
    """fc1:13's weights and bias, quantised to int8 (one byte each)."""
    from safetensors.numpy import load_file

    state = load_file(str(ROOT / "checkpoints" / "mnist-mlp.safetensors"))
    w = np.concatenate([state["fc1_linear.weight"][13], state["fc1_linear.bias"][13:14]]).astype(np.float64)
    q = np.clip(np.round(w / np.abs(w).max() * 127), -127, 127).astype(np.int8)
    assert q.size == FAN_IN and len(set(q.tolist())) > 50
    return q.tobytes()


def assert_copy(files: dict[str, bytes], payload_bits: int) -> None:
    d = measure(files)
    baseline = measure({"replacement.py": CODE})
    assert d.total_bits(0) - baseline.total_bits(0) >= payload_bits, (d, baseline)
    assert d.is_copy(0, FAN_IN), (d.stored_bits(0), BITS_PER_WEIGHT * FAN_IN)


def test_the_weights_as_one_integer_literal_are_a_copy(unit_bytes):
    literal = str(int.from_bytes(unit_bytes, "big"))
    files = {"replacement.py": CODE + f"W = {literal}\n".encode()}
    assert_copy(files, 8 * FAN_IN)
    assert measure(files).total_bits(0) >= 8 * FAN_IN
    hex_files = {"replacement.py": CODE + f"W = 0x{unit_bytes.hex()}\n".encode()}
    assert_copy(hex_files, 8 * FAN_IN)


def test_the_same_digits_in_a_text_file_are_a_copy(unit_bytes):
    digits = str(int.from_bytes(unit_bytes, "big")).encode()
    assert_copy({"replacement.py": CODE, "w.txt": digits}, 8 * FAN_IN)
    spaced = " ".join(str(b) for b in unit_bytes).encode()  # one number per weight
    assert_copy({"replacement.py": CODE, "w.csv": spaced}, 8 * FAN_IN)


def test_data_in_file_and_folder_names_is_priced(unit_bytes):
    hexed = unit_bytes.hex()
    files = {"replacement.py": CODE}
    for i in range(0, len(hexed), 200):  # folder names and file names, 100 bytes of weights each
        files[f"{hexed[i:i + 100]}/{hexed[i + 100:i + 200]}.txt"] = b""
    assert_copy(files, 8 * FAN_IN)


def test_long_identifiers_in_wide_characters_are_priced(unit_bytes):
    name = "".join(chr(0x4E00 + b) for b in unit_bytes)  # one CJK ideograph per weight: 3 UTF-8 bytes each
    files = {"replacement.py": CODE + f"{name} = 1\n".encode()}
    assert render(files["replacement.py"]) is not None  # it is code, not data
    assert_copy(files, 8 * FAN_IN)
    many = CODE + b"".join(f"v{chr(0x4E00 + b)}{i} = 0\n".encode() for i, b in enumerate(unit_bytes))
    assert_copy({"replacement.py": many}, 8 * FAN_IN)  # one short name per weight


def test_a_wide_structured_dtype_costs_its_bytes(unit_bytes):
    array = np.frombuffer(unit_bytes, dtype=np.dtype([("w", "V785")]))  # one element holding every weight
    buffer = io.BytesIO()
    np.save(buffer, array)
    assert_copy({"replacement.py": CODE, "w.npy": buffer.getvalue()}, 8 * FAN_IN)


def test_the_same_bytes_cost_the_same_as_npy_and_bin_up_to_the_header(unit_bytes):
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(unit_bytes, np.int8))
    npy, bin_ = buffer.getvalue(), unit_bytes
    as_npy = measure({"replacement.py": CODE, "w.npy": npy})
    as_bin = measure({"replacement.py": CODE, "w.bin": bin_})
    assert as_npy.is_copy(0, FAN_IN) and as_bin.is_copy(0, FAN_IN)
    assert as_npy.stored_bits(0) - as_bin.stored_bits(0) == 8 * (len(npy) - len(bin_))  # the header, nothing else


LAYOUT_CODE = '''import os

def replace(image, params):
    """Read the bits back from trailing whitespace: a space is 0, a tab is 1."""
    bits = []
    for line in open(os.path.abspath(__file__)).read().splitlines():
        stripped = line.rstrip(" \\t")
        bits += [1 if c == "\\t" else 0 for c in line[len(stripped):]]
    return bits
'''


def test_layout_is_free_because_the_code_cannot_read_it_back(unit_bytes, tmp_path):
    bits = "".join(f"{b:08b}" for b in unit_bytes[:40])
    lines = LAYOUT_CODE.splitlines()
    smuggled = "\n".join(line + "".join(" \t"[int(c)] for c in bits[i * 8 : i * 8 + 8]) if i < len(bits) // 8 else line
                         for i, line in enumerate(lines + ["pass"] * 40)) + "\n"
    plain = "\n".join(lines + ["pass"] * 40) + "\n"
    assert measure({"replacement.py": smuggled.encode()}) == measure({"replacement.py": plain.encode()})
    run = subprocess.run  # the real runnable file, run as the children run it

    def read_back(source: str) -> list[int]:
        folder = tmp_path / str(abs(hash(source)))
        folder.mkdir()
        (folder / "replacement.py").write_bytes(runnable_files({"replacement.py": source.encode()})["replacement.py"])
        probe = f"import sys; sys.path.insert(0, {str(folder)!r}); import replacement; print(replacement.replace(0, 0))"
        return eval(run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)  # noqa: S307

    written = tmp_path / "written.py"
    written.write_text(smuggled)
    as_written = eval(run([sys.executable, "-c", f"import runpy; print(runpy.run_path({str(written)!r})"  # noqa: S307
                           f"['replace'](0, 0))"], capture_output=True, text=True, check=True).stdout)
    assert "".join(map(str, as_written)) == bits  # as written, the layout holds the bits…
    assert read_back(smuggled) == read_back(plain) == []  # …as run, it holds nothing


CHANNELS = {
    "integer literal": lambda data: {"replacement.py": CODE + b"W = %d\n" % _number(data)},
    "string literal": lambda data: {"replacement.py": CODE + f"W = {data.decode('latin-1')!r}\n".encode()},
    "digits in text": lambda data: {"replacement.py": CODE, "w.txt": b"%d" % _number(data)},
    "binary file": lambda data: {"replacement.py": CODE, "w.bin": data},
    "npy": lambda data: {"replacement.py": CODE, "w.npy": _npy(data)},
    "file name": lambda data: {"replacement.py": CODE, data.hex() + ".txt": b""},
    "identifier": lambda data: {"replacement.py": CODE + "".join(chr(0x4E00 + b) for b in b"\x01" + data).encode()
                                + b" = 0\n"},
    "many identifiers": lambda data: {"replacement.py": CODE + b"".join(
        f"{chr(0x4E00 + b)}{i} = 0\n".encode() for i, b in enumerate(data))},
}


def _number(data: bytes) -> int:
    """The bytes as one integer (a leading 1 keeps leading zero bytes)."""
    return int.from_bytes(b"\x01" + data, "big")


def _npy(data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(data, np.uint8))
    return buffer.getvalue()


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_hidden_random_bytes_cost_at_least_their_bits_in_every_channel(channel):
    """For random byte strings of many lengths: DL(with the bytes) − DL(without) ≥ 8 bits per byte hidden, and the
    stored bits grow as much (so the copy test sees them)."""
    rng = random.Random(17)
    empty = measure({"replacement.py": CODE})
    for size in (1, 2, 3, 5, 8, 13, 40, 100, 300):
        data = bytes(rng.randrange(256) for _ in range(size))
        d = measure(CHANNELS[channel](data))
        assert d.total_bits(0) - empty.total_bits(0) >= 8 * size, (channel, size, d)
        assert d.stored_bits(0) - empty.stored_bits(0) >= 8 * size, (channel, size, d)


def test_a_submission_traceback_points_at_the_lines_as_written(tmp_path, cli, data_dir, session_cache):
    """The children run the rendering (other line numbers); the harness maps the traceback back to the source."""
    from benchmark.sandbox.process import isolation_problem

    if isolation_problem() is not None:
        pytest.skip(f"no process isolation here: {isolation_problem()}")
    source = '"""A docstring\n\nof several lines."""\n\nimport torch   # a comment\n\n\n\ndef replace(image, task):\n' \
             '    """Docstring."""\n\n    x = 1\n\n    raise RuntimeError("boom at line 14")\n'
    assert source.splitlines()[13].strip().startswith("raise")
    folder = write_submission(tmp_path / "raises", source)
    proc = cli("score", str(folder), "--task", "digits-mlp/fc1:17", "--no-record", "--data-dir", str(data_dir))
    assert proc.returncode == 1, proc.stderr
    assert "boom at line 14" in proc.stderr and "replacement.py\", line 14" in proc.stderr, proc.stderr

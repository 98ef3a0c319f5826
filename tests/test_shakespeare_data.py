"""Tiny Shakespeare: the vocabulary, the 90/10 split, the non-overlapping windows, the checks on the file, and
`replacebench fetch tinyshakespeare` run as a real subprocess against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, run_main
from test_cli import assert_user_error

from benchmark.data import shakespeare as ts
from benchmark.errors import UserError

N_CHARS, N_TRAIN, N_VAL = 1_115_394, 1_003_854, 111_540


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not os.environ.get("REPLACEBENCH_DATA"):
        pytest.skip("REPLACEBENCH_DATA is not set: point it at the shared data directory to run the Tiny Shakespeare tests")
    root = Path(os.environ["REPLACEBENCH_DATA"]).resolve()
    if not (root / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"{root}/tinyshakespeare/input.txt is missing: run `replacebench fetch tinyshakespeare`")
    return root


@pytest.fixture(scope="module")
def text(data_dir) -> str:
    return (data_dir / "tinyshakespeare" / "input.txt").read_bytes().decode("ascii")


# ---------------------------------------------------------------- the corpus, the vocabulary, the split


def test_the_corpus_is_the_published_file(data_dir, text):
    raw = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()
    assert len(raw) == N_CHARS == ts.TINYSHAKESPEARE_BYTES
    assert hashlib.sha256(raw).hexdigest() == ts.TINYSHAKESPEARE_SHA256
    readme = data_dir / "README.md"  # the shared data's README records the sum independently
    assert not readme.is_file() or ts.TINYSHAKESPEARE_SHA256 in readme.read_text()
    assert ts.read_corpus(data_dir) == text


def test_the_vocabulary_is_the_sorted_set_of_the_corpus_characters(text):
    assert len(ts.VOCAB) == 65 and ts.VOCAB == "".join(sorted(set(text)))


def test_encode_decode_round_trip(text):
    ids = ts.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (N_CHARS,) and ids.min() == 0 and ids.max() == 64
    assert ts.decode(ids) == text
    assert [ts.VOCAB[i] for i in ids[:50]] == list(text[:50])  # id = the character's index in VOCAB
    assert ts.decode(ts.encode("First Citizen:\n")) == "First Citizen:\n"
    for bad, char in (("tab\there", "\t"), ("caf\u00e9", "\u00e9"), ("#", "#")):  # é must not become "?"
        with pytest.raises(UserError, match=re.escape(f"character {char!r} is not one of the corpus's 65")):
            ts.encode(bad)


def test_the_split_is_the_first_90_percent_and_the_rest(data_dir, text):
    train, val = ts.split_ids("train", data_dir), ts.split_ids("val", data_dir)
    assert (len(train), len(val)) == (N_TRAIN, N_VAL) and N_TRAIN == int(0.9 * N_CHARS)
    assert ts.decode(train) == text[:N_TRAIN] and ts.decode(val) == text[N_TRAIN:]
    with pytest.raises(UserError, match="use 'train' or 'val'"):
        ts.split_ids("test", data_dir)


@pytest.mark.parametrize("split,n_windows", [("val", 864), ("train", 7781)])
def test_windows_do_not_overlap_and_targets_are_the_next_characters(data_dir, split, n_windows):
    ids = ts.split_ids(split, data_dir)
    examples = ts.open_split(split, data_dir)
    inputs, targets = examples.inputs, examples.labels()
    assert len(examples) == n_windows == len(ids) // 129
    assert tuple(inputs.shape) == tuple(targets.shape) == (n_windows, 128)
    assert str(inputs.dtype) == "torch.int64" and targets.dtype == np.int64
    inputs = inputs.numpy()
    assert np.array_equal(targets[:, :-1], inputs[:, 1:])  # the target at i is the input at i + 1
    # window i is characters [129 i, 129 i + 129): laid end to end they are the split's start, each character once
    blocks = np.concatenate([inputs[:, :1], targets], axis=1)  # [n, 129]
    assert np.array_equal(blocks.ravel(), ids[: n_windows * 129])
    assert len(ids) - n_windows * 129 < 129  # what is left over is less than one window


def test_content_hash_is_per_split_and_as_documented(data_dir):
    hashes = {}
    for split in ts.SPLITS:
        examples = ts.open_split(split, data_dir)
        digest = hashlib.sha256(f"tinyshakespeare/{split}/w129\n".encode())
        digest.update(examples.inputs.numpy().astype(np.int64).tobytes())
        digest.update(examples.labels().astype(np.int64).tobytes())
        assert examples.content_hash() == digest.hexdigest()
        hashes[split] = examples.content_hash()
    assert hashes["train"] != hashes["val"]
    assert ts.open_split("val", data_dir).content_hash() == hashes["val"]


# ---------------------------------------------------------------- a missing or altered file


def _one_line_naming_fetch(error: UserError) -> str:
    message = str(error)
    assert "\n" not in message and "replacebench fetch tinyshakespeare" in message
    return message


def test_a_missing_corpus_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError) as info:
        ts.open_split("val", tmp_path)
    assert str(tmp_path / "tinyshakespeare" / "input.txt") in _one_line_naming_fetch(info.value)


def test_an_edited_copy_is_a_one_line_user_error(data_dir, tmp_path):
    corpus = tmp_path / "tinyshakespeare" / "input.txt"
    corpus.parent.mkdir()
    raw = bytearray((data_dir / "tinyshakespeare" / "input.txt").read_bytes())
    raw[1000] = ord("x") if raw[1000] != ord("x") else ord("y")  # still 65 characters, still ASCII
    corpus.write_bytes(bytes(raw))
    for split in ts.SPLITS:
        with pytest.raises(UserError, match="sha256") as info:
            ts.open_split(split, tmp_path)
        assert "not the Tiny Shakespeare corpus" in _one_line_naming_fetch(info.value)


def test_the_cli_names_the_fetch_command_when_the_corpus_is_missing(tmp_path):
    proc = run_main("train", "shakespeare-char", "--data-dir", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "out"))
    assert_user_error(proc, "Tiny Shakespeare not found", "replacebench fetch tinyshakespeare")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- `replacebench fetch tinyshakespeare`


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def serve():
    """`serve(folder)`: a base URL on 127.0.0.1 where http.server serves `folder` (stopped after the test)."""
    servers = []

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def _listing(root: Path) -> list[str]:
    folder = root / "tinyshakespeare"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def test_fetch_over_http(data_dir, serve, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(data_dir / "tinyshakespeare" / "input.txt", mirror / "input.txt")
    url, root = serve(mirror), tmp_path / "data"
    proc = run_cli("fetch", "tinyshakespeare", "--url", url, "--data-dir", str(root))  # a real subprocess, once
    assert proc.returncode == 0, proc.stderr
    dest = root / "tinyshakespeare" / "input.txt"
    assert proc.stdout == f"tinyshakespeare: {dest} (sha256 {ts.TINYSHAKESPEARE_SHA256[:12]}… verified)\n"
    assert _listing(root) == ["input.txt"]  # nothing left behind
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == ts.TINYSHAKESPEARE_SHA256
    assert len(ts.open_split("val", root)) == 864
    # a second fetch (the base URL without its slash) finds the file in place and rewrites nothing
    before = dest.stat().st_mtime_ns
    proc = run_main("fetch", "tinyshakespeare", "--url", url.rstrip("/"), "--data-dir", str(root))
    assert proc.returncode == 0, proc.stderr
    assert "already present, sha256 verified" in proc.stdout and dest.stat().st_mtime_ns == before


def test_fetch_a_corrupt_served_copy_leaves_nothing(data_dir, serve, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    raw = bytearray((data_dir / "tinyshakespeare" / "input.txt").read_bytes())
    raw[-2] = ord("X")
    (mirror / "input.txt").write_bytes(bytes(raw))
    url, root = serve(mirror), tmp_path / "data"
    proc = run_main("fetch", "tinyshakespeare", "--url", url, "--data-dir", str(root))
    assert_user_error(proc, f"{url}input.txt has sha256", f"expected {ts.TINYSHAKESPEARE_SHA256}", "corrupt")
    assert proc.stdout == "" and _listing(root) == []  # no partial or temporary file
    # an edited copy already in the data dir is replaced by a good download, never by a bad one
    (root / "tinyshakespeare" / "input.txt").write_bytes(b"junk")
    proc = run_main("fetch", "tinyshakespeare", "--url", url, "--data-dir", str(root))
    assert_user_error(proc, "has sha256")
    assert _listing(root) == ["input.txt"] and (root / "tinyshakespeare" / "input.txt").read_bytes() == b"junk"
    shutil.copyfile(data_dir / "tinyshakespeare" / "input.txt", mirror / "input.txt")
    proc = run_main("fetch", "tinyshakespeare", "--url", url, "--data-dir", str(root))
    assert proc.returncode == 0, proc.stderr
    assert ts.read_corpus(root) == ts.read_corpus(data_dir)


def test_fetch_from_an_unreachable_url(serve, tmp_path):
    root = tmp_path / "data"
    proc = run_main("fetch", "tinyshakespeare", "--url", "http://127.0.0.1:9/", "--data-dir", str(root))
    assert_user_error(proc, "could not download http://127.0.0.1:9/input.txt",
                      str(root / "tinyshakespeare"))  # where to put the file by hand, not a temporary folder
    assert _listing(root) == []
    # a server that is up but has no such file
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_main("fetch", "tinyshakespeare", "--url", serve(empty), "--data-dir", str(root))
    assert_user_error(proc, "could not download", "input.txt: File not found")
    assert _listing(root) == []


def test_fetch_refuses_a_labels_url(tmp_path):
    proc = run_main("fetch", "tinyshakespeare", "--labels-url", "http://127.0.0.1:9/", "--data-dir", str(tmp_path))
    assert_user_error(proc, "--labels-url is for inceptionv1 only", "--url BASE_URL")


def test_fetch_lists_tinyshakespeare():
    proc = run_main("fetch", "tinyshakespear")
    assert_user_error(proc, "unknown fetch target", "Did you mean 'tinyshakespeare'")

"""The documentation: the README stays short and its walkthrough runs; docs/ builds strictly with mkdocs, offline.

The walkthrough is the README's section between `<!-- walkthrough: begin` and `<!-- walkthrough: end -->`. Its
```bash blocks are run in order by bash, in a fresh folder that stands in for the repository's root (`.venv/bin`
there runs this interpreter's scripts), with the runs folder, the board and the cache in that folder: the
committed `leaderboard/results/` is never touched. A ```text block right after a bash block is that block's
output as measured; each of its lines with a % sign must appear in the real output (a `…` in it stands for
anything).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 300
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


@dataclass
class Step:
    """One bash block of the walkthrough and the output the README shows for it (None: none shown)."""

    script: str
    shown: str | None


def walkthrough_text(readme: str | None = None) -> str:
    """The README's walkthrough section, between its begin and end markers."""
    text = README.read_text() if readme is None else readme
    begin, end = text.find("<!-- walkthrough: begin"), text.find("<!-- walkthrough: end -->")
    assert 0 <= begin < end, "the README has no walkthrough markers"
    return text[begin:end]


def walkthrough_steps(readme: str | None = None) -> list[Step]:
    """The walkthrough's bash blocks, each with the text block that follows it (if one does, before the next)."""
    steps: list[Step] = []
    for match in FENCE.finditer(walkthrough_text(readme)):
        kind, body = match.group(1), match.group(2)
        if kind == "bash":
            steps.append(Step(body, None))
        elif kind == "text" and steps and steps[-1].shown is None:
            steps[-1].shown = body
    return steps


def shown_lines_missing(shown: str, actual: str) -> list[str]:
    """The lines of `shown` with a % sign that no line of `actual` matches (`…` matches anything)."""
    missing = []
    for line in shown.splitlines():
        if "%" not in line:
            continue
        pattern = ".*".join(re.escape(part.strip()) for part in line.split("…"))
        if not any(re.search(pattern, out) for out in actual.splitlines()):
            missing.append(line)
    return missing


def workspace(folder: Path) -> dict[str, str]:
    """Make `folder` stand in for the repository's root; the environment the walkthrough runs with."""
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = Path(sys.executable).parent
    for name in ("python", "replacebench"):
        target = scripts / name
        if not target.exists():
            pytest.fail(f"{target} is missing: install the package (pip install -e '.[test]')")
        shim = bin_dir / name  # a script, not a link: a linked interpreter would look for its venv beside the link
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(str(target))} \"$@\"\n")
        shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLACEBENCH_")}
    env.update(REPLACEBENCH_RUNS=str(folder / "runs"), REPLACEBENCH_BOARD=str(folder / "leaderboard" / "results"),
               REPLACEBENCH_CACHE=str(folder / "cache"), PYTHONDONTWRITEBYTECODE="1")
    return env


# ---------------------------------------------------------------------------------------------------------------
# the README


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; the reference belongs in docs/"


def test_readme_setup_commands_are_what_ci_runs() -> None:
    """The two set-up commands, verbatim, are the commands .ci/run runs."""
    setup = README.read_text().split("## Set up and run: two commands", 1)[1]
    block = FENCE.search(setup)
    assert block and block.group(1) == "bash"
    commands = [line for line in block.group(2).splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f".ci/run does not run the README's command verbatim: {command}"


def test_readme_links_resolve() -> None:
    """Every relative link of the README names a file that exists, and an anchor into docs/ a heading there."""
    from markdown.extensions.toc import slugify

    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links to {link}, which does not exist"
        if anchor and target.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", FENCE.sub("", target.read_text()), re.M)
            assert anchor in {slugify(h, "-") for h in headings}, f"README links to {link}: no such heading"


def test_walkthrough_parses_and_uses_real_commands() -> None:
    """Fast: every block is valid bash, and every replacebench command line in it parses with the CLI's parser."""
    from benchmark.cli import build_parser

    steps = walkthrough_steps()
    assert len(steps) >= 6 and all(step.shown is not None for step in steps if "replacebench" in step.script)
    parser = build_parser()
    seen = set()
    for step in steps:
        subprocess.run(["bash", "-n"], input=step.script, text=True, check=True)
        for line in step.script.splitlines():
            if line.startswith(".venv/bin/replacebench "):
                argv = shlex.split(line)[1:]
                parser.parse_args(argv)  # exits 2 on an unknown command or flag
                seen.add(argv[0])
    assert {"inspect", "score", "diagnose", "compare", "publish"} <= seen


def test_shown_output_check_can_fail() -> None:
    assert shown_lines_missing("  recovery vs zero     91.1% [79.0, 101.1]", "  recovery vs zero     91.1% [79.0, 101.1]  x") == []
    assert shown_lines_missing("  recovery vs zero     91.1% […]", "  recovery vs zero     91.1% [79.0, 101.1]") == []
    assert shown_lines_missing("  recovery vs zero     91.2% [79.0, 101.1]", "  recovery vs zero     91.1% [79.0, 101.1]")


@pytest.mark.slow
def test_walkthrough_runs(tmp_path: Path) -> None:
    """The walkthrough end to end, as written: every block exits 0 and prints the figures the README shows."""
    env = workspace(tmp_path)
    board = ROOT / "leaderboard" / "results"
    before = sorted(p.relative_to(board) for p in board.rglob("*"))
    for step in walkthrough_steps():
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", step.script], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=600)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{step.script}\nexited {done.returncode}:\n{output}"
        if step.shown is not None:
            missing = shown_lines_missing(step.shown, output)
            assert not missing, f"{step.script}\nprinted:\n{output}\nnot the README's lines:\n" + "\n".join(missing)
    assert (tmp_path / "leaderboard" / "results" / "digits-mlp__fc1-17" / "my-neuron.json").exists()
    assert (tmp_path / "site" / "index.html").exists()
    assert sorted(p.relative_to(board) for p in board.rglob("*")) == before, "the committed board changed"


# ---------------------------------------------------------------------------------------------------------------
# docs/


def test_every_docs_page_is_in_nav() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in pages(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in pages(value)]
        return []

    in_nav = pages(config["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(in_nav) == on_disk
    assert config.get("strict") is True and config["theme"]["name"] == "mkdocs" and not config.get("plugins")


def test_docs_build_strictly_offline(tmp_path: Path) -> None:
    """`mkdocs build --strict` passes with no network (proxies pointed at a closed port), into tmp_path."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is not installed: it is pinned in the test extra (pip install -e '.[test]')"
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed, "https_proxy": closed,
           "NO_PROXY": "", "no_proxy": ""}
    out = tmp_path / "site"
    done = subprocess.run([mkdocs, "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir",
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    for page in DOCS.rglob("*.md"):
        assert (out / page.relative_to(DOCS).with_suffix(".html")).exists(), page
    index = (out / "index.html").read_text()
    assert "replacebench" in index and "cdnjs" not in index  # the built-in theme, highlight.js from no CDN


def test_strict_build_catches_a_broken_link(tmp_path: Path) -> None:
    """The build this file relies on fails on a link to a page that does not exist."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is not installed: it is pinned in the test extra (pip install -e '.[test]')"
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "index.md", "a") as f:
        f.write("\nSee [a page that is not there](missing.md).\n")
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "out")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "missing.md" in done.stderr

"""The static site (`replacebench leaderboard --html DIR`), rendered from the committed records into a temporary
folder and opened in a real headless browser (Chromium): every page type loads with no console message (errors,
blocked requests and Content-Security-Policy violations all log one), its DOM has what the page is for, and its
screenshot is not blank. Skips, saying why, where no browser is installed.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import run_cli
from PIL import Image

from benchmark.board.leaderboard import REFERENCE_NOTE
from benchmark.record.layout import default_results_dir

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless browser installed (tried " + ", ".join(BROWSERS) + "); e.g. apt-get install -y chromium")


def open_page(page: Path, tmp: Path, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """Load `page` in headless Chromium: its DOM after scripts, and every console message it logged."""
    args = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
            "--enable-logging=stderr", "--v=0", "--window-size=1200,1600"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    proc = subprocess.run([*args, page.absolute().as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


class Links(HTMLParser):
    """Every href/src in a page, and the tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("href", "src") and v]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    proc = run_cli("leaderboard", "--html", str(out), "--results-dir", str(default_results_dir()))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out / 'index.html'}"
    return out


def committed() -> tuple[set[str], set[str]]:
    """Task slugs and submission names of the committed records."""
    records = [json.loads(p.read_text()) for p in default_results_dir().glob("*/*.json")]
    return {p.parent.name for p in default_results_dir().glob("*/*.json")}, {r["submission"]["name"] for r in records}


def test_every_task_and_submission_has_a_page_and_every_link_resolves(site):
    tasks, subs = committed()
    assert {p.stem for p in (site / "tasks").glob("*.html")} == tasks
    assert {p.stem for p in (site / "submissions").glob("*.html")} == subs
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "Content-Security-Policy" in text and "<script" not in text
        parser = Links()
        parser.feed(text)
        for ref in parser.refs:
            assert not re.match(r"[a-z]+:", ref), f"{page.name} refers outside the site: {ref}"
            assert (page.parent / ref).resolve().exists(), f"{page.name}: broken link {ref}"
    parser = Links()
    parser.feed((site / "tasks" / "mnist-mlp__fc1-13.html").read_text())
    assert parser.tags.count("svg") == 2  # the forest plot and the scatter


@pytest.mark.parametrize("page", ["index.html", "tasks/mnist-mlp__fc1-13.html", "tasks/mnist-mlp__fc2-top20.html",
                                  "submissions/mnist-stroke.html"])
def test_page_types_open_in_a_real_browser_without_console_messages(site, tmp_path, page):
    dom, console = open_page(site / page, tmp_path)
    assert console == [], console
    assert "</table>" in dom
    if page.startswith("tasks/"):
        assert dom.count("<svg") == 2 and "<circle" in dom and "<line" in dom  # the plots, with points and CIs
    if page == "index.html":
        for name in ("zero", "mean", "linear", "mnist-stroke"):
            assert f'href="submissions/{name}.html"' in dom
    if page.startswith("submissions/"):
        record = json.loads((default_results_dir() / "mnist-mlp__fc1-13" / "mnist-stroke.json").read_text())
        assert html.escape(record["submission"]["description"], quote=False) in dom and "Provenance" in dom
        assert record["provenance"]["git_commit"][:12] in dom
    shot = tmp_path / "shot.png"
    _, console = open_page(site / page, tmp_path, screenshot=shot)
    assert console == [], console
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20, "the screenshot is blank"
        non_white = sum(n for n, c in (colours or []) if c != (255, 255, 255)) if colours else 10**6
        assert non_white > 2000, "the screenshot is nearly blank"


def test_the_browser_check_catches_errors_and_external_requests(tmp_path):
    """Negative control: a page that throws, or that loads something from elsewhere, logs a console message."""
    from benchmark.analysis.figures import page

    bad = tmp_path / "bad.html"
    bad.write_text(page("bad", '<p>x</p><img src="https://example.com/x.png">'))
    _, console = open_page(bad, tmp_path)
    assert console and "example.com" in " ".join(console)
    throws = tmp_path / "throws.html"
    throws.write_text("<!DOCTYPE html><html><body><script>throw new Error('probe')</script></body></html>")
    _, console = open_page(throws, tmp_path)
    assert console and "probe" in " ".join(console)


def test_text_from_records_is_escaped(tmp_path):
    """A record whose description and authors hold markup shows it as text: no element, no script."""
    results = tmp_path / "results"
    src = default_results_dir() / "mnist-mlp__fc1-13"
    shutil.copytree(src, results / src.name)
    path = results / src.name / "mnist-stroke.json"
    record = json.loads(path.read_text())
    evil = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>"&'
    record["submission"]["description"] = evil
    record["submission"]["authors"] = [evil]
    path.write_text(json.dumps(record))
    out = tmp_path / "site"
    proc = run_cli("leaderboard", "--html", str(out), "--results-dir", str(results))
    assert proc.returncode == 0, proc.stderr
    text = (out / "submissions" / "mnist-stroke.html").read_text()
    assert evil not in text and html.escape(evil, quote=True) in text
    dom, console = open_page(out / "submissions" / "mnist-stroke.html", tmp_path)
    assert console == [] and "<script" not in dom and "<img" not in dom and "pwned" not in dom.split("<body")[0]


@pytest.mark.slow
def test_html_out_refuses_a_foreign_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    proc = run_cli("leaderboard", "--html", str(foreign), "--results-dir", str(default_results_dir()))
    assert proc.returncode == 2 and proc.stderr.startswith("replacebench: error: ") and len(proc.stderr.splitlines()) == 1
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    proc = run_cli("leaderboard", "--html", str(tmp_path / "s"), "--out", str(tmp_path / "b.md"))
    assert proc.returncode == 2 and "--html" in proc.stderr and not list(tmp_path.glob("s*")) + list(tmp_path.glob("b.md"))


def test_task_pages_show_the_held_out_figure_beside_the_public_one(tmp_path):
    """The committed board has held-out records: each sits in its public entry's row, not in a row of its own."""
    from benchmark.record.format import recovery_cell
    from benchmark.record.typed import Record

    out = tmp_path / "site"
    assert run_cli("leaderboard", "--html", str(out), "--results-dir", str(default_results_dir())).returncode == 0
    page = (out / "tasks" / "mnist-mlp__fc1-13.html").read_text()
    heldout = Record.read(default_results_dir() / "mnist-mlp__fc1-13" / "mnist-stroke.heldout.json")
    public = Record.read(default_results_dir() / "mnist-mlp__fc1-13" / "mnist-stroke.json")
    assert "held-out recovery [95% CI]" in page
    row = next(line for line in page.splitlines() if ">mnist-stroke</a>" in line)
    assert recovery_cell(public.results.primary) in row and recovery_cell(heldout.results.primary) in row
    assert page.count(">mnist-stroke</a>") == 1


# -- copies: a reference ceiling, never ranked ----------------------------------------------------------------------

class Tables(HTMLParser):
    """Every table of a page as rows of cell texts; each row's `style` attribute is kept as its first item."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([dict(attrs).get("style") or ""])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def tables(page: Path) -> list[list[dict[str, str]]]:
    """The page's tables, each row a dict from its table's header (the row's style under `style`)."""
    parser = Tables()
    parser.feed(page.read_text())
    out = []
    for table in parser.tables:
        head = ["style", *table[0][1:]]
        out.append([dict(zip(head, row)) | {"cells": row[1:]} for row in table[1:]])  # type: ignore[operator]
    return out


def copies_by_task() -> dict[str, set[str]]:
    """The committed public records that are copies: submission names by task id."""
    out: dict[str, set[str]] = {}
    for path in default_results_dir().glob("*/*.json"):
        record = json.loads(path.read_text())
        if record["complexity"]["copy"] and record.get("split", "public") == "public":
            out.setdefault(record["task"]["id"], set()).add(record["submission"]["name"])
    return out


def test_the_index_never_names_a_copy_top_entry(site):
    """The committed board has the copy `linear` on 22 tasks (100% recovery), `linear-text` on every shakespeare-char
    task, and more copies under the bit rule (`mean` on the mnist-cnn and shakespeare-char tasks, `fourier-cluster`
    on single modadd neurons, `induction-head`'s two tables on head 1.0): no task's top entry is a copy, each
    copy is named in the task's reference (copy) column instead, the counts leave copies out, and a task with only
    baselines and copies says so."""
    copies = copies_by_task()
    assert len(copies) >= 16 and all("linear" in names or "linear-text" in names for names in copies.values())
    assert set().union(*copies.values()) == {"linear", "linear-text", "mean", "fourier-cluster", "induction-head"}
    _, task_table = tables(site / "index.html")
    by_task = {row["task"]: row for row in task_table}
    for task, names in copies.items():
        row = by_task[task]
        assert not any(row["top entry"].startswith(name) for name in names), row
        if "linear" in names:  # the image and modadd copy copies exactly; linear-text on text does not
            assert "linear: 100." in row["reference (copy)"], row
        assert all(f"{name}: " in row["reference (copy)"] for name in names), row
    records = [json.loads(p.read_text()) for p in default_results_dir().glob("digits-mlp__fc1-17/*.json")]
    public = [r for r in records if r["split"] == "public"]
    row = by_task["digits-mlp/fc1:17"]
    assert {r["submission"]["name"] for r in public} == {"linear", "mean", "zero"}
    assert row["entries"] == "2" and row["ranked"] == "2"  # mean and zero; the copy is not counted
    assert row["top entry"] == "mean (baselines and copies only)"
    assert by_task["mnist-mlp/fc1:13"]["top entry"] == "mnist-stroke"
    beyond = sum(any(r["submission"]["kind"] != "baseline" and not r["complexity"]["copy"] for r in rs)
                 for rs in _public_by_task().values())
    assert f"{beyond} of {len(by_task)} tasks have an entry beyond the baselines and copies." in (site / "index.html").read_text()


def _public_by_task() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for path in default_results_dir().glob("*/*.json"):
        record = json.loads(path.read_text())
        if record.get("split", "public") == "public":
            out.setdefault(record["task"]["id"], []).append(record)
    return out


def test_task_and_submission_pages_show_copies_as_unranked_references(site):
    """On a task page the copy sits below a `reference (copy)` label, greyed, with # `ref` and no ◆; the plots name it
    a reference and keep it; the submission page gives `ref`, not a rank, on every task where it is a copy."""
    table, *_ = tables(site / "tasks" / "mnist-mlp__fc1-13.html")
    names = [row["cells"][1] if len(row["cells"]) > 1 else row["cells"][0] for row in table]  # the label: one cell
    label = names.index("reference (copy): " + REFERENCE_NOTE)
    assert names[label + 1:] == ["linear"] and "linear" not in names[:label]
    linear = table[label + 1]
    assert linear["#"] == "ref" and linear["frontier"] == "" and linear["style"]
    assert [row["#"] for row in table[:label]] == ["1", "1", "3"]  # mnist-stroke, mean, zero; the copy takes no rank
    page = (site / "tasks" / "mnist-mlp__fc1-13.html").read_text()
    forest, scatter = page.split("<svg")[1:3]
    for svg in (forest, scatter):
        assert "linear, reference (copy)" in svg and "reference (copy)" in svg.split("linear, reference (copy)")[-1]
        assert 'fill="#fff" stroke="#666"' in svg  # the reference's marker: a grey ring
    copies = copies_by_task()
    rows = {row["task"]: row for row in tables(site / "submissions" / "linear.html")[0]}
    for task, row in rows.items():
        assert (row["#"] == "ref") == (task in copies), row
    assert rows["mnist-mlp/fc2:top20"]["#"].isdigit()


def test_a_copy_with_the_best_recovery_is_no_top_entry_or_rank(tmp_path):
    """A results folder with one task, where the copy `linear` has the best recovery of all: the index's top entry
    and its recovery are mnist-stroke's, the task page ranks mnist-stroke and mean 1, zero 3, and linear is `ref`."""
    from benchmark.record.format import recovery_cell
    from benchmark.record.typed import Record

    results = tmp_path / "results"
    shutil.copytree(default_results_dir() / "mnist-mlp__fc1-13", results / "mnist-mlp__fc1-13")
    linear = Record.read(results / "mnist-mlp__fc1-13" / "linear.json")
    stroke = Record.read(results / "mnist-mlp__fc1-13" / "mnist-stroke.json")
    assert linear.complexity.copy and linear.results.primary.recovery_low > 0.99
    out = tmp_path / "site"
    proc = run_cli("leaderboard", "--html", str(out), "--results-dir", str(results))
    assert proc.returncode == 0, proc.stderr
    subs, (task,) = tables(out / "index.html")
    assert task["top entry"] == "mnist-stroke" and task["its recovery [95% CI]"] == recovery_cell(stroke.results.primary)
    assert task["entries"] == "3" and task["reference (copy)"] == f"linear: {recovery_cell(linear.results.primary)}"
    by_name = {row["submission"]: row for row in subs}
    assert by_name["linear"]["#1"] == "0" and by_name["linear"]["ranked"] == "0" and by_name["linear"]["reference (copy)"] == "1"
    assert by_name["linear"]["style"] and not by_name["mean"]["style"]  # a copy on every task: a grey row
    ranks = {row["submission"]: row["#"] for row in tables(out / "tasks" / "mnist-mlp__fc1-13.html")[0] if "submission" in row}
    assert ranks == {"mnist-stroke": "1", "mean": "1", "zero": "3", "linear": "ref"}  # the label row has one cell

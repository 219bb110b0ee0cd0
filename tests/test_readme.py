"""The README's promises: a short front page whose examples run, whose every shell command runs
on the repository (with a tiny schedule), whose links resolve and whose layout names every
folder; the documented commands exist; CI runs its test command."""

import csv
import doctest
import re
import shlex
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.conftest import ROOT, tiny_overrides

README = ROOT / "README.md"
FRONT_PAGE_MAX_LINES = 250
# Every page of the documentation: the front page, the reference pages, the results.
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ```bash blocks of ``markdown``, one string each: comments dropped,
    lines continued with a backslash joined, blank lines skipped."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", markdown, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def test_shell_commands_joins_continuations_and_drops_comments():
    markdown = "text\n```bash\nmake demo    # a comment\n\npython train.py a=1 \\\n    b='x y'\n```\n" \
               "```\nnot a command\n```\n"
    assert shell_commands(markdown) == ["make demo", "python train.py a=1 'b=x y'"]


def recipe(command: list[str], tmp_path) -> list[list[str]]:
    """What ``make TARGET [VAR=...]`` runs (``make -n``), with this interpreter for the venv's
    and the setup taken as done; study folders (OUT, FOLLOWUPS) under ``tmp_path``."""
    out = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", *command[1:], f"PY={sys.executable}",
                          f"OUT={tmp_path / 'ablation'}", f"FOLLOWUPS={tmp_path / 'followups'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"`{shlex.join(command)}`: {out.stderr}"
    lines = [shlex.split(line) for line in out.stdout.splitlines() if line.strip()]
    assert lines, f"`{shlex.join(command)}` runs nothing"
    return lines


def tiny(argv: list[str], tmp_path, n: int) -> tuple[list[str], Path | None]:
    """``argv`` as it runs here in seconds, and the file it must have written (None: none).

    train.py: a tiny model on a few small synthetic images for 2 iterations, its run (or sweep)
    folder under ``tmp_path``, without the error analysis. A study driver (tools.ablation,
    tools.followups) would train for hours: its dry run composes every job's config and
    estimates its time. The test suite: this file collected, not run (this test is part of it).
    Any other tool runs as written."""
    own_dataset = any(a.startswith("dataset=") for a in argv)  # then the synthetic data's keys do not apply
    train = [o for o in tiny_overrides(tmp_path / "data") if not (own_dataset and o.startswith("dataset."))]
    train += ["schedule.max_iters=2", "schedule.warmup_iters=1"]
    python, *args = argv
    assert python == sys.executable, f"`{shlex.join(argv)}`: not run with the venv's python"
    folder = tmp_path / f"command{n}"
    if args[:1] == ["train.py"]:
        train.append("~hydra.callbacks.analysis")  # it logs a failure, never fails the command: tests/analysis/
        if "-m" in args:
            return [*argv, *train, f"hydra.sweep.dir={folder}"], folder / "report.md"
        return [*argv, *train, f"hydra.run.dir={folder}"], folder / "eval.json"
    if args[:2] in (["-m", "tools.ablation"], ["-m", "tools.followups"]):
        return [*argv, "--dry-run", *train], None
    if args[:2] == ["-m", "pytest"]:  # one file: the suite itself imports every other
        return [*argv, "--collect-only", "-q", "-p", "no:cacheprovider", str(Path(__file__).relative_to(ROOT))], None
    if args[:1] == ["-m"] and args[1].startswith("tools."):
        return argv, None
    raise AssertionError(f"`{shlex.join(argv)}` has no tiny form: add one to tests/test_readme.py::tiny")


def test_every_front_page_command_runs_with_a_tiny_schedule(tmp_path):
    """Each command of the front page's bash blocks, run on the repository: `make TARGET` as the
    recipe make would run, `python ...` as written, each with its tiny form (``tiny``)."""
    commands = shell_commands(README.read_text())
    assert {"make demo", "make test"} <= set(commands)
    runs = 0
    for command in commands:
        words = shlex.split(command)
        if words[0] == "make":
            argvs = recipe(words, tmp_path)
        else:
            assert words[0] == "python", f"`{command}`: only make and python commands have a tiny form"
            argvs = [[sys.executable, *words[1:]]]
        for argv in argvs:
            runs += 1
            argv, writes = tiny(argv, tmp_path, runs)
            out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, f"README command `{command}` failed as `{shlex.join(argv)}`:\n{out.stderr[-3000:]}"
            assert writes is None or writes.is_file(), f"`{command}` wrote no {writes}"


def test_readme_is_a_short_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= FRONT_PAGE_MAX_LINES, f"README.md has {len(lines)} lines: move detail to docs/ or results/"


def test_readme_examples_run():
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command():
    readme = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert "make demo" in first_block and "make test" in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: ", makefile, re.M) and re.search(r"^demo: ", makefile, re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation but - and _ dropped,
    spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_slug_is_githubs():
    assert slug("1. The fair bg_ablation") == "1-the-fair-bg_ablation"
    assert slug("Background handlings: `loss=`") == "background-handlings-loss"


def anchors(path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)}


def test_every_relative_link_resolves():
    """Every relative link of the documentation names a file that is there, and an anchor of a
    markdown file names one of its headings. results/<study>/ is made by moving
    benchmarks/results/ (issue 29); until that is merged, links into it are skipped."""
    missing, waiting = [], []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                moving = file.is_relative_to(ROOT / "results") and (ROOT / "benchmarks" / "results").is_dir()
                (waiting if moving else missing).append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                missing.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not missing, "\n".join(missing)
    if waiting:
        pytest.skip(f"{len(waiting)} links into results/ wait for the move of benchmarks/results/: {waiting[0]}, ...")


def test_the_layout_names_every_top_level_folder():
    layout = re.search(r"^## Layout\n\n```\n(.*?)```", README.read_text(), re.S | re.M).group(1)
    named = set(re.findall(r"^(\w+)/", layout, re.M))
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert folders <= named, f"not in the README's layout: {sorted(folders - named)}"
    assert {"configs", "docs", "results"} <= named


def test_every_experiment_is_documented():
    docs = "\n".join(p.read_text() for p in DOCS)
    for path in (ROOT / "configs" / "experiment").glob("*.yaml"):
        assert f"`{path.stem}`" in docs, path.stem


def test_every_module_command_exists():
    """`python -m tools.x` / `python -m benchmarks.x` name real modules; no `python tools/x.py`
    form is left (the tools are modules run from the repository root, with no sys.path edits)."""
    docs = "\n".join(p.read_text() for p in DOCS)
    modules = set(re.findall(r"python -m ((?:tools|benchmarks)\.\w+)", docs))
    assert {"tools.report", "tools.evaluate", "tools.anchor_stats", "tools.ablation"} <= modules
    for module in modules:
        assert find_spec(module) is not None, module
    assert not re.search(r"python (tools|benchmarks)/", docs)
    for folder in ("tools", "benchmarks", "detection", "datasets", "losses"):
        for path in (ROOT / folder).glob("*.py"):
            assert "sys.path" not in path.read_text(), path


def _section(markdown: str, heading: str) -> str:
    return markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def test_the_headline_numbers_are_its_reports():
    """The front page's answer quotes its study's report.csv: each table row naming a cell
    (`` `max_iou` | `focal` ``: the study's method ``max_iou_focal``, its methods being
    ``<assigner>_<loss>``) with ``mean ± std [lo, hi]`` over the seeds the text says, and each
    paired difference ``a − b = d AP [lo, hi]`` between the table's losses in the paragraph under
    it, as the reports round them (one decimal)."""
    answer = _section(README.read_text(), "The question, answered")
    study = re.search(r"\[report\]\(results/([\w-]+)/report\.md\)", answer).group(1)
    with open(ROOT / "results" / study / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    methods = {r["method"]: r for r in rows if r["kind"] == "method"}
    pairs = {(r["a"], r["b"]): r for r in rows if r["kind"] == "pair"}

    def rounded(*values) -> tuple:
        return tuple(round(float(v), 1) for v in values)

    table = re.findall(r"^\| `(\w+)` \| `(\w+)` \|.*\| (\d+\.\d) ± (\d+\.\d) \[(\d+\.\d), (\d+\.\d)\] \|$",
                       answer, re.M)
    assert len(table) >= 3, "the headline table's rows were not found"
    cells = {loss: f"{assigner}_{loss}" for assigner, loss, *_ in table}
    assert len(cells) == len(table), "a loss named twice: the paragraph's claims would be ambiguous"
    seeds = int(re.search(r"over (\d+) paired seeds", answer).group(1))
    for _, loss, *numbers in table:
        r = methods[cells[loss]]
        assert tuple(map(float, numbers)) == rounded(r["mean"], r["std"], r["lo"], r["hi"]), cells[loss]
        assert int(r["n"]) == seeds, f"{cells[loss]}: {r['n']} seeds in the report, {seeds} on the front page"
    paragraph = answer.split(table[-1][-1] + "] |\n\n", 1)[1].split("\n\n", 1)[0]
    claims = re.findall(r"(\w+) − (\w+) = ([+−]?\d+\.\d) AP \[([+−]?\d+\.\d), ([+−]?\d+\.\d)\]", paragraph)
    assert len(claims) >= 3, "the paired differences under the table were not found"
    for loss_a, loss_b, *numbers in claims:
        a, b = cells[loss_a], cells[loss_b]
        r, sign = (pairs[a, b], 1) if (a, b) in pairs else (pairs[b, a], -1)
        quoted = tuple(map(_number, numbers))
        mean, lo, hi = sign * float(r["mean"]), sign * float(r["lo"]), sign * float(r["hi"])
        assert quoted == rounded(mean, *sorted((lo, hi))), f"{a} − {b}"

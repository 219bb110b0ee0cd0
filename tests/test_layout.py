"""The floor plan of the study machinery, read from the source with ``ast``: imports go one way
(analysis -> reports -> studies -> tools, the library below all four), no chain of imports
inside the machinery is longer than MAX_CHAIN modules, no module imports another's private
name, and nothing imports the entry script train.py."""

import ast
import functools
from pathlib import Path

import pytest

from tests.conftest import ROOT

MACHINERY = ("analysis", "reports", "studies", "tools")  # in the order their imports go: later imports earlier
LIBRARY = ("detection", "losses", "datasets")
# modules in the longest chain, its first and last included (it was 11 in one flat tools/): a
# tool, a study, the study it builds on, a sweep or the records, what a run folder holds
# (tools.followups -> studies.followups -> studies.ablation -> studies.sweep -> analysis.folder)
MAX_CHAIN = 5
# report modules that several sections share; any other report module is a section or a report builder
REPORT_SHARED = {"reports.runs", "reports.stats", "reports.cdf", "reports.table_io"}
REPORT_BUILDERS = {"reports.sweep", "reports.ablation", "reports.callback"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(*tops: str) -> list[Path]:
    files = []
    for top in tops:
        path = ROOT / top
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return files


@functools.cache
def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in ``path``, at any depth (lazy imports in functions too);
    ``import a.b`` gives ("a.b", [])."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def internal_graph(tops=MACHINERY) -> dict[str, set[str]]:
    """module -> the modules of ``tops`` it imports (``from pkg import mod`` counts as pkg.mod)."""
    files = {module_name(p): p for p in python_files(*tops)}
    graph = {}
    for name, path in files.items():
        deps = set()
        for module, names in imports(path):
            for candidate in [module, *(f"{module}.{n}" for n in names)]:
                if candidate in files and candidate != name:
                    deps.add(candidate)
        graph[name] = deps
    return graph


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest path of imports (a list of modules); a cycle is an error."""
    @functools.cache
    def from_(module: str, seen: frozenset = frozenset()) -> tuple[str, ...]:
        if module in seen:
            raise AssertionError(f"import cycle through {module}")
        tails = [from_(d, seen | {module}) for d in sorted(graph[module])]
        return (module, *max(tails, key=len, default=()))

    return list(max((from_(m) for m in sorted(graph)), key=len))


def test_longest_chain_is_counted_in_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": set(), "d": {"c"}}
    assert longest_chain(graph) == ["a", "b", "c"]
    with pytest.raises(AssertionError, match="cycle"):
        longest_chain({"a": {"b"}, "b": {"a"}})


def test_the_longest_chain_of_imports_inside_the_study_machinery_is_short():
    chain = longest_chain(internal_graph())
    assert len(chain) <= MAX_CHAIN, " -> ".join(chain)


def test_imports_go_one_way():
    """analysis imports none of reports/studies/tools, reports none of studies/tools, studies not
    tools; the library (detection, losses, datasets) none of the four."""
    bad = []
    for path in python_files(*MACHINERY, *LIBRARY):
        top = module_name(path).split(".")[0]
        above = MACHINERY if top in LIBRARY else MACHINERY[MACHINERY.index(top) + 1:]
        bad += [f"{module_name(path)} imports {m}" for m, _ in imports(path) if m.split(".")[0] in above]
    assert not bad


def test_a_report_section_imports_no_other_section_and_no_callback():
    bad = []
    for module, deps in internal_graph().items():
        if not module.startswith("reports."):
            continue
        for dep in deps:
            if dep.endswith(".callback"):
                bad.append(f"{module} imports the Hydra callback module {dep}")
            elif module not in REPORT_BUILDERS and dep.startswith("reports.") and dep not in REPORT_SHARED:
                bad.append(f"the section {module} imports {dep}")
    assert not bad


def test_no_module_imports_a_private_name_of_another():
    bad = [f"{module_name(path)}: from {m} import {n}"
           for path in python_files(*MACHINERY, "benchmarks", "train.py")
           for m, names in imports(path) for n in names
           if n.startswith("_") and not n.startswith("__") and m.split(".")[0] in (*MACHINERY, *LIBRARY, "train")]
    assert not bad


def test_nothing_imports_the_entry_script():
    """train.py is run, not imported: what tools and benchmarks share with it is in detection/engine.py."""
    bad = [module_name(p) for p in python_files(*MACHINERY, *LIBRARY, "benchmarks")
           if any(m == "train" or m.startswith("train.") for m, _ in imports(p))]
    assert not bad


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "tools").glob("*.py") if p.name != "__init__.py"))
def test_every_tool_run_as_a_file_says_in_one_line_how_to_run_it(path):
    """``python tools/x.py`` cannot import the packages beside tools/: it says the module form."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, f"tools/{path}", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"run it from the repository root as a module: python -m tools.{path[:-3]} --help"

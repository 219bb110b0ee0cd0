"""The README's promises: its examples run, its commands exist, CI runs its test command."""

import doctest
import re

from tests.conftest import ROOT


def test_readme_examples_run():
    result = doctest.testfile(str(ROOT / "README.md"), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert "make demo" in first_block and "make test" in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: ", makefile, re.M) and re.search(r"^demo: ", makefile, re.M)


def test_every_experiment_is_documented():
    readme = (ROOT / "README.md").read_text()
    for path in (ROOT / "configs" / "experiment").glob("*.yaml"):
        assert f"`{path.stem}`" in readme, path.stem


def test_every_module_command_exists():
    """`python -m tools.x` / `python -m benchmarks.x` name real modules; no `python tools/x.py`
    form is left (the tools are modules run from the repository root, with no sys.path edits)."""
    readme = (ROOT / "README.md").read_text()
    modules = set(re.findall(r"python -m ((?:tools|benchmarks)\.\w+)", readme))
    assert {"tools.report", "tools.evaluate", "tools.anchor_stats"} <= modules
    for module in modules:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
    assert not re.search(r"python (tools|benchmarks)/", readme)
    for folder in ("tools", "benchmarks", "detection", "datasets", "losses"):
        for path in (ROOT / folder).glob("*.py"):
            assert "sys.path" not in path.read_text(), path

"""The committed results (results/<study>/): every report is what its tables make, every plot it
links is there (in 256 colours), the folder stays small, and no committed file holds a machine's
path."""

import re
import subprocess

import pytest
from PIL import Image

from detection.run_folder import ROOT
from reports.runs import RESULTS
from reports.table_io import KINDS, RUNS, Tables, read_csv, read_meta
from tests.conftest import plots_drawn_not_encoded
from tools.results import check, studies

STUDIES = studies(RESULTS)
MAX_FILES, MAX_MB = 1000, 30
# A path of the machine that ran something: it means nothing on another one.
MACHINE_PATHS = re.compile(r"/(work|root|home|tmp)/")
# README.md's example `make ablation QUICK=1 OUT=/tmp/abl` is a user's choice of folder, not a
# machine's path (README.md is being rewritten; drop this when its example changes).
EXAMPLES: dict[str, set[str]] = {}  # file -> example strings that look like a machine path but are not


@pytest.fixture(scope="module")
def tables():
    return Tables(RESULTS)


def test_the_results_hold_the_studies():
    assert {"bg_ablation", "schedule_check", "alpha_sweep", "gamma_sweep", "prior_init", "imbalance_sweep",
            "table1d", "bg_ablation_6000", "bg_ablation_3000", "bg_ablation_confounded"} <= set(STUDIES)


@pytest.mark.parametrize("study", STUDIES)
def test_every_report_is_made_again_from_its_tables_alone(study, tables, monkeypatch):
    plots_drawn_not_encoded(monkeypatch)  # check() compares report.md and report.csv; the committed plots: below
    assert check(RESULTS, study, tables) == [], f"`python -m tools.results regenerate {study}` changes its report"


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_says_what_it_is_and_its_report_links_only_plots_that_are_there(study):
    meta = read_meta(RESULTS / study)
    assert meta["kind"] in KINDS and meta["study"] == study
    if meta.get("superseded_by"):
        assert meta["superseded_by"] in STUDIES
        assert f"**Superseded** by `{meta['superseded_by']}`" in (RESULTS / study / "report.md").read_text()
    md = (RESULTS / study / "report.md").read_text()
    title = {"ablation": "Background ablation", "across": "Across studies"}.get(meta["kind"], "Report")
    assert md.split("\n")[0] == f"# {title}: `{study}`"
    for plot in re.findall(r"\]\((plots/[^)]+)\)", md):
        assert (RESULTS / study / plot).is_file(), f"{study}/report.md links {plot}, which is not there"


def test_a_reused_run_is_a_row_naming_a_run_that_holds_its_numbers(tables):
    reused = [(s, r) for s in STUDIES for r in read_csv(RESULTS / s / RUNS) if "reused_from" in r]
    assert len(reused) >= 90  # bg_ablation's final runs are schedule_check's, the followups' the ablation's, ...
    for study, row in reused:
        source, where, _ = tables.measured(study, row["run"])
        assert where != study or source is not row
        assert "reused_from" not in source and source["status"] == "finished", (study, row["run"])
        assert "AP" not in row and "seconds" not in row  # a row naming its source, not a copy


def _tracked(*paths) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", *paths], cwd=ROOT, capture_output=True, text=True, check=True)
    return [p for p in out.stdout.split("\0") if p]


def test_the_results_stay_small():
    files = [ROOT / p for p in _tracked("results")]
    assert files, "results/ holds no tracked file"
    size = sum(f.stat().st_size for f in files if f.is_file())
    assert len(files) < MAX_FILES and size < MAX_MB * 2**20, f"results/: {len(files)} files, {size / 2**20:.1f} MB"


def test_every_committed_plot_is_a_png_of_256_colours():
    """analysis.plots.save_png's files: matplotlib's RGBA would be ~2.7x the size (10.3 MB of
    results/'s 30 were plots before)."""
    modes = {}
    for rel in _tracked("results"):
        if rel.endswith(".png"):
            with Image.open(ROOT / rel) as im:
                modes[rel] = im.mode
    assert modes and {rel: m for rel, m in modes.items() if m != "P"} == {}


def test_no_committed_file_holds_a_machine_path():
    found = []
    for rel in _tracked():
        path = ROOT / rel
        if rel == "tests/test_results.py" or not path.is_file() or path.suffix in (".png", ".jpg", ".pt"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATHS.search(line) and not any(e in line for e in EXAMPLES.get(rel, ())):
                found.append(f"{rel}:{n}: {line.strip()[:120]}")
    assert not found, "machine paths in committed files:\n" + "\n".join(found)

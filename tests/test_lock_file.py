"""requirements-lock.txt pins every dependency of pyproject.toml to one version."""

import re

import tomllib

from tests.conftest import ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_lock_file_pins_every_dependency_exactly():
    lines = [line.strip() for line in (ROOT / "requirements-lock.txt").read_text().splitlines()]
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", p) for p in pins), pins
    locked = {_name(p): p.split("==")[1] for p in pins}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert {_name(r) for r in wanted} <= set(locked)
    assert "setup-locked:" in (ROOT / "Makefile").read_text()

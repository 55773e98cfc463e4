"""The benchmark programs in benchmarks/ are not imported by the package, so a syntax error or a
broken option table would only show when someone runs them: compile each and ask for its help."""
from __future__ import annotations

import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_compiles(script, tmp_path):
    py_compile.compile(str(script), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.parametrize("name", ["run_suite.py", "export_cost.py", "cold_start.py", "horizon_budget.py"])
def test_benchmark_script_help(name):
    script = next(p for p in SCRIPTS if p.name == name)
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout

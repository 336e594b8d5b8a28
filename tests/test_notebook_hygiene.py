"""The notebooks as files: executed top to bottom, and stable under re-execution.

Re-executing an unchanged chapter the README's way must leave ``git diff`` empty, so that
after a pin upgrade the diff shows what changed and nothing else. The repository's Jupyter
config (``.jupyter/jupyter_nbconvert_config.json``, installed into the environment by
``make``) turns off the execution timings that would otherwise be rewritten on every run.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
JUPYTER = pathlib.Path(sys.executable).with_name("jupyter")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_executed_top_to_bottom_without_timings(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    timed = [i for i, c in enumerate(code, 1) if "execution" in c.get("metadata", {})]
    assert not timed, f"code cells {timed} carry execution timings; re-execute with the repository config"


def test_the_environment_executes_without_timings():
    installed = pathlib.Path(sys.prefix) / "etc" / "jupyter" / "jupyter_nbconvert_config.json"
    assert installed.exists(), "run `make` so that the repository's Jupyter config is installed"
    ours = json.loads((ROOT / ".jupyter" / "jupyter_nbconvert_config.json").read_text())
    assert json.loads(installed.read_text()) == ours
    assert ours["NotebookClient"]["record_timing"] is False


@pytest.mark.skipif(not JUPYTER.exists(), reason="jupyter is not installed next to this Python")
def test_re_executing_a_chapter_changes_nothing(tmp_path):
    source = ROOT / "book" / "02_adagrad.ipynb"
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    subprocess.run([str(JUPYTER), "nbconvert", "--to", "notebook", "--execute", "--inplace",
                    str(copy)], check=True, capture_output=True, cwd=ROOT / "book")
    assert copy.read_bytes() == source.read_bytes(), (
        f"re-executing {source.name} changed it: the stored outputs are stale or not deterministic")

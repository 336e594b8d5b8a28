"""The pre-commit notebook check refuses what nbval or a reader would trip over."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import nbcheck  # noqa: E402


def notebook(tmp_path, cells, metadata=None):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": metadata or {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def code(source, count, outputs=(), metadata=None):
    return {"cell_type": "code", "source": source, "execution_count": count,
            "outputs": list(outputs), "metadata": metadata or {}}


def test_a_clean_notebook_passes(tmp_path):
    out = {"output_type": "stream", "name": "stdout", "text": "1.000\n"}
    path = notebook(tmp_path, [code("x = 1", 1), code("", None), code("print(1.0)", 2, [out])])
    assert nbcheck.problems(path) == []
    assert nbcheck.main([str(path)]) == 0


@pytest.mark.parametrize("cells, message", [
    ([code("x = 1", None)], "execution counts [None]"),
    ([code("x = 1", 2), code("y = 2", 1)], "execution counts [2, 1]"),
    ([code("x", 1, [{"output_type": "stream", "name": "stderr", "text": "Warning: ..."}])],
     "wrote to stderr"),
    ([code("x", 1, [{"output_type": "error", "ename": "ValueError", "evalue": "bad"}])],
     "raised ValueError"),
    ([code("x", 1, [{"output_type": "stream", "name": "stdout", "text": "/home/me/data.csv\n"}])],
     "machine path (/home/)"),
    ([code("x", 1, metadata={"execution": {"iopub.status.busy": "2026-01-01T00:00:00Z"}})],
     "execution timings"),
])
def test_refusals(tmp_path, cells, message, capsys):
    path = notebook(tmp_path, cells)
    assert any(message in p for p in nbcheck.problems(path))
    assert nbcheck.main([str(path)]) == 1
    assert message in capsys.readouterr().out

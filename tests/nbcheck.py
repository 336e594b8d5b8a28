"""Refuse notebooks that nbval or a reader would trip over; the pre-commit hook runs this.

Usage: python tests/nbcheck.py [--reexecute] NOTEBOOK...

For each notebook it checks, reading the file as plain JSON:

- every non-empty code cell was executed, in order, in one fresh kernel (counts 1..n);
- no cell wrote to stderr or raised (warnings make nbval flaky; tracebacks are not prose);
- no output or metadata holds a machine-specific path (a home or temporary directory);
- no cell carries execution timings (they change on every run and bury real diffs).

With ``--reexecute`` it also executes a copy of each notebook top to bottom, with the
repository's Jupyter config, and refuses it if the result differs from the file: the stored
outputs must be what the code produces today. That needs the project's environment
(``make`` creates it) and a few seconds per chapter, so the hook runs it before a push.
Exit status 1 when anything is refused, 0 otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MACHINE_PATH = re.compile(r"(?<![\w.])(/home/|/Users/|/root/|/tmp/|/private/var/|/work/|[A-Za-z]:\\\\Users)")


def _texts(output):
    if output.get("output_type") == "stream":
        yield output.get("name", "stream"), "".join(output.get("text", ""))
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("+json") or mime.endswith("/plain"):
            yield mime, value if isinstance(value, str) else json.dumps(value)


def problems(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = []
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    ran = [c for c in code if "".join(c.get("source", "")).strip()]
    counts = [c.get("execution_count") for c in ran]
    if counts != list(range(1, len(ran) + 1)):
        found.append(f"execution counts {counts[:10]}{'...' if len(counts) > 10 else ''}: "
                     "run the notebook top to bottom in a fresh kernel (expected 1..n)")
    for i, cell in enumerate(code, 1):
        if "execution" in cell.get("metadata", {}):
            found.append(f"code cell {i} carries execution timings (use the repository's "
                         "Jupyter config: `make` installs it)")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"code cell {i} raised {out.get('ename')}: {out.get('evalue', '')[:80]}")
            for kind, text in _texts(out):
                if kind == "stderr" and text.strip():
                    found.append(f"code cell {i} wrote to stderr: {text.strip()[:80]!r}")
                if match := MACHINE_PATH.search(text):
                    found.append(f"code cell {i} shows a machine path ({match.group(0)}) in {kind}")
    if match := MACHINE_PATH.search(json.dumps(nb.get("metadata", {}))):
        found.append(f"notebook metadata holds a machine path ({match.group(0)})")
    return found


def reexecution_diff(path: Path) -> list[str]:
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        return [f"cannot re-execute: no jupyter next to {sys.executable} (run `make` first)"]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        shutil.copy(path, copy)
        run = subprocess.run([str(jupyter), "nbconvert", "--to", "notebook", "--execute",
                              "--inplace", str(copy)], capture_output=True, text=True,
                             cwd=path.resolve().parent)
        if run.returncode:
            return [f"re-execution failed: {run.stderr.strip().splitlines()[-1:]}"]
        if copy.read_bytes() != path.read_bytes():
            return ["re-executing it changes the file: its stored outputs are stale "
                    "(re-execute it and review the diff) or not deterministic"]
    return []


def main(argv: list[str]) -> int:
    reexecute = "--reexecute" in argv
    paths = [Path(a) for a in argv if a != "--reexecute"]
    status = 0
    for path in paths:
        if path.suffix != ".ipynb":
            continue
        found = problems(path)
        if reexecute and not found:
            found = reexecution_diff(path)
        for problem in found:
            print(f"{path}: {problem}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

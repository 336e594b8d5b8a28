"""Source listings for the book: the code of a rule without its docstrings.

The chapters print the rules they explain, so that the reader sees the code that runs. The
docstrings repeat the page's equations in reStructuredText, which is noise on the page;
:func:`source` drops them and keeps everything else, comments included.
"""

import ast
import inspect
import textwrap


def source(obj):
    """The source of a function or class ``obj`` with every docstring removed."""
    text = textwrap.dedent(inspect.getsource(obj))
    lines = text.splitlines(keepends=True)
    drop = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                drop.update(range(body[0].lineno - 1, body[0].end_lineno))
                if body[0].end_lineno < len(lines) and not lines[body[0].end_lineno].strip():
                    drop.add(body[0].end_lineno)      # the blank line after the docstring
    return "".join(line for i, line in enumerate(lines) if i not in drop)

"""House rules that keep the code reviewable: modules of at most 400 lines, functions of at most 80.

A longer function is allowed only with a comment `# long: <why>` on its `def` line.
"""

import ast
import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
_PY = sorted(p for pattern in ("keras_nna/**/*.py", "tutorials/*.py", "benchmarks/*.py",
                               "experiments/*.py", "tests/**/*.py")
             for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))
_CC = sorted(glob.glob(os.path.join(ROOT, "keras_nna", "runtime", "cc", "*")))


def _rel(path):
    return os.path.relpath(path, ROOT)


@pytest.mark.parametrize("path", _PY + _CC, ids=_rel)
def test_file_length(path):
    with open(path) as f:
        lines = f.read().count("\n")
    assert lines <= MAX_FILE_LINES, f"{_rel(path)} has {lines} lines; split it by concept"


def test_function_length():
    long = []
    for path in _PY:
        with open(path) as f:
            source = f.read()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and "# long:" not in lines[node.lineno - 1]:
                    long.append(f"{_rel(path)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "functions over 80 lines without a `# long: why` comment:\n" + "\n".join(long)

"""The README's Quick start runs as written (epochs cut to 1): users copy it first."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quick_start_code():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Quick start"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_start_runs(tmp_path, monkeypatch, capsys):
    code = re.sub(r"epochs=\d+", "epochs=1", _quick_start_code())
    assert code.count("epochs=1") == 2
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md (Quick start)", "exec"), namespace)  # noqa: S102
    result = namespace["result"]
    assert result.bit_exact
    assert (tmp_path / "faces.nnab").stat().st_size == result.program_bytes
    out = capsys.readouterr().out
    assert "nna-1core" in out

"""The README's Python block runs as written (STYLE: examples that run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_setup_commands_and_python_example():
    text = README.read_text(encoding="utf-8")
    assert 'pip install -e . && genvis-trust demo' in text
    assert 'pip install -e ".[dev]" && pytest' in text
    assert python_blocks()


@pytest.mark.parametrize("block", python_blocks())
def test_readme_python_block_runs(block, capsys):
    from genvis_trust.detectors import list_bundled

    if "default" not in list_bundled():
        pytest.fail("the bundled default detector is missing from genvis_trust/assets/detectors")
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "mean p(generated)" in out

"""Every Python example on the documentation pages runs: the ``>>>`` examples are doctests (``.ci/run``:
``pytest --doctest-glob='*.md' docs``); the other ```` ```python ```` blocks run here, each in a fresh
interpreter from the repository root."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _script_blocks():
    for page in sorted((ROOT / "docs").glob("*.md")):
        for i, code in enumerate(BLOCK.findall(page.read_text())):
            if ">>>" not in code:
                yield pytest.param(code, id=f"{page.name}#{i}")


@pytest.mark.parametrize("code", list(_script_blocks()))
def test_page_example_runs(code):
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_pages_have_examples():
    assert list(_script_blocks()), "no script examples found: the pattern or the pages changed"

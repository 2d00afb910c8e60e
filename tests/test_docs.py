"""The documentation runs: every ```python block of README.md and docs/**/*.md, and the site.

One test per Markdown file runs its blocks in order in one namespace (a later block uses the
names an earlier one defined), in a fresh temporary working directory with matplotlib's Agg
backend. A block fenced ```python no-run is shown but not run. A failing block's message names
the file and the line its fence opens on, and its traceback points at the file's own lines.

The site (mkdocs.yml) builds with ``mkdocs build --strict`` (no warnings: broken links and
anchors, pages left out of the nav, docstrings griffe cannot read), and its API reference
(docs/api/) has a page for every public module.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import matplotlib
import pyro
import pytest

ROOT = Path(__file__).resolve().parents[1]
NO_RUN = "no-run"
_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*python(?P<info>[^`]*)$")


def code_blocks(text: str) -> list[tuple[int, str, bool]]:
    """The ```python blocks of Markdown ``text``: (line of the opening fence, code, runs).

    Blocks indented under a list item are dedented by their fence's indent; ``runs`` is False
    for a block whose info string says ``no-run``. Other languages are ignored.

    Example:
        >>> code_blocks("x\\n```python\\na = 1\\n```\\n```python no-run\\nb\\n```\\n")
        [(2, 'a = 1\\n', True), (5, 'b\\n', False)]
    """
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body, j = [], i + 1
        while j < len(lines) and not close.match(lines[j]):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"line {i + 1}: a ```python fence is never closed")
        runs = NO_RUN not in match["info"].split()
        blocks.append((i + 1, "".join(line + "\n" for line in body), runs))
        i = j + 1
    return blocks


def run_markdown(path: Path) -> int:
    """Run the runnable python blocks of the Markdown file ``path`` in order; the number run.

    Raises AssertionError naming ``path``, the block's line and the error when a block fails.
    """
    import matplotlib.pyplot as plt

    namespace = {"__name__": "__main__", "__file__": str(path)}
    ran = 0
    try:
        for line, code, runs in code_blocks(path.read_text()):
            if not runs:
                continue
            # Padding to the block's first line makes tracebacks point at the Markdown file.
            source = "\n" * line + code
            try:
                exec(compile(source, str(path), "exec"), namespace)
            except Exception as error:
                detail = traceback.format_exc(limit=-6)
                raise AssertionError(
                    f"{path}:{line}: the python block there failed with "
                    f"{type(error).__name__}: {error}\n{detail}"
                ) from error
            ran += 1
    finally:
        plt.close("all")
    return ran


def _markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [f for f in files if any(runs for _, _, runs in code_blocks(f.read_text()))]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_blocks_run(path, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    pyro.clear_param_store()  # each page starts as a fresh session would
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(path)])
    assert run_markdown(path) > 0


def test_failing_block_names_file_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\nx = 2\n```\n\n```python no-run\nraise SystemExit\n```\n\n"
        "- item\n\n  ```python\n  y = x + 1\n  assert y == 3\n  ```\n\n"
        "```python\nprint(x)\nundefined_name\n```\n"
    )
    with pytest.raises(AssertionError, match=r"page\.md:18: .*NameError.*undefined_name") as info:
        run_markdown(page)
    assert f'File "{page}", line 20' in str(info.value)


def test_unclosed_fence_is_an_error():
    with pytest.raises(ValueError, match="line 2"):
        code_blocks("a\n```python\nx = 1\n")


def test_api_reference_covers_every_public_module():
    """Each public module has a ``:::`` directive in docs/api/, its own or its subpackage's
    (whose page shows its submodules); the package's own page lists no members."""
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    documented = set(re.findall(r"^::: (pyro_circuits\.[\w.]+)\s*$", pages, re.MULTILINE))
    package = ROOT / "pyro_circuits"
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
        if not any(part.startswith("_") for part in path.relative_to(package).parts[:-1])
        and (path.name == "__init__.py" or not path.name.startswith("_"))
    ]
    missing = [
        name
        for name in modules
        if name != "pyro_circuits"
        and not any(name == d or name.startswith(d + ".") for d in documented)
    ]
    assert not missing, f"modules without an API page (add them to docs/api/): {missing}"


@pytest.mark.skipif(
    shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
    reason="mkdocs is not installed in this environment",
)
def test_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "epi" / "index.html").exists()

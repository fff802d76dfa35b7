"""The docs are true: every link and picture they name is in the repository, and the Python API page's code
runs as it stands."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_and_picture_of_a_page_is_there(page):
    text = page.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    missing = []
    for target in targets:
        if re.match(r"[a-z]+://", target) or target.startswith(("#", "mailto:")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.name} links to what is not there: {missing}"


def test_the_readme_is_a_quick_start_that_lists_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python-api.md").read_text(), re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "models", tmp_path / "models")  # "from the repository's root", without writing there
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), {})
    assert (tmp_path / "digits.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "runs" / "python-api").glob("checkpoint_*")) == ["checkpoint_0000020"]

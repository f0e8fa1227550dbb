"""The documentation site's sources stay in step with the code (the strict build itself runs in `make docs`)."""

import importlib
import re
from pathlib import Path

import pytest

import poolkit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _nav_files() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1].split("\nmarkdown_extensions:", 1)[0]
    return re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.M)


def test_every_registered_pool_has_a_row_with_its_formula():
    text = (DOCS / "layers.md").read_text()
    row = re.compile(r"^\| `([a-z_0-9]+)` \| ((?:\\\||[^|])+?) \|", flags=re.M)
    rows = {m.group(1): m.group(2) for m in row.finditer(text)}
    missing = [p for p in poolkit.list_pools() if p not in rows]
    assert not missing, f"docs/layers.md has no row for {missing}"
    assert all(len(f.strip()) > 5 for f in rows.values())


def test_nav_pages_exist_and_link_only_existing_files():
    pages = _nav_files()
    assert {"index.md", "getting-started.md", "layers.md", "instruments.md", "lab.md", "surgery.md",
            "gallery.md"} <= set(pages)
    for page in pages:
        path = DOCS / page
        assert path.exists(), page
        for target in re.findall(r"\]\(([^)#\s]+)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).resolve().exists(), f"{page} links {target}"
    assert (DOCS / "demo.png").exists()


@pytest.mark.parametrize("page", sorted(p.name for p in (DOCS / "api").glob("*.md")))
def test_api_pages_name_importable_modules(page):
    modules = re.findall(r"^::: ([\w.]+)", (DOCS / "api" / page).read_text(), flags=re.M)
    assert modules, page
    for name in modules:
        importlib.import_module(name)


def test_readme_links_the_docs_and_names_no_file_outside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "docs/index.md" in readme and "make docs" in readme and "optuna-dashboard sqlite:///" in readme
    for target in re.findall(r"\]\(([^)#\s]+)", readme):
        if "://" not in target:
            assert (ROOT / target).resolve().is_relative_to(ROOT) and (ROOT / target).exists(), target

"""The README and the documentation site, checked without building it.

`.ci/run` builds the site with `mkdocs build --strict` (links, anchors and API references). These
tests are the cheap part: the README's shape, its links as GitHub renders them, and the nav.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TWO_COMMANDS = (
    "bash scripts/setup.sh && .venv/bin/enrichment-light serve --untrained --analyze --out out/",
    "bash scripts/setup.sh && .venv/bin/python -m pytest",
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


class _NavLoader(yaml.SafeLoader):
    """mkdocs.yml uses `!!python/...` tags (the slugify function); the nav does not need them."""


_NavLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def _github_slug(heading: str) -> str:
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    anchors: set[str] = set()
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (match := re.match(r"^#{1,6} (.+)$", line)):
            anchors.add(_github_slug(match.group(1)))
    return anchors


def _nav_files(nav: list) -> list[str]:
    files: list[str] = []
    for entry in nav:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            files.extend(_nav_files(value) if isinstance(value, list) else [value])
    return files


def test_readme_is_short_and_starts_with_the_two_commands_when_read_by_a_new_user():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the limit is 250 (move the rest to docs/)"
    first_block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert [line.split("#")[0].strip() for line in first_block] == list(TWO_COMMANDS)
    assert lines.index("```sh") < 12, "the two commands must stay at the top of README.md"


def test_getting_started_repeats_the_readme_commands_when_the_docs_are_read_alone():
    page = (DOCS / "getting-started.md").read_text()
    for command in TWO_COMMANDS:
        assert command in page


def test_readme_links_resolve_when_rendered_on_github():
    broken = []
    for target in LINK.findall(README.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else README
        if not file.is_file():
            broken.append(f"{target}: no file {path}")
        elif anchor and anchor not in _anchors(file.read_text()):
            broken.append(f"{target}: no heading with anchor #{anchor} in {path}")
    assert not broken, broken


def test_mkdocs_nav_lists_every_page_when_the_site_is_built():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_NavLoader)
    nav = _nav_files(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages, f"in nav only: {set(nav) - set(pages)}; pages not in nav: {set(pages) - set(nav)}"
    for page in ("architecture.md", "tensorrt.md", "resilience.md", "int8.md", "cpu-performance.md", "shm.md"):
        assert page in nav


def test_repository_points_at_docs_pages_when_it_names_a_guide_section():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    problems = []
    for name in tracked.splitlines():
        path = ROOT / name
        if name.startswith("docs/") or name == "README.md" or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for ref in re.findall(r'README\.md[,:] "[^"]+"', text):
            problems.append(f"{name}: {ref} (the section moved to docs/)")
        for ref in re.findall(r"docs/[\w/-]+\.md", text):
            if not (ROOT / ref).is_file():
                problems.append(f"{name}: {ref} (no such page)")
    assert not problems, problems

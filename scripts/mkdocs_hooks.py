"""MkDocs hook: publish figures that the benchmark scripts write outside docs/ (no second copy in git)."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

# site path -> repository path; the benchmark scripts own these files.
EXTERNAL_FILES = {"assets/compare.png": "benchmarks/results/compare.png"}


def on_files(files: Files, config) -> Files:
    """Add the external figures to the build, so Markdown links to them are checked like any page."""
    root = Path(config["config_file_path"]).parent
    for uri, source in EXTERNAL_FILES.items():
        files.append(File.generated(config, uri, abs_src_path=str(root / source)))
    return files

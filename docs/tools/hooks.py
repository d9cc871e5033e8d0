"""mkdocs hooks: the generated pages (docs/tools/reference.py) added to the site at every build,
so the CLI and config references and the performance history cannot go stale."""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference


def on_files(files, config):
    for name, make in reference.PAGES.items():
        files.append(File.generated(config, name, content=make()))
    return files

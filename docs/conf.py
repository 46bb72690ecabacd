"""Sphinx configuration: the API reference is generated from the installed package's docstrings.

Build with ``make docs`` (warnings are errors). ``ferrosio`` must be importable, extension
included: the Makefile installs the release wheel into the docs environment.
"""

from __future__ import annotations

import ferrosio

project = "ferrosio"
author = "ferrosio contributors"
copyright = "2026, ferrosio contributors"
release = ferrosio.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# design.md links to files outside the docs tree (benches/, the shared tools): those stay text
suppress_warnings = ["myst.xref_missing"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# undoc-members: a public method without a docstring still appears, with its signature
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
}
# intersphinx needs the network, which the docs build does not use: standard names stay text
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

html_theme = "alabaster"
html_title = f"ferrosio {release}"
html_static_path: list[str] = []

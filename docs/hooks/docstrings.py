"""MkDocs hook: render docstrings written for doctest and Sphinx as readable Markdown.

The API pages come from docstrings that are also doctests (Google style, ``Example:``
sections of ``>>>`` lines) and use Sphinx roles (``:func:`name```). Plain Markdown
reads ``>>>`` as nested quotes and ``x[0]`` in an output line as a link reference,
so a Markdown preprocessor (used by the pages and, through mkdocstrings, by every
docstring) fences each doctest block as ``pycon`` code and turns roles into code.
"""

from __future__ import annotations

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`~?([^`]+)`")
_FENCE = re.compile(r"^\s*(```|~~~)")


def fence_doctests(lines: list[str]) -> list[str]:
    """Wrap every run of ``>>>`` lines (with their ``...`` and output lines) in a ``pycon`` fence."""
    out: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_fence = not in_fence
        if in_fence or not line.lstrip().startswith(">>>"):
            out.append(line if in_fence else _ROLE.sub(r"`\1`", line))
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        out += ["", indent + "```pycon", *(indent + b for b in block), indent + "```", ""]
    return out


class _Doctests(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        return fence_doctests(lines)


class DoctestExtension(Extension):
    def extendMarkdown(self, md):  # Markdown's API name
        md.preprocessors.register(_Doctests(md), "poolkit_doctests", 40)


@event_priority(100)  # before mkdocstrings copies the Markdown extensions for the docstrings
def on_config(config, **kwargs):
    config.markdown_extensions.append(DoctestExtension())
    return config

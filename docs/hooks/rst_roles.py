"""MkDocs hook: render the reStructuredText constructs that optlib's docstrings use.

The docstrings are written for both plain-text readers and documentation tools, and several use
reStructuredText: ``.. math::`` blocks, inline ``:math:`...``` roles and cross-reference roles such
as ``:func:`minimize``` or ``:class:`~optlib.result.Trace```. mkdocstrings renders docstrings as
Markdown, so without help these appear verbatim on the API page. This hook adds a small Markdown
preprocessor (to the pages and, through the shared extension list, to mkdocstrings' docstring
rendering) that rewrites

* a ``.. math::`` directive and its indented body into ``$$ ... $$`` blocks (one per
  blank-line-separated equation), which ``pymdownx.arithmatex`` then renders;
* ``:math:`x``` into ``$x$``;
* ``:func:``, ``:class:``, ``:mod:``, ``:meth:``, ``:attr:``, ``:data:``, ``:obj:``, ``:exc:`` roles
  into inline code (a leading ``~`` keeps only the last dotted component, as in Sphinx).

Text inside fenced code blocks is left alone.
"""

from __future__ import annotations

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor

_MATH_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. math::\s*$")
_MATH_ROLE = re.compile(r":math:`(?P<tex>[^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc):`(?P<target>[^`]+)`")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _xref(match: re.Match[str]) -> str:
    target = match.group("target").strip()
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def _inline(line: str) -> str:
    line = _MATH_ROLE.sub(lambda m: f"${m.group('tex').strip()}$", line)
    return _XREF_ROLE.sub(_xref, line)


def _width(line: str) -> int:
    return len(line) - len(line.lstrip())


class RstRolesPreprocessor(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        in_fence = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if _FENCE.match(line):
                in_fence = not in_fence
            if in_fence:
                out.append(line)
                i += 1
                continue
            m = _MATH_DIRECTIVE.match(line)
            if m is None:
                out.append(_inline(line))
                i += 1
                continue
            indent = len(m.group("indent"))
            j = i + 1
            body: list[str] = []
            while j < len(lines) and (not lines[j].strip() or _width(lines[j]) > indent):
                body.append(lines[j])
                j += 1
            while body and not body[-1].strip():
                body.pop()
            widths = [_width(b) for b in body if b.strip()]
            cut = min(widths) if widths else 0
            chunks: list[list[str]] = [[]]
            for b in body:
                if b.strip():
                    chunks[-1].append(b[cut:].rstrip())
                elif chunks[-1]:
                    chunks.append([])
            for chunk in chunks:
                if chunk:
                    out.extend(["", "$$", *chunk, "$$", ""])
            i = j
        return out


class RstRolesExtension(Extension):
    def extendMarkdown(self, md):  # noqa: N802 - Markdown's API name
        md.preprocessors.register(RstRolesPreprocessor(md), "optlib_rst_roles", 27)


def on_config(config, **kwargs):
    """Add the extension to every Markdown instance MkDocs and mkdocstrings create."""
    config.markdown_extensions.append(RstRolesExtension())
    return config

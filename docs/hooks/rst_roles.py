"""MkDocs hook: render the reStructuredText roles of tokenguard's docstrings as cross-references.

tokenguard's docstrings use Sphinx roles (:class:`Guard`, :meth:`~tokenguard.Guard.review`) and
``Example::`` literal-block markers. mkdocstrings renders docstrings as Markdown, where a role comes
out as ``:class:<code>Guard</code>``. This hook turns each role into an optional autorefs
cross-reference (a link when the target is documented, plain code otherwise; never a warning) and
drops the second colon of ``::`` markers.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|exc|data|obj):<code>(~?)([A-Za-z_][\w.]*)(\(\))?</code>")
_LITERAL_MARKER = re.compile(r"(\S)::</p>")


def _identifier(name: str, page_uri: str) -> str:
    if name.startswith("tokenguard"):
        return name
    if page_uri.startswith("reference/testing"):
        return f"tokenguard.testing.{name}"
    return f"tokenguard.{name}"


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    uri = page.file.src_uri

    def replace(match: re.Match[str]) -> str:
        tilde, name, parens = match.group(1), match.group(2), match.group(3) or ""
        title = (name.rsplit(".", 1)[-1] if tilde else name) + parens
        return f'<autoref identifier="{_identifier(name, uri)}" optional><code>{title}</code></autoref>'

    html = _ROLE.sub(replace, html)
    return _LITERAL_MARKER.sub(r"\1:</p>", html)

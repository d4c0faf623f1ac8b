"""HTTP reason phrases that do not depend on the Python version."""

from __future__ import annotations

import http

# RFC 9110's names where Python 3.13 renamed them: without this, a problem's
# title and status line would depend on the interpreter the server runs on.
_RFC9110_PHRASES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def status_phrase(status: int) -> str:
    """The reason phrase for ``status``, the same on every Python version (RFC 9110's names)."""
    if status in _RFC9110_PHRASES:
        return _RFC9110_PHRASES[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"

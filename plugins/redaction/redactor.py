"""Mask secrets in log events: plain Python, no Falcon and no structlog needed.

A :class:`Redactor` is a structlog processor (``redactor(logger, method_name,
event_dict)``) and can also be used on its own (:meth:`Redactor.redact`).

* **Keys.** A key is sensitive when one of its *word segments* (after
  splitting on ``-``, ``_``, ``.``, spaces and camelCase) spells a sensitive
  term: ``apiKey``, ``API-KEY``, ``X-Auth-Token`` and ``accessKey`` are
  sensitive; ``author``, ``tokenizer`` and ``authored_by`` are not.  The whole
  value under a sensitive key is replaced, whatever it is (a string, a number,
  a nested dict...), except ``None``.
* **Containers.** Dicts, lists, tuples and sets are walked at any depth (the
  caller's objects are never modified: changed containers are copies).
* **Strings.** Every other string is scrubbed: the password of a URL
  (``postgresql://user:secret@host``), ``Authorization`` / ``Cookie`` header
  lines, ``Bearer`` tokens, ``key=value`` / ``key: value`` pairs with a
  sensitive key (query strings: ``?token=...&page=2`` keeps ``page``) and
  ``"key": "value"`` pairs of JSON text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any

REDACTED = "***REDACTED***"

#: The sensitive terms, in any spelling (``api_key`` also covers ``apiKey``, ``API-KEY`` and ``apikey``).
DEFAULT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "auth",
    "authorization",
    "credential",
    "private_key",
    "access_key",
    "cookie",
)

#: Keys whose values the logging pipeline itself writes: never scanned.
TRUSTED_KEYS = frozenset({"level", "logger", "app_name", "environment", "timestamp"})

#: Deeper than this, a value is replaced outright (also stops reference cycles).
MAX_DEPTH = 64

_CACHE_LIMIT = 4096
#: Clean strings a redactor remembers (see :meth:`Redactor._scrub_and_remember`), and the longest it keeps.
_CLEAN_LIMIT = 4096
_CLEAN_MAX_LENGTH = 512

# Word segments of a key: acronyms (``API`` in ``APIKey``), capitalised or
# lower-case words, digit runs.  Anything else separates segments.
_SEGMENT = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# One pass finds every candidate; Redactor.scrub decides what to mask.
_SCRUB = re.compile(
    # 1. the password of a URL: scheme://user:PASSWORD@host (up to the last @ of the authority)
    r"(?P<url>\b[a-z][a-z0-9+.\-]*://[^\s:/@?#]*:)(?P<url_secret>[^\s/?#]+)(?=@)"
    # 2. Authorization / Cookie header lines: mask the rest of the line
    r"|(?P<header>\b(?:proxy-)?authorization|\bset-cookie|\bcookie)(?P<header_sep>[ \t]*:[ \t]*)[^\r\n]+"
    # 3. bearer tokens anywhere
    r"|(?P<bearer>\bbearer\s+)[a-z0-9._~+/\-]+=*"
    # 4. key=value, key: value, "key": "value", 'key': 'value' (query strings, forms, JSON, reprs, free text)
    # (the value is only looked at: after an innocent key the scan goes on inside the value)
    r"|(?P<pair_key>(?<![a-z0-9_.\-])(?P<quote>[\"']?)[a-z0-9_.\-]+(?P=quote))(?P<pair_sep>[ \t]*[=:][ \t]*)"
    r"(?=(?P<pair_value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^&\s#;,?=\"'})\]]+))",
    re.IGNORECASE,
)


def key_segments(key: str) -> tuple[str, ...]:
    """Split a key into lower-case word segments: ``"X-Auth-Token"`` -> ``("x", "auth", "token")``."""
    return tuple(s.lower() for s in _SEGMENT.findall(key))


class KeyMatcher:
    """Decide whether a key is sensitive, by word segments, with a bounded cache."""

    def __init__(self, terms: Iterable[str]) -> None:
        singles: set[str] = set()
        multis: set[tuple[str, ...]] = set()
        for term in terms:
            segments = key_segments(term)
            if not segments:
                raise ValueError(f"{term!r} has no letters or digits")
            if len(segments) == 1:
                singles.add(segments[0])
            else:
                multis.add(segments)
                singles.add("".join(segments))  # accesskey, privatekey
        self.singles = frozenset(singles)
        self.multis = tuple(sorted(multis))
        # Every sensitive key, lower-cased, contains one of these: a single
        # term, or the last segment of a multi-segment one.  Drop those that
        # contain another ("authorization" holds "auth").
        candidates = singles | {m[-1] for m in multis}
        self.needles = tuple(sorted(n for n in candidates if not any(o != n and o in n for o in candidates)))
        self.cache: dict[str, bool] = {}

    def may_occur_in(self, text: str) -> bool:
        """False when no sensitive key can appear in ``text`` (a cheap pre-check)."""
        lower = text.lower()
        for needle in self.needles:  # noqa: SIM110 - a plain loop is twice as fast as any() here
            if needle in lower:
                return True
        return False

    def _segment_matches(self, segment: str, term: str) -> bool:
        return segment == term or segment == term + "s"  # tokens, credentials, api_keys

    def _compute(self, key: str) -> bool:
        segments = key_segments(key)
        for segment in segments:
            if segment in self.singles or (segment.endswith("s") and segment[:-1] in self.singles):
                return True
        for multi in self.multis:
            n = len(multi)
            for i in range(len(segments) - n + 1):
                window = segments[i : i + n]
                if window[:-1] == multi[:-1] and self._segment_matches(window[-1], multi[-1]):
                    return True
        return False

    def __call__(self, key: str) -> bool:
        hit = self.cache.get(key)
        if hit is None:
            hit = self._compute(key)
            if len(self.cache) < _CACHE_LIMIT:
                self.cache[key] = hit
        return hit


class Redactor:
    """A structlog processor that masks sensitive values before rendering.

    ``Redactor()`` uses :data:`DEFAULT_KEYS`; ``extra_keys`` adds terms.
    Two redactors with the same terms compare equal (the logging plugin
    uses that to keep its configuration when nothing changed).
    """

    def __init__(self, extra_keys: Iterable[str] = (), *, replacement: str = REDACTED) -> None:
        self.terms = tuple(sorted({*DEFAULT_KEYS, *extra_keys}))
        self.replacement = replacement
        self.is_sensitive = KeyMatcher(self.terms)
        self._clean: set[str] = set()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Redactor):
            return NotImplemented
        return (self.terms, self.replacement) == (other.terms, other.replacement)

    def __hash__(self) -> int:
        return hash((self.terms, self.replacement))

    def __repr__(self) -> str:
        return f"Redactor(terms={self.terms!r})"

    # -- structlog processor -------------------------------------------------

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        matcher = self.is_sensitive
        known = matcher.cache
        clean = self._clean
        for key, value in event_dict.items():  # only values change: safe while iterating
            if value is None or key in TRUSTED_KEYS:
                continue
            sensitive = known.get(key)
            if sensitive is None:
                sensitive = matcher(key)
            if sensitive:
                event_dict[key] = self.replacement
            elif isinstance(value, str):
                if value not in clean:
                    event_dict[key] = self._scrub_and_remember(value)
            elif isinstance(value, _CONTAINERS):
                event_dict[key] = self._walk(value, 1)
        return event_dict

    def _scrub_and_remember(self, text: str) -> str:
        """:meth:`scrub`, remembering short texts found clean.

        Most values of a log line recur from line to line (method, route,
        path, user agent, client address), and scanning a string costs far
        more than a set lookup.  Only clean texts are kept (never one that
        held a secret), at most :data:`_CLEAN_LIMIT`, forgotten all at once
        when full so that the set follows the traffic.
        """
        scrubbed = self._scrub(text) if self._may_hold_secrets(text) else text
        if scrubbed is text and len(text) <= _CLEAN_MAX_LENGTH:
            clean = self._clean
            if len(clean) >= _CLEAN_LIMIT:
                clean.clear()
            clean.add(text)
        return scrubbed

    # -- plain API -----------------------------------------------------------

    def redact(self, value: Any) -> Any:
        """Return ``value`` with every secret masked (containers are copied, never modified)."""
        return self._walk(value, 0)

    def scrub(self, text: str) -> str:
        """Mask URL passwords, auth/cookie headers, bearer tokens and sensitive pairs inside ``text``."""
        return self._scrub(text) if self._may_hold_secrets(text) else text

    def _may_hold_secrets(self, text: str) -> bool:
        # The regular expression costs microseconds per line of text, and most
        # strings hold neither a URL with credentials nor any sensitive word.
        return ("@" in text and "://" in text) or "earer" in text or self.is_sensitive.may_occur_in(text)

    def _scrub(self, text: str) -> str:
        search = _SCRUB.search
        match = search(text)
        if match is None:
            return text
        out: list[str] = []
        pos = 0
        while match is not None:
            if match["url"] is not None:
                out += (text[pos : match.end("url")], self.replacement)
                pos = match.end()
            elif match["header"] is not None:
                out += (text[pos : match.end("header_sep")], self.replacement)
                pos = match.end()
            elif match["bearer"] is not None:
                out += (text[pos : match.end("bearer")], self.replacement)
                pos = match.end()
            elif self.is_sensitive(match["pair_key"]):
                value = match["pair_value"]
                quote = value[0] if value[0] in "\"'" else ""
                out += (text[pos : match.end()], quote, self.replacement, quote)
                pos = match.end("pair_value")
            else:
                out.append(text[pos : match.end()])
                pos = match.end()
            match = search(text, pos)
        out.append(text[pos:])
        return "".join(out)

    def _walk(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if not isinstance(value, _CONTAINERS):
            return value
        if depth > MAX_DEPTH:
            return self.replacement
        if isinstance(value, dict):
            is_sensitive = self.is_sensitive
            return {
                key: self.replacement
                if item is not None and isinstance(key, str) and is_sensitive(key)
                else self._walk(item, depth + 1)
                for key, item in value.items()
            }
        items = (self._walk(item, depth + 1) for item in value)
        if isinstance(value, list):
            return list(items)
        if isinstance(value, tuple):
            return tuple(items)
        if isinstance(value, frozenset):
            return frozenset(items)
        return set(items)


_CONTAINERS = (dict, list, tuple, set, frozenset)

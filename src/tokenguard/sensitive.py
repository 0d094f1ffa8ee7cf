"""The sensitive-data scanner: find e-mail addresses, phone numbers, payment cards, IBANs, US social
security numbers, IP addresses, API keys, private keys and JWTs in text, with few false positives.

:func:`scan` (``tg.scan``) returns :class:`Finding` objects (a kind and character offsets) sorted by
position; :func:`redact` replaces them. A :class:`Scanner` runs a chosen set of :class:`Detector`
objects (the built-in ones, your own, or :class:`PresidioDetector`) and resolves overlaps. The Guard
walks request bodies with :func:`scan_texts` and :func:`redact_json`.

Each built-in detector pairs a cheap way to find candidates with a validation of what it found
(Luhn and card-brand prefixes, IBAN lengths and the mod-97 check, SSN ranges, octet ranges, a JWT
header that decodes to JSON, the entropy of a value assigned to a secret-looking key). Finding
candidates cheaply is most of the speed: every regex starts with a literal, preferably a rare
character, so that the engine jumps between its occurrences instead of trying a match at every
position (a leading character class or look-behind makes it do that: ~5 ms per MB); number formats
are found in a "shape" of the text where every digit is "0" (see ``_Derived``). The rules are in
``docs/concepts/sensitive-data.md``, the measured throughput in ``benchmarks/scan.py``. Only the
standard library is imported (Presidio by its adapter, when built).
"""

from __future__ import annotations

import importlib
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice, repeat
from operator import attrgetter
from typing import Any, Protocol

from .errors import ConfigError

__all__ = [
    "BUILTIN_KINDS",
    "DEFAULT_PLACEHOLDER",
    "SKIP_KEYS",
    "Detector",
    "Finding",
    "PresidioDetector",
    "Scanner",
    "builtin_detectors",
    "redact",
    "redact_json",
    "scan",
    "scan_texts",
]

BUILTIN_KINDS: tuple[str, ...] = (
    "email",
    "phone",
    "payment_card",
    "iban",
    "us_ssn",
    "ip_address",
    "api_key",
    "private_key",
    "jwt",
)
"""The kinds the built-in detectors report."""

DEFAULT_PLACEHOLDER = "[REDACTED:{kind}]"
"""What :func:`redact` puts in place of a finding: ``{kind}`` (and ``{detector}``) are filled in."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of sensitive data: ``text[start:end]`` is the value (no key name, quotes or prefix).

    ``kind`` is one of :data:`BUILTIN_KINDS` or a custom detector's kind; ``detector`` names the
    detector that found it (``"luhn_card"``, ``"openai_key"``, ``"presidio"``...).
    """

    kind: str
    start: int
    end: int
    detector: str


class Detector(Protocol):
    """What a :class:`Scanner` runs: anything with these three members.

    ``find`` returns findings in any order, possibly overlapping; the scanner sorts them and resolves
    overlaps. A detector may also have an ``int`` attribute ``priority`` (default 50) that breaks ties
    between overlapping findings of the same length (the built-in JWT detector has 90, phone 30).
    """

    name: str
    kinds: tuple[str, ...]

    def find(self, text: str) -> Iterable[Finding]:
        """The findings in ``text``."""
        ...


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the detectors


def _is_word(ch: str) -> bool:
    # An empty string (start or end of text) is not a word character.
    return ch.isalnum() or ch == "_"


# c * log2(c) for the character counts of a value (at most 512 characters long: _QUOTED_VALUE).
# (A list: map calls a list's bound __getitem__ about twice as quickly as a tuple's.)
_C_LOG2_C = [c * math.log2(c) if c else 0.0 for c in range(513)]


def _entropy(counts: Iterable[int], n: int) -> float:
    """Shannon entropy in bits per character of a string of ``n`` characters (at most 512) that has
    each of its characters ``counts`` times: log2(n) - sum(c * log2(c)) / n."""
    return math.log2(n) - sum(map(_C_LOG2_C.__getitem__, counts)) / n


# The "shape" of a text: every ASCII digit becomes "0", every ASCII letter "A" or "a" ("_" too), any
# other non-ASCII character "?", ASCII punctuation stays. Offsets are the same as in the text. Number
# formats then become literal strings ("000-00-0000", "0000 0000 0000"), which the regex engine finds
# by a fast literal search instead of trying a match at every digit: that is most of the speed of the
# card, phone, SSN and IBAN detectors.
_SHAPE_TABLE = bytes.maketrans(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_", b"0" * 10 + b"A" * 26 + b"a" * 27
)


# Number formats in the shape, in one regex that starts with the literal "000": 078-05-1120 (SSN),
# 415-555-0132 and (415) 555-0132 (NANP phone), 4111 1111 1111 1111 / 378282246310005 /
# 3782 822463 10005 (cards).
# Each separator is spelled out (no groups or back-references), so that every branch starts with a
# literal: the engine then rejects a branch on its first character, a third faster on text full of
# digits (logs, code). The branches have distinct lengths, which tell them apart (_NUMBER_KINDS),
# except the "(415)" one. That one is found from the "000" after the "(" (the regex tries there
# anyway, so it costs no pass of its own) and takes no more than "000)": the rest is looked at
# ahead, since its last four digits may begin a card that the search must still find.
_NUMBERS = re.compile(
    r"""000(?<![0Aa]000)(?:   # (not from inside a longer run of digits or a word)
        -00-0000 | \ 00\ 0000                         # SSN: 11 characters
      | -000-0000 | \.000\.0000 | \ 000\ 0000        # NANP: 12
      | 0(?:0{9,15}                                    # cards: 13 or more
           | \ 0000\ 0000(?:\ 0{1,4}){0,2} | -0000-0000(?:-0{1,4}){0,2}
           | \ 000000\ 0{4,5} | -000000-0{4,5})
      | 000000(?!0)                                    # 9: nine digits alone, an SSN after a cue word
      | \)(?<=\(000\))(?=([\ .-]?000[\ .-]0000))        # NANP in parentheses: "000)", then group 1
    )""",
    re.VERBOSE,
)
_NUMBER_KINDS = {9: "nine", 11: "ssn", 12: "nanp"}  # by length; longer ones are cards


class _Derived:
    """Views of one text that several detectors use, each computed at most once per scan."""

    __slots__ = ("_colons", "_families", "_numbers", "_shape", "assignments", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._shape: str | None = None
        self.assignments: list[tuple[str, int, int]] | None = None
        self._numbers: dict[str, list[tuple[int, int, str]]] | None = None
        self._families: dict[str, list[int]] = {}
        self._colons: tuple[list[tuple[int, int]], list[tuple[int, int]]] | None = None

    @property
    def shape(self) -> str:
        if self._shape is None:
            # "replace" turns each non-ASCII character into one "?", so offsets do not move.
            self._shape = self.text.encode("ascii", "replace").translate(_SHAPE_TABLE).decode("ascii")
        return self._shape

    @property
    def numbers(self) -> dict[str, list[tuple[int, int, str]]]:
        """SSN-, NANP phone- and card-shaped candidates ``(start, end, separator)``, found in one pass
        over the shape (their detectors check boundaries and validate). A "paren" one, (415) 555-0132,
        starts after its "(" and has ")" as its separator."""
        if self._numbers is None:
            found: dict[str, list[tuple[int, int, str]]] = {"ssn": [], "nanp": [], "card": [], "nine": [], "paren": []}
            for m in _NUMBERS.finditer(self.shape):
                start, end = m.span()
                # The separator is the first character that is not a digit ("" for digits alone).
                sep = m.group().lstrip("0")[:1]
                if sep == ")":
                    found["paren"].append((start, m.end(1), sep))
                else:
                    found[_NUMBER_KINDS.get(end - start, "card")].append((start, end, sep))
            self._numbers = found
        return self._numbers

    @property
    def colons(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The spans of the matches of _IPV6_HINT and of _ASSIGN_COLON, as each one's finditer finds
        them, from one pass over the text (_colons)."""
        if self._colons is None:
            ipv6: list[tuple[int, int]] = []
            assign: list[tuple[int, int]] = []
            ipv6_end = 0
            for m in _colons().finditer(self.text):
                if m.lastgroup == "assign":
                    assign.append((m.start(), m.end("assign")))
                elif m.start() >= ipv6_end:  # (finditer goes on from the end of a match, so must this)
                    ipv6_end = m.end("ipv6")
                    ipv6.append((m.start(), ipv6_end))
            self._colons = (ipv6, assign)
        return self._colons

    def family_hits(self, letter: str) -> list[int]:
        """Where the regex of a family of vendor formats (_vendor_families) matches: one pass for all."""
        hits = self._families.get(letter)
        if hits is None:
            hits = self._families[letter] = [m.start() for m in _vendor_families()[letter][0].finditer(self.text)]
        return hits


# One entry per thread, for the text being scanned; Scanner.scan drops it when done, so no text is
# kept after a scan.
_local = threading.local()


def _derived(text: str) -> _Derived:
    d: _Derived | None = getattr(_local, "derived", None)
    if d is None or d.text is not text:
        d = _Derived(text)
        _local.derived = d
    return d


# The prefilter. Each built-in detector declares in ``_requires`` what its ``find`` cannot do without:
# a tuple of masks of the trigger bits below, each mask a group of which the text must have at least
# one (the literal its regexes start with, the "@" of an address, digits for the number formats). A
# text that lacks a group cannot give that detector a finding, so the scanner does not call it (see
# ``Scanner.scan``): a prompt with nothing sensitive in it calls few detectors or none.
#
# The first bits are single characters, tested in every text: ``ch in text`` is a memchr, a few ns in a
# short text and still cheap in a long one (the tests are written out one by one: a loop or a map over
# the characters costs 2-3 times as much). The others, strings and digit counts, are tested only in
# texts of up to _SHORT_TEXT characters, where they cost less than a detector call; in a longer text a
# string test costs about as much as the regex pass it would spare, and the strings are usually there
# anyway, so they count as present.
(
    _T_AT,
    _T_DOT,
    _T_COLON,
    _T_EQUALS,
    _T_DASH,
    _T_UNDERSCORE,
    _T_SLASH,
    _T_PLUS,
    _T_J,
    _T_A,
    _T_DIGIT,
    # Short texts only:
    _T_PEM,
    _T_JWT,
    _T_SK,
    _T_SK_ANT,
    _T_K_LIVE,
    _T_AWS_ID,
    _T_AIZA,
    _T_GITHUB,
    _T_XOX,
    _T_SLACK_HOOK,
    _T_SECRET_WORD,
    _T_DOTS_3,
    _T_DIGITS_2,
    _T_DIGITS_4,
    _T_DIGITS_9,
    _T_DIGITS_13,
) = (1 << i for i in range(27))
_T_SHORT_ONLY = (1 << 27) - _T_PEM  # all the bits from _T_PEM on
_SHORT_TEXT = 512


def _has_secret_word(lowered: str) -> bool:
    """``lowered`` (lower case) contains one of the words that each name _SECRET_NAME accepts contains
    ("pass" of "passwd", "key" of "api_key", "auth" of "authorization"...)."""
    return (
        "key" in lowered
        or "token" in lowered
        or "pass" in lowered
        or "secret" in lowered
        or "auth" in lowered
        or "pwd" in lowered
        or "credential" in lowered
    )


def _triggers(text: str) -> int:
    """The trigger bits of ``text``: those of the characters and strings that occur in it."""
    mask = (
        (_T_AT if "@" in text else 0)
        | (_T_DOT if "." in text else 0)
        | (_T_COLON if ":" in text else 0)
        | (_T_EQUALS if "=" in text else 0)
        | (_T_DASH if "-" in text else 0)
        | (_T_UNDERSCORE if "_" in text else 0)
        | (_T_SLASH if "/" in text else 0)
        | (_T_PLUS if "+" in text else 0)
        | (_T_J if "J" in text else 0)
        | (_T_A if "A" in text else 0)
        | (
            _T_DIGIT
            if "0" in text
            or "1" in text
            or "2" in text
            or "3" in text
            or "4" in text
            or "5" in text
            or "6" in text
            or "7" in text
            or "8" in text
            or "9" in text
            else 0
        )
    )
    if len(text) > _SHORT_TEXT:
        return mask | _T_SHORT_ONLY
    # Each string is tested only if the text has the character that every detector needing it needs
    # too: otherwise the detector does not run anyway.
    if mask & _T_DASH:
        mask |= (
            (_T_PEM if "-----BEGIN" in text else 0)
            | (_T_SK if "sk-" in text else 0)
            | (_T_SK_ANT if "sk-ant-" in text else 0)
            | (_T_XOX if "xox" in text else 0)
        )
    if mask & _T_UNDERSCORE:
        mask |= (_T_K_LIVE if "k_live_" in text else 0) | (_T_GITHUB if "gh" in text or "github_pat_" in text else 0)
    if mask & _T_A:
        mask |= (_T_AWS_ID if "AKIA" in text or "ASIA" in text or "ABIA" in text or "ACCA" in text else 0) | (
            _T_AIZA if "AIza" in text else 0
        )
    if mask & _T_J and "eyJ" in text:
        mask |= _T_JWT
    if mask & _T_SLASH and "hooks.slack.com/" in text:
        mask |= _T_SLACK_HOOK
    # (_assignments looks for a secret word in the lower-cased text before an operator: if the whole
    # lower-cased text has none, no part of it has.)
    if mask & (_T_COLON | _T_EQUALS) and _has_secret_word(text.lower()):
        mask |= _T_SECRET_WORD
    if mask & _T_DOT and text.count(".") >= 3:
        mask |= _T_DOTS_3  # (an IPv4 address has three)
    if mask & _T_DIGIT:
        # ASCII digits: a card has at least 13, an SSN 9, an IPv4 address 4, an IBAN 2 (the number
        # formats are found in the shape, where only ASCII digits are "0"), a phone number without "+"
        # 9. (Its trunk-prefix form may use other digits after the first two: in a text that is not
        # all ASCII, every count is taken as reached.) Deleting them from the bytes is the quick count.
        digits = len(text) - len(text.encode("ascii").translate(None, b"0123456789")) if text.isascii() else 13
        mask |= (
            (_T_DIGITS_2 if digits >= 2 else 0)
            | (_T_DIGITS_4 if digits >= 4 else 0)
            | (_T_DIGITS_9 if digits >= 9 else 0)
            | (_T_DIGITS_13 if digits >= 13 else 0)
        )
    return mask


def _boundary_before(shape: str, start: int, forbidden: str) -> bool:
    """The character before ``start`` is none of ``forbidden`` (shape characters)."""
    return start == 0 or shape[start - 1] not in forbidden


def _boundary_after(shape: str, end: int) -> bool:
    """No letter, digit or "_" right after ``end``, and not a longer dotted or dashed number."""
    nxt = shape[end : end + 1]
    if nxt in ("0", "A", "a"):
        return False
    return not (nxt in (".", "-") and shape[end + 1 : end + 2] == "0")


def _finditer_rare(regex: re.Pattern[str], literal: str, text: str) -> Iterator[re.Match[str]]:
    """``regex.finditer(text)`` for a regex that starts with ``literal``, rare in most text ("@",
    "+", "J", ".slack.com/"). ``str.find`` jumps between its occurrences several times faster than
    the regex engine's own search, which looks at every character: for one character it is a memchr,
    for a longer string it mostly skips ahead by the string's length. The matches are the same: each
    starts at an occurrence of ``literal``; the regex is tried at each in turn, from the end of the
    previous match (look-behinds still see the text before ``pos``)."""
    pos = text.find(literal)
    while pos >= 0:
        m = regex.match(text, pos)
        if m is None:
            pos = text.find(literal, pos + 1)
        else:
            yield m
            pos = text.find(literal, m.end())


# ---------------------------------------------------------------------------------------------
# email


# An "@" after a local-part character and before something shaped like a domain: "@property",
# "@mentions" and "lodash@4.17.21" are skipped by the regex engine.
_EMAIL_AT = re.compile(r"@(?<=[A-Za-z0-9._%+-]@)(?=(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2})")
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# Labels of letters, digits and inner hyphens; the last label (the TLD) is letters only, 2-24 of them.
_EMAIL_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}([A-Za-z]{2,24})(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
)
# "icon@2x.png", "lib@1.2.min.js": file names that read as local@domain.tld; none of these is a real TLD.
# (Not "md", "sh", "py", "rs", "io": those are country TLDs.)
_FILE_EXTENSIONS = frozenset({
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "css", "scss", "less", "js", "mjs",
    "cjs", "jsx", "ts", "tsx", "vue", "map", "json", "yaml", "yml", "toml", "lock", "txt", "csv", "tsv", "html",
    "htm", "xml", "pdf", "rb", "php", "java", "kt", "swift", "go", "cpp", "hpp", "log", "gz", "tgz", "whl",
})  # fmt: skip


class _EmailDetector:
    name = "email"
    kinds: tuple[str, ...] = ("email",)
    priority = 55
    _requires = (_T_AT, _T_DOT)  # (the domain has a dot)

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        if "@" not in text:
            return found
        end = 0
        for m in _finditer_rare(_EMAIL_AT, "@", text):
            if m.start() < end:
                continue
            finding = self._at(text, m.start())
            if finding is not None:
                end = finding.end
                found.append(finding)
        return found

    @staticmethod
    def _at(text: str, at: int) -> Finding | None:
        # Local part: walk back from the "@" (RFC 5321 caps it at 64 characters).
        start = at
        while start > 0 and at - start < 65 and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        if at - start > 64 or start == at:
            return None
        while start < at and text[start] in ".-":
            start += 1
        local = text[start:at]
        if not local or local.endswith(".") or ".." in local:
            return None
        before = text[start - 1] if start else ""
        # "https://user:pass@host", "ssh://git@host": credentials in a URL, not an address;
        # but "mailto:jane@example.com" is one.
        if before and before in ":/" and not text.endswith("mailto:", 0, start):
            return None
        m = _EMAIL_DOMAIN.match(text, at + 1)
        if m is None or m.group(1).lower() in _FILE_EXTENSIONS:
            return None
        end = m.end()
        # "git@github.com:org/repo.git" (scp-style host:path) is not an address.
        if text.startswith(":", end) and end + 1 < len(text) and not text[end + 1].isspace():
            return None
        return Finding("email", start, end, "email")


# ---------------------------------------------------------------------------------------------
# phone

# International numbers start with "+" (searched in the text); national ones are found in the shape.
_PHONE_INTL = re.compile(r"\+(?<![\w+]\+)\d[\d .()-]{5,20}\d")
# Trunk-prefix national numbers: 020 7946 0958, 030 1234567, 06 12 34 56 78 (one kind of separator).
# (At least 9 digits: one long group after the prefix, or two or more groups.)
_PHONE_TRUNK = re.compile(r"0(?<![\w.+:/-]0)[1-9]\d{0,3}(?P<s>[ .-])(?:\d{6,8}|\d{2,5}(?:(?P=s)\d{2,8}){1,3})")
_PHONE_SEPARATORS = re.compile(r"[ .()-]{2,}")
_NOT_BEFORE_NUMBER = "0Aa.+-/"  # shape characters that make a number part of something longer


class _PhoneDetector:
    name = "phone"
    kinds: tuple[str, ...] = ("phone",)
    priority = 30
    # "+" (international: its digits may be any Unicode digits), or ASCII digits: 10 for a NANP
    # number, 9 at least for a trunk-prefix one (see _triggers).
    _requires = (_T_PLUS | _T_DIGIT, _T_PLUS | _T_DIGITS_9)

    def find(self, text: str) -> list[Finding]:
        found = []
        derived = _derived(text)
        shape = derived.shape
        if "+" in text:
            for m in _finditer_rare(_PHONE_INTL, "+", text):
                digits = sum(map(str.isdigit, m.group()))
                if 7 <= digits <= 15 and self._intl_shape(m.group()) and _boundary_after(shape, m.end()):
                    found.append(Finding("phone", m.start(), m.end(), "phone"))
        # 415-555-0132, 415.555.0132, 415 555 0132
        for found_start, end, sep in derived.numbers["nanp"]:
            start = found_start
            # "1-800-555-0199": a leading country code 1 with the same separator.
            if (
                start >= 2
                and shape[start - 1] == sep
                and text[start - 2] == "1"
                and _boundary_before(shape, start - 2, _NOT_BEFORE_NUMBER)
            ):
                start -= 2
            if _boundary_before(shape, start, _NOT_BEFORE_NUMBER) and _boundary_after(shape, end):
                found.append(Finding("phone", start, end, "phone"))
        # (415) 555-0132: the candidate starts after the "(".
        for start, end, _ in derived.numbers["paren"]:
            if _boundary_before(shape, start - 1, "0Aa(") and _boundary_after(shape, end):
                found.append(Finding("phone", start - 1, end, "phone"))
        for m in _PHONE_TRUNK.finditer(text):
            if 9 <= sum(map(str.isdigit, m.group())) <= 12 and _boundary_after(shape, m.end()):
                found.append(Finding("phone", m.start(), m.end(), "phone"))
        return found

    @staticmethod
    def _intl_shape(value: str) -> bool:
        # One separator at a time, at most one "(...)" holding only digits.
        for run in _PHONE_SEPARATORS.findall(value):
            if run not in (") ", " (", ")-", "-(", ") -", ")."):
                return False
        opens, closes = value.count("("), value.count(")")
        if opens != closes or opens > 1:
            return False
        if opens:
            inner = value[value.index("(") + 1 : value.index(")")]
            if not inner.isdigit():
                return False
        return True


# ---------------------------------------------------------------------------------------------
# payment_card

# In the shape: 13-19 digits in a row, or groups of 4 (and 4-6-5 / 4-6-4 for Amex and Diners)
# separated by single spaces or dashes. Longer candidates are cut back at a separator if needed.
_CARD = re.compile(r"0000(?:0{9,15}|(?P<s>[ -])(?:0000(?P=s)0000(?:(?P=s)0{1,4}){0,2}|000000(?P=s)0{4,5}))")

# (prefix length, low, high, lengths): a brand matches when low <= int(digits[:prefix length]) <= high.
_BRANDS: tuple[tuple[int, int, int, frozenset[int]], ...] = (
    (1, 4, 4, frozenset({13, 16, 19})),  # Visa
    (2, 51, 55, frozenset({16})),  # Mastercard
    (4, 2221, 2720, frozenset({16})),  # Mastercard 2-series
    (2, 34, 34, frozenset({15})),  # American Express
    (2, 37, 37, frozenset({15})),
    (4, 6011, 6011, frozenset(range(16, 20))),  # Discover
    (3, 644, 649, frozenset(range(16, 20))),
    (2, 65, 65, frozenset(range(16, 20))),
    (4, 3528, 3589, frozenset(range(16, 20))),  # JCB
    (2, 36, 36, frozenset(range(14, 20))),  # Diners Club
    (3, 300, 305, frozenset(range(14, 20))),
    (2, 38, 39, frozenset(range(14, 20))),
    (2, 62, 62, frozenset(range(16, 20))),  # UnionPay
    (4, 5018, 5018, frozenset(range(13, 20))),  # Maestro (its specific ranges only)
    (4, 5020, 5020, frozenset(range(13, 20))),
    (4, 5038, 5038, frozenset(range(13, 20))),
    (4, 5893, 5893, frozenset(range(13, 20))),
    (4, 6304, 6304, frozenset(range(13, 20))),
    (4, 6759, 6759, frozenset(range(13, 20))),
    (4, 6761, 6763, frozenset(range(13, 20))),
)


# Every second digit from the right is doubled, and a two-digit result counts as its digit sum.
_LUHN_DOUBLED = {str(d): (2 * d if d < 5 else 2 * d - 9) for d in range(10)}


def _luhn_ok(digits: str) -> bool:
    total = sum(map(int, digits[-1::-2])) + sum(map(_LUHN_DOUBLED.__getitem__, digits[-2::-2]))
    return total % 10 == 0


def _card_ok(digits: str) -> bool:
    n = len(digits)
    heads = (0, int(digits[:1]), int(digits[:2]), int(digits[:3]), int(digits[:4]))  # by prefix length
    for size, low, high, lengths in _BRANDS:
        if n in lengths and low <= heads[size] <= high:
            return _luhn_ok(digits)
    return False


class _CardDetector:
    name = "luhn_card"
    kinds: tuple[str, ...] = ("payment_card",)
    priority = 60
    _requires = (_T_DIGIT, _T_DIGITS_13)

    def find(self, text: str) -> list[Finding]:
        found = []
        derived = _derived(text)
        shape = derived.shape
        for start, stop, _ in derived.numbers["card"]:
            end = self._card_end(text, shape, start, stop)
            if end:
                found.append(Finding("payment_card", start, end, "luhn_card"))
                continue
            # A card can start inside a rejected candidate: "2024 4111 1111 1111 1111".
            m = _CARD.search(shape, start + 1, stop)
            while m is not None:
                end = self._card_end(text, shape, m.start(), m.end())
                if end:
                    found.append(Finding("payment_card", m.start(), end, "luhn_card"))
                    break
                m = _CARD.search(shape, m.start() + 1, stop)
        return found

    @staticmethod
    def _card_end(text: str, shape: str, start: int, end: int) -> int:
        """The end of the longest card at ``start`` within ``end``: "4111 1111 1111 1111 2 items"
        ends before " 2"; 0 if none."""
        if not _boundary_before(shape, start, "0Aa.,$+/-"):
            return 0
        while end - start >= 13:
            if shape[end : end + 1] not in ("0", "A", "a"):
                digits = text[start:end].replace(" ", "").replace("-", "")
                if 13 <= len(digits) <= 19 and _card_ok(digits):
                    return end
            cut = max(text.rfind(" ", start, end), text.rfind("-", start, end))
            if cut < 0:
                return 0
            end = cut
        return 0


# ---------------------------------------------------------------------------------------------
# iban

# Characters of each country's IBAN (SWIFT IBAN registry, release 101).
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN_HEAD = re.compile(r"AA00")  # in the shape: two capitals, two digits
_IBAN_COMPACT = re.compile(r"[A-Z0-9]+")


# Letters count as 10..35 (A=10); digits stay. (An IBAN here is [A-Z0-9] only: see _IbanDetector._end.)
_IBAN_LETTERS = {ord(ch): str(int(ch, 36)) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _mod97_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int(rearranged.translate(_IBAN_LETTERS)) % 97 == 1


class _IbanDetector:
    name = "iban_mod97"
    kinds: tuple[str, ...] = ("iban",)
    priority = 70
    _requires = (_T_DIGIT, _T_DIGITS_2)  # (the check digits)

    def find(self, text: str) -> list[Finding]:
        found = []
        shape = _derived(text).shape
        for m in _IBAN_HEAD.finditer(shape):
            start = m.start()
            if start and shape[start - 1] in "0Aa":
                continue
            length = _IBAN_LENGTHS.get(text[start : start + 2])
            if length is None:
                continue
            end = self._end(text, start, length)
            if end and _mod97_ok(text[start:end].replace(" ", "")):
                found.append(Finding("iban", start, end, "iban_mod97"))
        return found

    @staticmethod
    def _end(text: str, start: int, length: int) -> int:
        """Where an IBAN of ``length`` characters starting at ``start`` ends (written compact or in
        groups of four separated by single spaces), or 0."""
        end = start + length
        if _IBAN_COMPACT.fullmatch(text, start, end):
            return end if not text[end : end + 1].isalnum() else 0
        end = start + length + (length - 1) // 4
        chunk = text[start:end]
        if len(chunk) != end - start or not _IBAN_COMPACT.fullmatch(chunk.replace(" ", "")):
            return 0
        if chunk[4::5].strip(" "):
            return 0  # not a space after each group of four
        if chunk.count(" ") != (length - 1) // 4:
            return 0
        return end if not text[end : end + 1].isalnum() else 0


# ---------------------------------------------------------------------------------------------
# us_ssn

# A cue that makes nine bare digits an SSN when it is in the 40 characters before them.
_SSN_CUE = re.compile(r"\b(?:ssn|social security)\b", re.IGNORECASE)
_SSN_CUE_WINDOW = 40


def _ssn_ok(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


class _SsnDetector:
    name = "us_ssn"
    kinds: tuple[str, ...] = ("us_ssn",)
    priority = 50
    _requires = (_T_DIGIT, _T_DIGITS_9)

    def find(self, text: str) -> list[Finding]:
        found = []
        derived = _derived(text)
        shape = derived.shape
        for start, end, sep in derived.numbers["ssn"]:  # 078-05-1120, 078 05 1120
            if not (_boundary_before(shape, start, _NOT_BEFORE_NUMBER) and _boundary_after(shape, end)):
                continue
            if _ssn_ok(text[start:end].replace(sep, "")):
                found.append(Finding("us_ssn", start, end, "us_ssn"))
        # Nine bare digits are an SSN only after a cue word ("SSN: 536221234"): otherwise they are
        # order numbers, amounts, ids.
        for start, end, _ in derived.numbers["nine"]:
            if not (_boundary_before(shape, start, _NOT_BEFORE_NUMBER) and _boundary_after(shape, end)):
                continue
            if _ssn_ok(text[start:end]) and _SSN_CUE.search(text, max(0, start - _SSN_CUE_WINDOW), start):
                found.append(Finding("us_ssn", start, end, "us_ssn"))
        return found


# ---------------------------------------------------------------------------------------------
# ip_address

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Candidates in the shape (the match starts at the first octet's last digit, so that the regex starts
# with the literal "0.0"), then checked in the text.
# Right after it, "(?=0{0,2}\.0)" (the second octet and dot, which the rest of the regex needs anyway)
# drops the "12.345Z" of timestamps and the "12.5ms" of durations before the look-behinds are tried.
# The look-behinds drop in the regex engine what is plainly not an address: a letter, dot or 4th digit
# before the first octet (v1.2.3.4, x.1.2.3.4, 1234.5.6.7) and "Chrome/120.0.0.0"-style versions.
_IPV4_SHAPE = re.compile(
    r"0\.0(?=0{0,2}\.0)"
    r"(?<![Aa.]0\.0)(?<![Aa.]00\.0)(?<![Aa.0]000\.0)(?<![Aa0]/0\.0)(?<![Aa0]/00\.0)(?<![Aa0]/000\.0)"
    r"0{0,2}\.0{1,3}\.0{1,3}(?![0Aa]|\.0)"
)
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
# Words after which a dotted quad is a version or a section number, not an address.
_VERSION_WORDS = frozenset(
    {"version", "build", "release", "firmware", "section", "chapter", "clause", "table", "figure"}
)


def _version_context(window: str) -> bool:
    """``window`` (lower case, the text just before a dotted quad) ends with a cue word and at most
    two more words: "version 10.0.0.1", "build: 6.1.7601.2", "section 4.5.3.1"."""
    # The substring tests are a quick pre-check: most windows have none of the words.
    if not (
        "version" in window
        or "build" in window
        or "release" in window
        or "firmware" in window
        or "section" in window
        or "chapter" in window
        or "clause" in window
        or "table" in window
        or "figure" in window
    ):
        return False
    # The last three words (rsplit stops after them), without the punctuation around them.
    return not _VERSION_WORDS.isdisjoint(map(str.strip, window.rsplit(None, 3)[-3:], repeat(":=#.,;()-")))


# IPv6 candidates, from a colon: a "::" (not in "std::vector" or "Foo::Bar": a group of up to 4
# characters after a non-hex letter, nor in ":::") or four colons with hex groups between (full form).
# (The "(?=:)" first: most colons, "12:30:45" or "key: value", are not followed by another, and
# fail there before the look-behinds.)
_IPV6_HINT = re.compile(
    r":(?:"
    r"(?=:)(?<![G-Zg-z_]:)(?<![G-Zg-z_][0-9A-Za-z]:)(?<![G-Zg-z_][0-9A-Za-z]{2}:)(?<![G-Zg-z_][0-9A-Za-z]{3}:)(?<!::)"
    r":(?![G-Zg-z_:])"
    r"|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:)"
)
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


class _IpDetector:
    name = "ip_address"
    kinds: tuple[str, ...] = ("ip_address",)
    priority = 40
    # IPv4: three dots and four ASCII digits at least; IPv6: colons and an ASCII digit (its candidate is
    # made of _IPV6_CHARS only). As groups, (IPv4 or IPv6) is: (a dot or a colon) and (three dots or a
    # colon) and (four digits or a colon) and a digit.
    _requires = (_T_DOT | _T_COLON, _T_DOTS_3 | _T_COLON, _T_DIGITS_4 | _T_COLON, _T_DIGIT)

    def find(self, text: str) -> list[Finding]:
        # (Lists rather than generators here and in the other busy detectors: logs have an address
        # on most lines, and each finding through a generator costs more.)
        found = self._v4(text) if "." in text else []
        if ":" in text:
            hints = _derived(text).colons[0]
            if hints:
                found.extend(self._v6(text, hints))
        return found

    @staticmethod
    def _v4(text: str) -> list[Finding]:
        shape = _derived(text).shape
        found = []
        for m in _IPV4_SHAPE.finditer(shape):
            # The regex starts at the first octet's last digit and has checked what is before it.
            start, end = m.span()
            if start and shape[start - 1] == "0":
                start -= 1
                if start and shape[start - 1] == "0":
                    start -= 1
            if start >= 2 and shape[start - 1] == "/" and shape[start - 2] in "0Aa":
                continue  # Chrome/120.0.0.0, Safari/537.36 ...: a product token's version
            # "version 10.0.0.1", "build 6.1.7601.2": a version, within two words of a cue word. (Tested
            # before the octets: in logs, versions are as common as addresses and never need it.)
            if _version_context(text[start - 32 if start > 32 else 0 : start].lower()):
                continue
            if _IPV4.fullmatch(text, start, end) is None:
                continue  # an octet above 255 or with a leading zero
            found.append(Finding("ip_address", start, end, "ip_address"))
        return found

    @staticmethod
    def _v6(text: str, hints: list[tuple[int, int]]) -> Iterator[Finding]:
        import ipaddress  # only when a text has an IPv6-looking candidate; the module stays light

        done = 0
        for hit, _ in hints:  # (the matches of _IPV6_HINT)
            if hit < done:
                continue
            start = hit
            while start > 0 and hit - start < 40 and text[start - 1] in _IPV6_CHARS:
                start -= 1
            end = hit + 1
            while end < len(text) and end - start < 46 and text[end] in _IPV6_CHARS:
                end += 1
            done = end
            # Trailing sentence dot or "addr:" colon, leading "port:" colon; a "::" stays.
            while end > start and (text[end - 1] == "." or (text[end - 1] == ":" and text[end - 2] != ":")):
                end -= 1
            while start < end - 1 and text[start] == ":" and text[start + 1] != ":":
                start += 1
            candidate = text[start:end]
            # Full form (7 colons) or compressed ("::"), with a digit: not "12:30:45", "std::vector".
            if "::" not in candidate and candidate.count(":") < 6:
                continue
            if not any(ch.isdigit() for ch in candidate):
                continue
            if _is_word(text[start - 1 : start]) or _is_word(text[end : end + 1]):
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield Finding("ip_address", start, end, "ip_address")


# ---------------------------------------------------------------------------------------------
# api_key: vendor formats


def _mixed(value: str) -> bool:
    """Random keys have digits and letters of both cases; "sk-this-is-not-a-key-at-all" does not."""
    return any(ch.isdigit() for ch in value) and any(ch.islower() for ch in value) and any(ch.isupper() for ch in value)


class _PatternDetector:
    """A vendor key format: regexes that each start with a literal, preferably a rare character (the
    engine then searches for it quickly; a leading character class or look-behind would make it try
    every position), then check what comes before it with look-behinds. ``back``: how many
    characters before the match the key starts ("k-" of "sk-": "k" is rarer than "s").

    Regexes that start with the same character as other vendor formats' ("k" of "sk-", "sk-ant-"
    and "sk_live_"; "A" of "AKIA" and "AIza"; "g" of "ghp_" and "github_pat_") share one pass over
    the text (see _vendor_families): a pass costs about as much whatever it looks for. A regex that
    starts with a long ``literal`` is searched from its occurrences (_finditer_rare)."""

    kinds: tuple[str, ...] = ("api_key",)
    priority = 80

    def __init__(
        self,
        name: str,
        *patterns: tuple[str, int],
        check: Callable[[str], bool] | None = None,
        hint: str = "",
        requires: tuple[int, ...] = (),
        literal: str = "",
    ) -> None:
        self.name = name
        self._regexes = tuple((re.compile(p), back) for p, back in patterns)
        self._literal = literal
        # Each regex, with whether its family's shared pass covers it (_vendor_families: built from
        # these detectors, hence looked up when first needed).
        self._shared: tuple[tuple[re.Pattern[str], int, bool], ...] | None = None
        self._check = check
        # Characters every key has: when the text lacks one, nothing to search. (The scanner's
        # prefilter tests them before it calls find, with the strings in ``requires``.)
        self._hint = hint
        self._requires = requires

    @property
    def _searches(self) -> tuple[tuple[re.Pattern[str], int, bool], ...]:
        if self._shared is None:
            self._shared = tuple(
                (regex, back, regex in _vendor_families().get(regex.pattern[0], (None, frozenset()))[1])
                for regex, back in self._regexes
            )
        return self._shared

    def find(self, text: str) -> list[Finding]:
        for ch in self._hint:
            if ch not in text:
                return []
        found = []
        for regex, back, shared in self._searches:
            if shared:
                matches = _family_matches(regex, text)
            elif self._literal:
                matches = _finditer_rare(regex, self._literal, text)
            else:
                matches = regex.finditer(text)
            for m in matches:
                start = m.start() - back
                if self._check is None or self._check(text[start : m.end()]):
                    found.append(Finding("api_key", start, m.end(), self.name))
        return found


def _family_matches(regex: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """``regex.finditer(text)``, from the positions where its family's regex found a match of one of
    its members: ``regex`` matches at some of them, and nowhere else (every match starts with the
    family's character). As finditer does, the search goes on from the end of each match."""
    end = 0
    for pos in _derived(text).family_hits(regex.pattern[0]):
        if pos >= end:
            m = regex.match(text, pos)
            if m is not None:
                end = m.end()
                yield m


def _vendor_detectors() -> tuple[_PatternDetector, ...]:
    return (
        _PatternDetector(
            "openai_key",
            (r"k-(?<=sk-)(?<![\w-]sk-)(?!ant-)(?:(?:proj|svcacct|admin|None)-)?[A-Za-z0-9_-]{20,}(?![\w-])", 1),
            check=_mixed,
            hint="-",
            requires=(_T_DASH, _T_SK),
        ),
        _PatternDetector(
            "anthropic_key",
            (r"k-ant-(?<=sk-ant-)(?<![\w-]sk-ant-)(?:api|admin|oat|ort)\d\d-[A-Za-z0-9_-]{20,}(?![\w-])", 1),
            check=_mixed,
            hint="-",
            requires=(_T_DASH, _T_SK_ANT),
        ),
        _PatternDetector(
            "aws_access_key_id",
            (r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])", 0),
            hint="A",
            requires=(_T_A, _T_AWS_ID),
        ),
        _PatternDetector(
            "github_token",
            (r"gh(?<!\wgh)[pousr]_[A-Za-z0-9]{36,251}(?!\w)", 0),  # "gh" is rarer than "_" in code
            (r"github_pat_(?<!\wgithub_pat_)[A-Za-z0-9_]{50,255}(?!\w)", 0),
            hint="_",
            requires=(_T_UNDERSCORE, _T_GITHUB),
        ),
        _PatternDetector(
            "slack_token",
            (r"xox(?<![\w-]xox)[abeoprs]-[0-9A-Za-z]+(?:-[0-9A-Za-z]+)+(?![\w-])", 0),
            check=lambda v: len(v) >= 24 and any(ch.isdigit() for ch in v),
            hint="-",
            requires=(_T_DASH, _T_XOX),
        ),
        _PatternDetector(
            "slack_webhook",
            (
                r"\.slack\.com/(?<=https://hooks\.slack\.com/)(?:services|workflows|triggers)/T[A-Z0-9]{6,}"
                r"/B?[A-Z0-9]{6,}/[A-Za-z0-9]{16,}",
                13,
            ),
            check=lambda v: len(set(v.rsplit("/", 1)[1])) > 3,  # not the docs' XXXXXXXX placeholder
            hint="/.",
            requires=(_T_SLASH, _T_DOT, _T_SLACK_HOOK),
            literal=".slack.com/",
        ),
        _PatternDetector(
            "google_api_key",
            (r"AIza(?<![\w-]AIza)[0-9A-Za-z_-]{35}(?![\w-])", 0),
            hint="A",
            requires=(_T_A, _T_AIZA),
        ),
        _PatternDetector(
            "stripe_key",
            (r"k_live_(?<=[sr]k_live_)(?<![\w-].k_live_)[0-9A-Za-z]{24,}(?!\w)", 1),
            hint="_",
            requires=(_T_UNDERSCORE, _T_K_LIVE),
        ),
    )


@lru_cache(maxsize=1)  # (made on first use, not when the module is imported)
def _vendor_families() -> dict[str, tuple[re.Pattern[str], frozenset[re.Pattern[str]]]]:
    """For each letter that begins the regexes of several vendor formats: one regex that matches that
    letter (only) where one of them matches, ``c(?=rest1|rest2|...)``, and the regexes it covers.
    Consuming only the letter, it reports every position where any of them matches, which
    _family_matches then re-matches with each regex in turn."""
    by_letter: dict[str, list[re.Pattern[str]]] = {}
    for detector in _vendor_detectors():
        for regex, _ in detector._regexes:
            if regex.pattern[0].isalpha():  # (a plain literal: not "\." or "(")
                by_letter.setdefault(regex.pattern[0], []).append(regex)
    return {
        letter: (re.compile(f"{letter}(?={'|'.join(f'(?:{r.pattern[1:]})' for r in regexes)})"), frozenset(regexes))
        for letter, regexes in by_letter.items()
        if len(regexes) > 1
    }


# ---------------------------------------------------------------------------------------------
# api_key: values assigned to secret-looking keys

# Assignments are found from their operator (":", ":=", "=", "=>": literals, quick to search) when at
# least 16 value characters follow (with an optional opening quote and HTTP auth scheme); then the
# key name before the operator is read backwards and checked.
# (The schemes share first letters in the look-ahead: the engine then drops them on one test.)
_ASSIGN_COLON = re.compile(r""":[ "'`\t]{1,3}(?=[^\s"'`]{16}|(?:[Bb](?:earer|asic|ot)|[Tt]oken)[ \t])""")
_ASSIGN_EQUALS = re.compile(r"""=>?[ "'`\t]{0,3}(?=[^\s"'`]{16}|(?:[Bb](?:earer|asic|ot)|[Tt]oken)[ \t])""")


@lru_cache(maxsize=1)  # (compiled on first use, not when the module is imported)
def _colons() -> re.Pattern[str]:
    """The colons of a text are searched once for two detectors: for IPv6 candidates (_IPV6_HINT)
    and for assignments (_ASSIGN_COLON). Both regexes are alternatives in a look-ahead, so that this
    one takes only the colon and goes on to the next (every colon is tried, as by each regex alone);
    at a colon at most one of them matches (after it, an IPv6 hint has a colon or a hex digit, an
    assignment a blank or a quote). See _Derived.colons."""
    return re.compile(f":(?=(?P<ipv6>{_IPV6_HINT.pattern[1:]})|(?P<assign>{_ASSIGN_COLON.pattern[1:]}))")


_AUTH_SCHEME = re.compile(r"(?:[Bb]earer|[Bb]asic|[Tt]oken|[Bb]ot)[ \t]+")
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
# A component of the key name (split at "_", ".", "-" and camelCase humps), not just a substring:
# "max_tokens", "author" and "bypass" are not secrets.
_SECRET_NAME = re.compile(
    r"""(?x)
    (?:^|[_.-])(?:secret|secrets|token|password|passwd|passphrase|pass|pwd|apikey|authorization|auth|credentials?
                  |(?:api|private|access|secret|client|signing|encryption|master)[_.-]?key)(?:$|[_.-])
    """
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_QUOTED_VALUE = re.compile(r"""[^\s"'`]{1,512}""")
_BARE_VALUE = re.compile(r"""[^\s"'`,;&<>()\[\]{}]{1,512}""")
_PLACEHOLDER_WORDS = ("your", "placeholder", "changeme", "redacted", "xxxx", "****", "....", "<", "$", "{")
_MIN_SECRET_LEN = 16
_ENTROPY_FACTOR = 0.8  # of the most a string of that length and alphabet can have


@lru_cache(maxsize=1024)  # the same names come back: "token", "Authorization", "OPENAI_API_KEY"
def _secret_name_ok(name: str) -> bool:
    return _SECRET_NAME.search(_CAMEL.sub("_", name).lower()) is not None


_DIGITS = frozenset("0123456789")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX = frozenset("0123456789abcdef")
_ALNUM = _DIGITS | _LOWER | _UPPER


def _high_entropy(value: str) -> bool:
    """16+ characters, digits and letters, no placeholder word, and a Shannon entropy of at least
    _ENTROPY_FACTOR times the most a string of its length and alphabet can have."""
    if len(value) < _MIN_SECRET_LEN:
        return False
    counts = Counter(value)  # (for the entropy; its keys are the set of characters)
    chars = counts.keys()
    has_digit = not chars.isdisjoint(_DIGITS)
    has_lower = not chars.isdisjoint(_LOWER)
    has_upper = not chars.isdisjoint(_UPPER)
    if not has_digit or not (has_lower or has_upper):
        return False
    low = value.lower()
    for word in _PLACEHOLDER_WORDS:
        if word in low:
            return False
    if "://" in value:
        return False
    if chars <= _HEX:
        alphabet = 16
    else:
        others = not chars <= _ALNUM
        alphabet = 10 + 26 * has_lower + 26 * has_upper + 16 * others
    return _entropy(counts.values(), len(value)) >= _ENTROPY_FACTOR * math.log2(min(len(value), alphabet))


def _assignments(text: str) -> list[tuple[str, int, int]]:
    """``(key name, value start, value end)`` of the values of 16+ characters assigned in ``text``:
    ``name = "value"``, ``"name": "value"``, ``name: value``, ``NAME=value``, ``--name=value``,
    ``Authorization: Bearer value``. Computed once per scan, shared by the detectors that use it."""
    derived = _derived(text)
    if derived.assignments is not None:
        return derived.assignments
    found: list[tuple[str, int, int]] = []
    colons = derived.colons[1] if ":" in text else []
    equals = [m.span() for m in _ASSIGN_EQUALS.finditer(text)] if "=" in text else []
    for operators in (colons, equals):
        for op_start, op_end in operators:
            # Most candidates are ids, URLs and code ("request_id=req_...", "self.x"): a look for a
            # secret word (one of each _SECRET_NAME) before the operator is cheaper than reading the name.
            if not _has_secret_word(text[op_start - 64 if op_start > 64 else 0 : op_start].lower()):
                continue
            # The key name: back from the operator over blanks and one closing quote.
            i = op_start
            if text[i - 1 : i] == ":" and text[i] == "=":
                i -= 1  # Go's ":="
            while i > 0 and text[i - 1] in " \t":
                i -= 1
            if i > 0 and text[i - 1] == "]":
                i -= 1  # PHP's $config['secret'] => ...
            if i > 0 and text[i - 1] in "\"'":
                i -= 1
            # Then back over at most 64 name characters: rstrip drops the run that ends the window.
            name_end = i
            i = name_end - 64 if name_end > 64 else 0
            i += len(text[i:name_end].rstrip(_KEY_CHARS))
            if i == name_end:
                continue
            run = text[op_start:op_end].rstrip(" \t")
            quote = run[-1] if run[-1] in "\"'`" else ""
            value_start = op_end
            scheme = _AUTH_SCHEME.match(text, value_start)
            if scheme is not None:
                value_start = scheme.end()
            v = (_QUOTED_VALUE if quote else _BARE_VALUE).match(text, value_start)
            if v is None:
                continue
            value_end = v.end()
            if quote:
                if not text.startswith(quote, value_end):
                    continue
            else:
                while value_end > value_start and text[value_end - 1] in ".,:;!?":
                    value_end -= 1  # end of a sentence, not of the value
                if text[value_end : value_end + 1] in ("(", "["):
                    continue  # a function call or subscript: code, not a literal
            found.append((text[i:name_end], value_start, value_end))
    derived.assignments = found
    return found


class _SecretAssignmentDetector:
    """High-entropy values assigned to keys named like secrets. The fallback of the ``api_key`` kind:
    any other finding that overlaps one of these wins."""

    name = "secret_assignment"
    kinds: tuple[str, ...] = ("api_key",)
    priority = -1  # negative: a fallback (see _resolve)
    _requires = (_T_COLON | _T_EQUALS, _T_SECRET_WORD)  # what _assignments searches from and for

    def find(self, text: str) -> list[Finding]:
        return [
            Finding("api_key", start, end, "secret_assignment")
            for name, start, end in _assignments(text)
            if _secret_name_ok(name) and _high_entropy(text[start:end])
        ]


_AWS_SECRET_NAME = re.compile(r"(?i)(?:^|[_.-])(?:aws[_.-]?)?secret[_.-]?access[_.-]?key$")
_AWS_SECRET_VALUE = re.compile(r"[A-Za-z0-9/+]{40}")


class _AwsSecretDetector:
    """AWS secret access keys: 40 base64 characters, recognisable only by the name they are assigned to."""

    name = "aws_secret_key"
    kinds: tuple[str, ...] = ("api_key",)
    priority = 80
    _requires = (_T_COLON | _T_EQUALS, _T_SECRET_WORD)  # what _assignments searches from and for

    def find(self, text: str) -> list[Finding]:
        return [
            Finding("api_key", start, end, "aws_secret_key")
            for name, start, end in _assignments(text)
            if _AWS_SECRET_VALUE.fullmatch(text, start, end) and self._name_ok(name)
        ]

    @staticmethod
    @lru_cache(maxsize=256)
    def _name_ok(name: str) -> bool:
        return _AWS_SECRET_NAME.search(_CAMEL.sub("_", name)) is not None


# ---------------------------------------------------------------------------------------------
# private_key

_PEM_BEGIN = re.compile(
    r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |ANY )?PRIVATE KEY|PGP PRIVATE KEY BLOCK)-----"
)
# Without an END line: the header lines and base64 lines that follow (real or JSON-escaped newlines).
_PEM_BODY = re.compile(
    r"(?:(?:\r?\n|\\r?\\n)[ \t]*"  # a real or JSON-escaped newline, then
    r"(?:[A-Za-z][A-Za-z-]*:\ [^\r\n\\]*"  # a header line ("Proc-Type: 4,ENCRYPTED") or
    r"""|[A-Za-z0-9+/=]+(?=[ \t]*(?:\r?\n|\\|["']|\Z)))?)*"""  # a line of base64 alone
)
_PEM_MAX = 65536  # the longest block looked at: an 8192-bit RSA key is about 6.5 KB
# What the detector looks for with str.find, then matches _PEM_BEGIN at. Without the space that
# follows it: str.find skips ahead by the length of what it looks for wherever the text's character
# there is not the last one it looks for, and a space is the commonest character of all.
_PEM_MARK = "-----BEGIN"


class _PrivateKeyDetector:
    name = "pem_private_key"
    kinds: tuple[str, ...] = ("private_key",)
    priority = 100
    _requires = (_T_DASH, _T_PEM)

    def find(self, text: str) -> list[Finding]:
        found = []
        pos = text.find(_PEM_MARK)
        # Where the next END line of each label is (-1: none left): searched once per END line, so that
        # many BEGIN lines without one cost linear time.
        next_end: dict[str, int] = {}
        while pos >= 0:
            m = _PEM_BEGIN.match(text, pos)
            if m is None:
                pos = text.find(_PEM_MARK, pos + 1)
                continue
            end_marker = f"-----END {m.group(1)}-----"
            end = next_end.get(end_marker, m.end())
            if 0 <= end < m.end():
                end = m.end()  # the cached END line is behind us: look further
            if end >= m.end() and not text.startswith(end_marker, end):
                end = text.find(end_marker, end)
                next_end[end_marker] = end
            if 0 <= end <= m.end() + _PEM_MAX:
                end += len(end_marker)
            else:
                body = _PEM_BODY.match(text, m.end())
                end = body.end() if body else m.end()
                while end > m.end() and text[end - 1].isspace():
                    end -= 1
            found.append(Finding("private_key", pos, end, "pem_private_key"))
            pos = text.find(_PEM_MARK, end)
        return found


# ---------------------------------------------------------------------------------------------
# jwt

# From the "J" of "eyJ" (the base64 of '{"'): "e" is the commonest letter, "J" a rare one.
_JWT = re.compile(r"J(?<=eyJ)(?<![\w.-]eyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+){0,2}")


def _jwt_header(segment: str) -> dict[str, Any] | None:
    import base64  # (imported when a candidate turns up: most texts have none)
    import binascii
    import json

    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return header if isinstance(header, dict) else None


@lru_cache(maxsize=256)  # the same headers come back: every token of a service has {"alg":"HS256","typ":"JWT"}
def _jwt_alg(segment: str) -> str | None:
    """The "alg" of a JWT's header segment, or None if it is not a JSON object that has one."""
    header = _jwt_header(segment)
    return None if header is None or "alg" not in header else str(header["alg"])


class _JwtDetector:
    name = "jwt"
    kinds: tuple[str, ...] = ("jwt",)
    priority = 90
    _requires = (_T_J, _T_DOT, _T_JWT)  # "eyJ" and the dots between segments

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        if "." not in text:
            return found
        for m in _finditer_rare(_JWT, "J", text):
            value = "ey" + m.group()
            if text.startswith(".", m.end()) and text[m.end() + 1 : m.end() + 2].isalnum():
                continue  # more than five segments: some longer dotted name
            segments = value.split(".")
            alg = _jwt_alg(segments[0])
            if alg is None:
                continue
            if len(segments) not in (3, 5):
                continue
            # A JWS needs a signature, unless it is an unsecured JWT ("alg": "none", empty signature).
            if not segments[2] and alg.lower() != "none" and len(segments) == 3:
                continue
            found.append(Finding("jwt", m.start() - 2, m.end(), "jwt"))
        return found


# ---------------------------------------------------------------------------------------------
# Scanner


def builtin_detectors() -> tuple[Detector, ...]:
    """New instances of the built-in detectors, most specific first."""
    return (
        _PrivateKeyDetector(),
        _JwtDetector(),
        *_vendor_detectors(),
        _AwsSecretDetector(),
        _IbanDetector(),
        _CardDetector(),
        _EmailDetector(),
        _SsnDetector(),
        _IpDetector(),
        _PhoneDetector(),
        _SecretAssignmentDetector(),
    )


# The classes whose ``_requires`` the prefilter trusts (not any detector's attribute of that name).
_BUILTIN_TYPES = frozenset({
    _PrivateKeyDetector, _JwtDetector, _PatternDetector, _AwsSecretDetector, _IbanDetector, _CardDetector,
    _EmailDetector, _SsnDetector, _IpDetector, _PhoneDetector, _SecretAssignmentDetector,
})  # fmt: skip

_BY_POSITION = attrgetter("start", "end")


def _resolve(findings: list[Finding], priority: Mapping[str, int]) -> list[Finding]:
    """Sorted by start, without overlaps. Between overlapping findings the longer wins, then the one
    of the higher-priority detector; a fallback detector's finding (negative priority) loses to any
    other that overlaps it."""
    if len(findings) < 2:
        return findings
    findings.sort(key=_BY_POSITION)
    # Most findings overlap nothing: they go straight to the output, and only clusters of overlapping
    # ones need choosing from. (No list per cluster of one: logs have thousands of findings.)
    out: list[Finding] = []
    head = findings[0]  # the first finding of the current cluster
    cluster: list[Finding] | None = None  # the whole cluster, once a second finding joins it
    cluster_end = head.end
    for f in islice(findings, 1, None):
        if f.start < cluster_end:
            if cluster is None:
                cluster = [head]
            cluster.append(f)
            cluster_end = max(cluster_end, f.end)
            continue
        if cluster is None:
            out.append(head)
        else:
            out.extend(_choose(cluster, priority))
            cluster = None
        head = f
        cluster_end = f.end
    if cluster is None:
        out.append(head)
    else:
        out.extend(_choose(cluster, priority))
    return out


def _choose(cluster: list[Finding], priority: Mapping[str, int]) -> list[Finding]:
    """The preferred non-overlapping findings of a cluster of overlapping ones, sorted by start."""

    def preference(f: Finding) -> tuple[bool, int, int, int]:
        p = priority.get(f.detector, 50)
        return (p < 0, -(f.end - f.start), -p, f.start)

    kept: list[Finding] = []
    for f in sorted(cluster, key=preference):
        for k in kept:
            if (f.start < k.end and k.start < f.end) or k.start == f.start:
                break  # it overlaps (or starts with) one already kept
        else:
            kept.append(f)
    kept.sort(key=_BY_POSITION)
    return kept


class Scanner:
    """Runs detectors over text and resolves their overlapping findings.

    ``Scanner()`` runs the built-in detectors; ``Scanner([*builtin_detectors(), MyDetector()])``
    adds one; ``Scanner(kinds=["email", "api_key"])`` runs only the detectors of those kinds and
    reports only those kinds (an unknown kind raises :class:`~tokenguard.ConfigError`).
    A scanner holds no per-call state (only a cache of which detectors a text calls for): one
    instance can be shared by threads.
    """

    def __init__(self, detectors: Sequence[Detector] | None = None, *, kinds: Iterable[str] | None = None) -> None:
        dets: tuple[Detector, ...] = builtin_detectors() if detectors is None else tuple(detectors)
        for d in dets:
            if not (isinstance(getattr(d, "name", None), str) and callable(getattr(d, "find", None))):
                raise ConfigError(f"{d!r} is not a detector: it needs a str `name`, a `kinds` tuple and a `find(text)`")
            if isinstance(d.kinds, str) or not all(isinstance(k, str) for k in d.kinds):
                raise ConfigError(f"detector {d.name!r}: `kinds` must be a tuple of str, not {d.kinds!r}")
        available = sorted({k for d in dets for k in d.kinds})
        self._kinds: frozenset[str] | None = None
        if kinds is not None:
            wanted = [kinds] if isinstance(kinds, str) else list(kinds)
            unknown = sorted(set(wanted) - set(available))
            if unknown:
                raise ConfigError(
                    f"unknown sensitive-data kind(s) {', '.join(map(repr, unknown))}; "
                    f"valid kinds: {', '.join(available)}"
                )
            self._kinds = frozenset(wanted)
            dets = tuple(d for d in dets if self._kinds.intersection(d.kinds))
        self.detectors: tuple[Detector, ...] = dets
        """The detectors this scanner runs, in order."""
        self.kinds: tuple[str, ...] = tuple(sorted(self._kinds)) if self._kinds is not None else tuple(available)
        """The kinds this scanner can report."""
        self._priority = {d.name: int(getattr(d, "priority", 50)) for d in dets}
        # For the prefilter: each detector with its _requires (none for the others: custom detectors
        # and Presidio always run), and the detectors to call for each combination of trigger bits
        # seen so far.
        self._requires: tuple[tuple[Detector, tuple[int, ...]], ...] = tuple(
            (d, getattr(d, "_requires", ()) if type(d) in _BUILTIN_TYPES else ()) for d in dets
        )
        self._plans: dict[int, tuple[Detector, ...]] = {}

    def __repr__(self) -> str:
        return f"Scanner(detectors=[{', '.join(d.name for d in self.detectors)}])"

    def scan(self, text: str) -> list[Finding]:
        """The findings in ``text``, sorted by start, without overlaps."""
        if not text:
            return []
        mask = _triggers(text)
        detectors = self._plans.get(mask)
        if detectors is None:
            # The detectors whose every _requires group has a bit in the mask; the others cannot find
            # anything. (In the scanner's order: ties between findings resolve as if all had run.)
            detectors = tuple(d for d, groups in self._requires if all(mask & g for g in groups))
            if len(self._plans) >= 1024:
                self._plans.clear()  # (a bound: most texts fall into a few dozen combinations)
            self._plans[mask] = detectors
        if not detectors:
            return []
        found: list[Finding] = []
        try:
            for d in detectors:
                found.extend(d.find(text))
        finally:
            _local.derived = None  # keep no text after the scan
        if self._kinds is not None:
            found = [f for f in found if f.kind in self._kinds]
        return _resolve(found, self._priority)

    def scan_parts(self, parts: Iterable[str]) -> list[list[Finding]]:
        """``[self.scan(p) for p in parts]``: offsets are into each part."""
        return [self.scan(p) for p in parts]


@lru_cache(maxsize=32)
def _scanner(kinds: frozenset[str] | None) -> Scanner:
    return Scanner(kinds=kinds)


def scan(text: str, *, kinds: Iterable[str] | None = None) -> list[Finding]:
    """Scan ``text`` with the built-in detectors (``tg.scan``): findings sorted by start.

    ``kinds`` restricts the scan to some of :data:`BUILTIN_KINDS`. The scanner is built once per set
    of kinds and cached.
    """
    key = None if kinds is None else frozenset([kinds] if isinstance(kinds, str) else kinds)
    return _scanner(key).scan(text)


def redact(text: str, findings: Sequence[Finding], placeholder: str = DEFAULT_PLACEHOLDER) -> str:
    """``text`` with each finding replaced by ``placeholder``, formatted with ``kind`` and ``detector``:
    ``"mail [REDACTED:email] now"`` by default; ``placeholder="***"`` works too. Findings that overlap
    one already replaced are skipped."""
    if not findings:
        return text
    out: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if f.start < pos:
            continue
        out.append(text[pos : f.start])
        try:
            out.append(placeholder.format(kind=f.kind, detector=f.detector))
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"bad redaction placeholder {placeholder!r} ({exc!r}); it may use {{kind}} and {{detector}}"
            ) from None
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Request bodies

SKIP_KEYS: frozenset[str] = frozenset(
    {
        # Enums and identifiers the vendor or the SDK sets, never user text.
        "role",
        "type",
        "id",
        "object",
        "model",
        "name",
        "tool_call_id",
        "tool_use_id",
        "call_id",
        "item_id",
        "file_id",
        "previous_response_id",
        "cache_control",
        "detail",
        "format",
        "media_type",
        "mime_type",
        "voice",
        # Binary payloads (base64 images, audio, PDFs) and references to them: their random-looking
        # contents would read as keys, phone numbers or cards.
        "image_url",
        "url",
        "file_url",
        "source",
        "data",
        "file_data",
        "image_data",
        "b64_json",
        "input_audio",
        # Opaque signed or encrypted blobs the vendor returns and expects back verbatim.
        "signature",
        "encrypted_content",
    }
)
"""Keys of a request body whose values :func:`redact_json` and the Guard never scan or change."""


def scan_texts(scanner: Scanner, texts: Iterable[str]) -> Counter[str]:
    """How many findings of each kind ``scanner`` reports over ``texts``."""
    counts: Counter[str] = Counter()
    for t in texts:
        for f in scanner.scan(t):
            counts[f.kind] += 1
    return counts


def redact_json(scanner: Scanner, value: Any, placeholder: str = DEFAULT_PLACEHOLDER) -> tuple[Any, Counter[str]]:
    """Redact every string of a JSON-like ``value`` (mappings, lists, tuples, strings; other values
    as they are), except under :data:`SKIP_KEYS`. Returns the new value and the findings by kind.

    ``value`` is not changed: only the containers on the path to a redacted string are copied (a
    mapping becomes a ``dict``), everything else is shared, so with nothing found the result *is*
    ``value``.
    """
    counts: Counter[str] = Counter()

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            found = scanner.scan(v)
            if not found:
                return v
            for f in found:
                counts[f.kind] += 1
            return redact(v, found, placeholder)
        if isinstance(v, Mapping):
            changed: dict[Any, Any] | None = None
            for k, item in v.items():
                if isinstance(k, str) and k in SKIP_KEYS:
                    continue
                new = walk(item)
                if new is not item:
                    if changed is None:
                        changed = dict(v)
                    changed[k] = new
            return v if changed is None else changed
        if isinstance(v, (list, tuple)):
            items: list[Any] | None = None
            for i, item in enumerate(v):
                new = walk(item)
                if new is not item:
                    if items is None:
                        items = list(v)
                    items[i] = new
            if items is None:
                return v
            return tuple(items) if isinstance(v, tuple) else items
        return v

    return walk(value), counts


# ---------------------------------------------------------------------------------------------
# Presidio

_PRESIDIO_KINDS: Mapping[str, str] = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "payment_card",
    "IBAN_CODE": "iban",
    "US_SSN": "us_ssn",
    "IP_ADDRESS": "ip_address",
    "PERSON": "person",
    "LOCATION": "location",
}


class PresidioDetector:
    """A :class:`Detector` backed by Microsoft Presidio's ``AnalyzerEngine``
    (``pip install 'tokenguard[presidio]'``).

    ``analyzer``: an ``AnalyzerEngine`` (or any object with the same ``analyze(text=, language=,
    entities=)`` method). By default, one on a blank spaCy pipeline: Presidio's pattern, checksum
    and context recognizers work, nothing is downloaded, and there is no named-entity model, so no
    PERSON or LOCATION; pass ``AnalyzerEngine()`` with a spaCy model installed for those.

    ``entities`` maps Presidio entity types to kinds and limits the analysis to them; by default
    every entity is analysed, the common ones mapped to the built-in kinds (``EMAIL_ADDRESS`` to
    ``email``, ``CREDIT_CARD`` to ``payment_card``...) and the others to their lower-cased type
    (``PERSON`` to ``person``). Results scoring below ``score_threshold`` are dropped.
    """

    name = "presidio"
    priority = 20  # below the built-in detectors: between equal spans, a built-in one names the finding

    def __init__(
        self,
        analyzer: Any = None,
        *,
        entities: Mapping[str, str] | None = None,
        score_threshold: float = 0.5,
        language: str = "en",
    ) -> None:
        if analyzer is None:
            analyzer = self._default_analyzer(language)
        self.analyzer = analyzer
        self.language = language
        self.score_threshold = score_threshold
        self._entities: list[str] | None = list(entities) if entities is not None else None
        self._map: dict[str, str] = dict(entities) if entities is not None else dict(_PRESIDIO_KINDS)
        kinds = set(self._map.values())
        if entities is None:
            supported = getattr(analyzer, "get_supported_entities", None)
            if callable(supported):
                kinds.update(self._kind(e) for e in supported(language=language))
        self.kinds: tuple[str, ...] = tuple(sorted(kinds))

    def _kind(self, entity_type: str) -> str:
        return self._map.get(entity_type, entity_type.lower())

    @staticmethod
    def _default_analyzer(language: str) -> Any:
        try:
            presidio = importlib.import_module("presidio_analyzer")
            nlp_engine = importlib.import_module("presidio_analyzer.nlp_engine")
            spacy = importlib.import_module("spacy")
        except ImportError as exc:
            raise ImportError(
                "PresidioDetector needs Microsoft Presidio: pip install 'tokenguard[presidio]' "
                f"(could not import {exc.name or 'presidio_analyzer'})"
            ) from exc
        # A loaded engine is not loaded again, so Presidio does not look for (or download) a model.
        engine = nlp_engine.SpacyNlpEngine(models=[{"lang_code": language, "model_name": f"blank:{language}"}])
        engine.nlp = {language: spacy.blank(language)}
        return presidio.AnalyzerEngine(nlp_engine=engine, supported_languages=[language])

    def find(self, text: str) -> Iterator[Finding]:
        """Presidio's results at or above the score threshold, as findings."""
        results = self.analyzer.analyze(text=text, language=self.language, entities=self._entities)
        for r in results:
            if r.score >= self.score_threshold:
                yield Finding(self._kind(r.entity_type), int(r.start), int(r.end), self.name)

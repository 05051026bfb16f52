"""Personal-data masking for text before it reaches an encoder, a cache or a log.

:class:`PrivacyMasker` replaces personal values with typed placeholders (``[EMAIL]``,
``[PHONE]``, ``[CARD]``, ...) so the encoded text keeps its shape ("contact me at [EMAIL]")
while the value itself never leaves. The rules aim at high precision on recommender content:
movie titles with years, ISBNs, model numbers, prices, dates, versions and ratings must
survive untouched, so numeric rules are checked beyond the regex (Luhn for cards, mod-97
for IBANs, digit counts and separators for phones, valid octets for IPs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clrec.errors import ClrecError

CUSTOM_LABEL = "REDACTED"  # placeholder label of an extra pattern given without one
# How far back the context checks look ("ISBN", "version" before a number).
_LOOKBACK = 16


# --------------------------------------------------------------------------- checks


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters → 10..35, mod 97."""
    compact = re.sub(r"[\s-]", "", text).upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _before(match: re.Match[str]) -> str:
    """The few characters before a match, trailing spaces dropped."""
    return match.string[max(0, match.start() - _LOOKBACK) : match.start()].rstrip()


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


# A long number right after one of these words is a product code, not a card.
_PRODUCT_CODES = ("ISBN", "ISBN:", "EAN", "EAN:", "UPC", "UPC:", "GTIN", "GTIN:", "BARCODE")


def _card(match: re.Match[str]) -> bool:
    before = _before(match).upper()
    if before.endswith(_PRODUCT_CODES):
        return False
    digits = _digits(match.group(0))
    # Payment cards start with 2–6 (Mastercard 2/5, Amex 3, Visa 4, Discover/UnionPay 6); this
    # also keeps ISBN-13s (978/979…) and other long identifiers out.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _ssn(match: re.Match[str]) -> bool:
    area, group, serial = match.group(0).split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _phone(match: re.Match[str]) -> bool:
    text = match.group(0)
    digits = _digits(text)
    if text.startswith(("+", "00")):
        return 8 <= len(digits) <= 15
    return 9 <= len(digits) <= 12


_TITLE_YEAR = re.compile(r"\s*\((?:19|20)\d\d\)")


def _not_a_title(match: re.Match[str]) -> bool:
    """Keep an address-like span followed by "(year)": "21 Jump Street (2012)" is a film."""
    return _TITLE_YEAR.match(match.string, match.end()) is None


def _ip(match: re.Match[str]) -> bool:
    before = _before(match).lower()
    # "version 1.2.3.4" and "v1.2.3.4" are version numbers, not addresses.
    return not before.endswith(("version", "ver", "ver.", "v", "build", "release"))


# --------------------------------------------------------------------------- rules

_STREET_TYPES = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace"
    r"|Way|Square|Sq|Parkway|Pkwy|Highway|Hwy|Close|Crescent|Cres|Gardens|Grove|Circle|Cir"
    r"|Trail|Row|Mews|Loop|Alley|Plaza|Walk|Path|Pike"
)
_DIRECTION = r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West))?"
_UNIT = r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl)\.?\s*#?\s*\w{1,5})?"
_CITY_ZIP = r"(?:,\s*[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+)?,?\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
# German, Dutch, Scandinavian compounds: "Hauptstraße 5", "Kerkstraat 12a", "Storgatan 3".
_COMPOUND_SUFFIX = (
    r"straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|chaussee|steig"
    r"|straat|laan|gracht|plein|vej|gatan|gata|veien|vägen|katu"
)
# Deliberately absent: suffixes that end ordinary words ("Conjuring", "Spring", "Brigade").
# Romance-language street words, name-first ("Via Roma 10", "Calle Mayor 5").
_PREFIX_STREET = (
    r"Via|Viale|Corso|Piazza|Calle|Avenida|Paseo|Plaza|Carrer|Rua|Praça|Rue|Avenue|Boulevard"
    r"|Chemin|Allée|Impasse|Quai"
)
# Number-first French style: "12 rue de la Paix", "5 bis avenue Foch".
_NUMBER_FIRST_ROMANCE = r"rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|cours"


@dataclass(frozen=True)
class _Rule:
    label: str
    pattern: re.Pattern[str]
    check: Callable[[re.Match[str]], bool] | None = None


def _rule(
    label: str, pattern: str, check: Callable[[re.Match[str]], bool] | None = None, flags: int = 0
) -> _Rule:
    return _Rule(label, re.compile(pattern, flags), check)


# Order matters: a later rule never sees what an earlier one replaced (URLs before emails,
# IBANs and cards before phones, structured numbers before free-form ones).
_RULES: tuple[_Rule, ...] = (
    _rule(
        "URL_WITH_TOKEN",
        r"\b(?:https?|ftp)://[^\s<>\"']*?[?&#;](?:access_token|refresh_token|id_token|token"
        r"|api[_-]?key|apikey|key|secret|sig|signature|auth|session(?:id)?|sid|password|passwd"
        r"|pwd|code|otp)=[^\s<>\"']+",
        flags=re.IGNORECASE,
    ),
    _rule(
        "URL_WITH_CREDENTIALS",
        r"\b(?:https?|ftp)://[^\s/:@<>\"']+:[^\s/@<>\"']+@[^\s<>\"']+",
        flags=re.IGNORECASE,
    ),
    _rule(
        "EMAIL",
        # The look-behind starts a match only where a local part can begin, so a long run
        # of word characters is scanned once, not once per position.
        r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])"
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
        r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b",
    ),
    _rule(  # "jane.doe [at] example [dot] com", "jane (at) example.com"
        "EMAIL",
        r"(?<![\w.+-])[\w.+-]+\s*[\[(]\s*at\s*[\])]\s*[\w-]+(?:\s*(?:[\[(]\s*dot\s*[\])]|\.)\s*[\w-]+)+",
        flags=re.IGNORECASE,
    ),
    _rule(
        "IBAN",
        r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,4})?\b",
        lambda match: iban_valid(match.group(0)),
    ),
    _rule(
        "CARD",
        # Contiguous 13–19 digits, groups of four (16 and 19 digits), Amex 4-6-5, Diners 4-6-4.
        r"(?<![\d.,-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{3})?|\d{4}[ -]\d{6}[ -]\d{4,5})"
        r"(?![\d-])",
        _card,
    ),
    _rule("SSN", r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])", _ssn),
    _rule(
        "IP",
        r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
        r"(?::\d{1,5})?(?!\w|\.\d)",
        _ip,
    ),
    _rule(  # full or "::"-compressed IPv6 with at least three groups
        "IP",
        r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
        r"|(?<![\w:])(?=[0-9A-Fa-f:]*::)(?:[0-9A-Fa-f]{1,4}:{1,2}){2,6}[0-9A-Fa-f]{1,4}(?![\w:])",
        _ip,
    ),
    _rule(  # a number announced as one: "tel: 555 1234", "call me on 5551234"
        "PHONE",
        r"\b(?:tel|phone|mobile|cell|fax|whatsapp|call me (?:at|on))\.?:?\s*"
        r"(?P<value>\+?\d[\d ()./-]{4,}\d)",
        flags=re.IGNORECASE,
    ),
    _rule(  # international: +44 20 7946 0958, 0049 30 1234567, +1 (555) 123-4567
        "PHONE",
        r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}(?!\w|[.-]\d)",
        _phone,
    ),
    _rule(  # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199
        "PHONE",
        r"(?<![\w(+-])(?:1[ .-])?(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|\.\d)",
    ),
    # National with a trunk 0: 020 7946 0958, (020) 7946 0958, 07700 900123, 030/1234567,
    # 01 23 45 67 89; 9–12 digits, so 8-digit dates such as 05.12.2023 stay.
    _rule(
        "PHONE",
        r"(?<![\w./-])(?:0\d{1,4}|\(0\d{1,4}\))(?:[ /.-]\d{2,8}){1,4}(?![\w/-]|\.\d)",
        _phone,
    ),
    _rule(
        "ADDRESS",
        rf"\b\d{{1,5}}[A-Za-z]?(?:-\d{{1,4}})?\s+(?:[A-Z][A-Za-z'’.-]*\s+){{1,4}}"
        rf"(?:{_STREET_TYPES})\b\.?{_DIRECTION}{_UNIT}{_CITY_ZIP}",
        _not_a_title,
    ),
    _rule(
        "ADDRESS",
        # Starts only at the start of a (hyphenated) name: "Karl-Marx-Straße 5" is one match.
        rf"(?<![\wäöüßåøæ-])[A-ZÄÖÜÅØÆ][\wäöüßåøæ-]*(?i:{_COMPOUND_SUFFIX})\s+\d{{1,4}}\s?[a-zA-Z]?\b",
        _not_a_title,
    ),
    _rule(
        "ADDRESS",
        rf"\b(?:{_PREFIX_STREET})\s+(?:[\w'’-]+\s+){{0,4}}?\d{{1,4}}[a-zA-Z]?\b",
        _not_a_title,
    ),
    _rule(
        "ADDRESS",
        rf"\b\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?:{_NUMBER_FIRST_ROMANCE})\s+"
        r"(?:(?:de|du|des|la|le|les|l'|d')\s*)*[A-ZÀ-Ý][\w'’-]*(?:\s+[A-ZÀ-Ý][\w'’-]*){0,3}",
        _not_a_title,
        flags=re.IGNORECASE,
    ),
    _rule("POSTCODE", r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) \d[ABD-HJLNP-UW-Z]{2}\b"),
)


# --------------------------------------------------------------------------- masker


class PrivacyMasker:
    """Replaces personal data in text with typed placeholders such as ``[EMAIL]``.

    ``extra_patterns`` adds regexes for data the built-in rules miss (customer numbers,
    internal ids): a plain string is replaced with ``[REDACTED]``, a ``(label, regex)`` pair
    with ``[LABEL]``. They run after the built-in rules and are compiled once; an invalid one
    raises :class:`ClrecError`. ``enabled=False`` returns text unchanged (for data already
    known to be clean).
    """

    def __init__(
        self, extra_patterns: Sequence[str | tuple[str, str]] = (), enabled: bool = True
    ) -> None:
        self.enabled = enabled
        extra: list[_Rule] = []
        for item in extra_patterns:
            label, pattern = (CUSTOM_LABEL, item) if isinstance(item, str) else item
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", label):
                raise ClrecError(f"masking label {label!r} must be upper-case letters and _")
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise ClrecError(f"invalid masking pattern {pattern!r}: {error}") from error
            if compiled.search(""):
                raise ClrecError(f"masking pattern {pattern!r} matches the empty string")
            extra.append(_Rule(label, compiled))
        self._rules = _RULES + tuple(extra)

    def mask(self, text: str) -> str:
        """``text`` with every personal value replaced by its ``[LABEL]`` placeholder."""
        if not self.enabled or not text:
            return text
        for rule in self._rules:
            text = rule.pattern.sub(_replacer(rule), text)
        return text

    def mask_many(self, texts: Sequence[str | None]) -> list[str | None]:
        """:meth:`mask` over a list, keeping ``None`` (no text) as it is."""
        return [None if text is None else self.mask(text) for text in texts]


def _replacer(rule: _Rule) -> Callable[[re.Match[str]], str]:
    """Substitution callback: the placeholder where the match passes the rule's check.

    A rule with a ``value`` group (a number after "tel:") replaces only that group.
    """
    placeholder = f"[{rule.label}]"
    partial = "value" in rule.pattern.groupindex

    def replace(match: re.Match[str]) -> str:
        if rule.check is not None and not rule.check(match):
            return match.group(0)
        if not partial:
            return placeholder
        whole, start = match.group(0), match.start()
        return (
            whole[: match.start("value") - start]
            + placeholder
            + whole[match.end("value") - start :]
        )

    return replace

"""Privacy masking: realistic personal data is masked, innocent look-alikes survive unchanged."""

from __future__ import annotations

import time

import pytest

from clrec.encoders.privacy import (
    PrivacyMasker,
    iban_valid,
    luhn_valid,
)
from clrec.errors import ClrecError

# (text, the personal value that must be gone, the placeholder that must appear)
PERSONAL: list[tuple[str, str, str]] = [
    ("Contact me at jane.doe@example.com for details", "jane.doe@example.com", "EMAIL"),
    ("my mail: JOHN_SMITH+movies@mail.co.uk", "JOHN_SMITH+movies@mail.co.uk", "EMAIL"),
    ("email: a.b-c@sub.example-mail.org.", "a.b-c@sub.example-mail.org", "EMAIL"),
    ("reach me at jane.doe [at] gmail [dot] com", "jane.doe", "EMAIL"),
    ("Call me on +44 20 7946 0958 after 6pm", "7946 0958", "PHONE"),
    ("Phone: (555) 123-4567", "123-4567", "PHONE"),
    ("my cell is 555-867-5309", "867-5309", "PHONE"),
    ("My number is +1 (415) 555-2671", "555-2671", "PHONE"),
    ("call 1-800-555-0199 to order", "555-0199", "PHONE"),
    ("Ring 07700 900123 any time", "900123", "PHONE"),
    ("Tel. 030 1234567", "1234567", "PHONE"),
    ("office (020) 7946 0958", "7946 0958", "PHONE"),
    ("Büro: +49 (0)30 901820", "901820", "PHONE"),
    ("Appelez-moi au 01 23 45 67 89", "45 67 89", "PHONE"),
    ("whatsapp +33 6 12 34 56 78", "12 34 56 78", "PHONE"),
    ("tel: 5551234", "5551234", "PHONE"),
    ("Festnetz 0049 89 636 48018", "636 48018", "PHONE"),
    ("Card 4111 1111 1111 1111 exp 12/26", "4111 1111 1111 1111", "CARD"),
    ("paid with 5500-0000-0000-0004 yesterday", "5500-0000-0000-0004", "CARD"),
    ("amex 3782 822463 10005", "822463", "CARD"),
    ("number 4012888888881881 please", "4012888888881881", "CARD"),
    ("card no 6011 0009 9013 9424", "9013 9424", "CARD"),
    ("IBAN DE89 3704 0044 0532 0130 00", "3704 0044 0532", "IBAN"),
    ("send it to GB82WEST12345698765432 today", "GB82WEST12345698765432", "IBAN"),
    ("FR14 2004 1010 0505 0001 3M02 606", "0505 0001", "IBAN"),
    ("Lives at 221B Baker Street, London", "221B Baker", "ADDRESS"),
    ("1600 Pennsylvania Ave NW, Washington, DC 20500", "1600 Pennsylvania", "ADDRESS"),
    ("Meine Adresse: Hauptstraße 5, 10115 Berlin", "Hauptstraße 5", "ADDRESS"),
    ("ship to 742 Evergreen Terrace, Springfield", "742 Evergreen", "ADDRESS"),
    ("350 Fifth Avenue, Apt 4B, New York, NY 10118", "350 Fifth", "ADDRESS"),
    ("j'habite 12 rue de la Paix, Paris", "12 rue de la Paix", "ADDRESS"),
    ("Via Roma 10, Milano", "Roma 10", "ADDRESS"),
    ("Kerkstraat 12a, Amsterdam", "Kerkstraat 12a", "ADDRESS"),
    ("Wir wohnen in der Karl-Marx-Straße 12", "Marx-Straße 12", "ADDRESS"),
    ("visit 1 Infinite Loop, Cupertino", "1 Infinite", "ADDRESS"),
    ("Calle Mayor 5, Madrid", "Mayor 5", "ADDRESS"),
    ("postcode SW1A 2AA", "SW1A 2AA", "POSTCODE"),
    ("server saw me at 192.168.1.23 yesterday", "192.168.1.23", "IP"),
    ("proxy 10.0.0.1:8080", "10.0.0.1", "IP"),
    ("my ip is 8.8.4.4.", "8.8.4.4", "IP"),
    ("login from 2001:db8:85a3::8a2e:370:7334", "8a2e:370:7334", "IP"),
    ("my ssn is 123-45-6789", "123-45-6789", "SSN"),
    ("reset link https://example.com/reset?token=abc123def456", "abc123def456", "URL_WITH_TOKEN"),
    ("ftp://admin:hunter2@files.example.org/x", "hunter2", "URL_WITH_CREDENTIALS"),
]

INNOCENT: list[str] = [
    "2001: A Space Odyssey (1968)",
    "Apollo 13 (1995)",
    "Ocean's 11 (1960)",
    "Fahrenheit 451 (1966)",
    "Route 66",
    "Miracle on 34th Street (1947)",
    "42nd Street (1933)",
    "A Nightmare on Elm Street (1984)",
    "Highway 61 Revisited",
    "Sunset Blvd. (1950)",
    "The 7 Faces of Dr. Lao (1964)",
    "12 Monkeys (1995)",
    "Blade Runner 2049 (2017)",
    "Phone Booth (2002)",
    "The Conjuring 2 (2016)",
    "21 Jump Street (2012)",
    "84 Charing Cross Road (1987)",
    "Spring 2022 collection, Brigade 5",
    "Star Wars: Episode IV - A New Hope (1977)",
    "ISBN 978-0-306-40615-7",
    "ISBN 0-306-40615-2",
    "ISBN 9780306406157",
    "EAN 4006381333931",
    "UPC 036000291452",
    "ASIN B000FKBCX4",
    "Sony WH-1000XM4 headphones",
    "Samsung SM-G991B",
    "Order 4111111111111112 shipped",
    "Price: $1,299.99",
    "€ 12.50 per month, 1,000,000 copies sold",
    "Released on 2023-01-15",
    "15.01.2023 at 14:30",
    "05.12.2023",
    "12/25/2023",
    "Version 1.2.3",
    "Python 3.11.4",
    "firmware v1.2.3.4",
    "version 10.0.0.1",
    "Windows 10.0.19041",
    "Rated 4.5/5 by 1,234 users",
    "Doors open at 19:30, show at 20:00:00",
    "2 + 2 = 4 and 3 * 7 = 21",
    "x = 0.5 * (1 + 10^-3)",
    "Pi = 3.14159265358979",
    "Coordinates 51.5074, -0.1278",
    "RFC 2616 section 14.9",
    "Dimensions: 120 x 60 x 75 cm",
    "CAS 7732-18-5",
    "size 10.5 US / 44 EU",
    "Top 100 movies of 1999-2000",
    "Agent 007 and Room 101",
    "Chapter 11 bankruptcy",
    "IP Man (2008)",
    "1984 by George Orwell",
]


@pytest.fixture(scope="module")
def masker() -> PrivacyMasker:
    return PrivacyMasker()


def test_lists_are_large_enough() -> None:
    assert len(PERSONAL) >= 30
    assert len(INNOCENT) >= 30


@pytest.mark.parametrize(("text", "secret", "label"), PERSONAL)
def test_personal_data_is_masked(masker: PrivacyMasker, text: str, secret: str, label: str) -> None:
    masked = masker.mask(text)
    assert secret not in masked, masked
    assert f"[{label}]" in masked, masked


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent_text_survives(masker: PrivacyMasker, text: str) -> None:
    assert masker.mask(text) == text


def test_context_around_placeholders_is_kept(masker: PrivacyMasker) -> None:
    text = "Loved Apollo 13 (1995)! write to me: fan@example.org or call +44 20 7946 0958."
    assert masker.mask(text) == "Loved Apollo 13 (1995)! write to me: [EMAIL] or call [PHONE]."


def test_checksums() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00")
    assert not iban_valid("DE89 3704 0044 0532 0130 01")


def test_extra_patterns_plain_and_labelled() -> None:
    masker = PrivacyMasker([r"\bCUST-\d{6}\b", ("MEMBER", r"\bM\d{8}\b")])
    assert masker.mask("ticket CUST-123456 by M12345678") == "ticket [REDACTED] by [MEMBER]"


@pytest.mark.parametrize("bad", [r"(unclosed", r"a{2,1}", r"x*"])
def test_bad_extra_pattern_is_a_clrec_error(bad: str) -> None:
    with pytest.raises(ClrecError, match="pattern"):
        PrivacyMasker([bad])


def test_disabled_masker_returns_text_unchanged() -> None:
    text = "jane.doe@example.com"
    assert PrivacyMasker(enabled=False).mask(text) == text


def test_mask_many_keeps_none(masker: PrivacyMasker) -> None:
    assert masker.mask_many(["a@b.io", None]) == ["[EMAIL]", None]


@pytest.mark.parametrize("unit", ["a", "1.", "1-", "A-", "Aa ", "12 Ab ", "ab:", "http://x"])
def test_long_inputs_do_not_backtrack_quadratically(masker: PrivacyMasker, unit: str) -> None:
    text = unit * (40_000 // len(unit))  # quadratic rules took tens of seconds on this
    start = time.perf_counter()
    masker.mask(text)
    assert time.perf_counter() - start < 3.0

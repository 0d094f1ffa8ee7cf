"""The sensitive-data scanner: every detection rule, the labelled corpus (precision and recall per
kind), redaction of texts and request bodies, custom detectors and the real Presidio adapter.

All secrets below are fake: documented test values (card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698
7654 32, AWS's AKIAIOSFODNN7EXAMPLE) or made-up strings with the right prefixes.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import re
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import tokenguard as tg
from tokenguard import sensitive as S
from tokenguard.errors import ConfigError
from tokenguard.sensitive import (
    BUILTIN_KINDS,
    SKIP_KEYS,
    Detector,
    Finding,
    PresidioDetector,
    Scanner,
    builtin_detectors,
    redact,
    redact_json,
    scan,
    scan_texts,
)

# Presidio's e-mail recognizer asks tldextract for the public suffix list, which tldextract downloads
# on first use unless this is empty (it then uses the snapshot it ships). Set before Presidio is imported.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

CORPUS = Path(__file__).parent / "data" / "sensitive_corpus.jsonl"


def found(text: str, **kw: object) -> list[tuple[str, str]]:
    """(kind, value) of each finding, in order."""
    return [(f.kind, text[f.start : f.end]) for f in scan(text, **kw)]  # type: ignore[arg-type]


def b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
OPENAI = "sk-proj-Xq3vT9bLm2Qw8ZrT3BlbkFJa7Kd0Pn4Yc6Hs1Ue5Gi"
ANTHROPIC = (
    "sk-ant-api03-"
    + "Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hJ7kL9mN1pQ3r-AA"
)
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PEM_BODY = (
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm"
)


# --------------------------------------------------------------------------------------------
# email


def test_email_addresses() -> None:
    text = "Write to jane.doe@example.com, j_smith+billing@mail.example.co.uk or mailto:info@example.org."
    assert found(text) == [
        ("email", "jane.doe@example.com"),
        ("email", "j_smith+billing@mail.example.co.uk"),
        ("email", "info@example.org"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "user@localhost is only a local name",
        "npm install lodash@4.17.21",
        "the retina image logo@2x.png",
        "git clone git@github.com:example/repo.git",
        "https://user:secret@example.com/path",
        "follow @example_support for news",
        "a @ b.com is not an address, nor is a@b.c",
        "decorators: @property\ndef x(self): ...",
    ],
)
def test_email_negatives(text: str) -> None:
    assert found(text, kinds=["email"]) == []


# --------------------------------------------------------------------------------------------
# phone


@pytest.mark.parametrize(
    "number",
    [
        "(415) 555-0132",
        "415-555-0132",
        "415.555.0132",
        "415 555 0132",
        "1-800-555-0199",
        "+1 415-555-0132",
        "+1 (415) 555-0132",
        "+14155550132",
        "+44 20 7946 0958",
        "+49 30 1234567",
        "+33 6 12 34 56 78",
        "+91 98765 43210",
        "020 7946 0958",
        "030 1234567",
        "06 12 34 56 78",
    ],
)
def test_phone_numbers(number: str) -> None:
    assert found(f"Call {number} today.") == [("phone", number)]


@pytest.mark.parametrize(
    "text",
    [
        "order 4155550132 shipped",  # a bare digit run, no separators and no "+"
        "on 2024-05-12 at 10:30:45",  # dates and times
        "version 10.20.3040.5060",
        "IDs 1234-5678-90",
        "call 555-0132 (local)",  # 7 digits without an area code: too short to tell
        "+12 345",  # too few digits
        "+1234567890123456789",  # more than E.164's 15 digits
        "ISBN 978-3-16-148410-0",
        "code 000-12-3456",
    ],
)
def test_phone_negatives(text: str) -> None:
    assert found(text, kinds=["phone"]) == []


def test_a_phone_number_inside_a_card_number_is_not_reported() -> None:
    assert found("card 4111-1111-1111-1111 thanks") == [("payment_card", "4111-1111-1111-1111")]
    # The phone detector alone does not see one in it either.
    assert found("card 4111-1111-1111-1111 thanks", kinds=["phone"]) == []


# --------------------------------------------------------------------------------------------
# payment_card


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",  # Visa
        "4111-1111-1111-1111",
        "4111111111111111",
        "4222222222222",  # Visa, 13 digits
        "5555 5555 5555 4444",  # Mastercard
        "2221 0000 0000 0009",  # Mastercard 2-series
        "3782 822463 10005",  # American Express, 4-6-5
        "371449635398431",
        "6011 1111 1111 1117",  # Discover
        "3530 1113 3330 0000",  # JCB
        "3056 9309 0259 04",  # Diners Club, 14 digits
        "6200 0000 0000 0005",  # UnionPay
    ],
)
def test_payment_cards(card: str) -> None:
    assert found(f"paid with {card}.") == [("payment_card", card)]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "1234 5678 9012 3456",  # no brand
        "4111 1111 1111 11",  # Visa prefix, 14 digits: not a Visa length
        "3782 822463 1000",  # Amex prefix with 14 digits
        "55555555555544440",  # a Mastercard prefix with 17 digits
        "12345678901234567890",  # longer than 19 digits
        "1700000000000",  # a timestamp in milliseconds
        "0.4111111111111111",  # a decimal fraction
    ],
)
def test_payment_card_negatives(text: str) -> None:
    assert found(text, kinds=["payment_card"]) == []


def test_card_numbers_cut_at_a_separator_and_found_after_one() -> None:
    assert found("typed 4111 1111 1111 1111 2 times") == [("payment_card", "4111 1111 1111 1111")]
    assert found("ids 2024 4111 1111 1111 1111 merged") == [("payment_card", "4111 1111 1111 1111")]


# --------------------------------------------------------------------------------------------
# iban


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NO93 8601 1117 947",  # the shortest: 15 characters
        "CH93 0076 2011 6238 5295 7",
    ],
)
def test_ibans(iban: str) -> None:
    assert found(f"IBAN: {iban}, thanks") == [("iban", iban)]


@pytest.mark.parametrize(
    "text",
    [
        "GB82 WEST 1234 5698 7654 33",  # wrong check digits (mod 97)
        "GB82 WEST 1234 5698 7654",  # too short for GB (22)
        "GB82 WEST 1234 5698 7654 3210",  # too long for GB
        "XX82 WEST 1234 5698 7654 32",  # no such country
        "GB82 WES T123 4569 8765 432",  # not grouped by four
        "gb82 west 1234 5698 7654 32",  # lower case
    ],
)
def test_iban_negatives(text: str) -> None:
    assert found(text, kinds=["iban"]) == []


# --------------------------------------------------------------------------------------------
# us_ssn


def test_ssns() -> None:
    assert found("SSN 078-05-1120 and 219 09 9999") == [("us_ssn", "078-05-1120"), ("us_ssn", "219 09 9999")]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "900-12-3456",  # areas 900-999
        "999-12-3456",
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "123-45-67890",  # one digit too many
        "123-45 6789",  # mixed separators
        "1123-45-6789",
    ],
)
def test_ssn_negatives(text: str) -> None:
    assert found(f"number {text} here", kinds=["us_ssn"]) == []


def test_bare_nine_digits_are_an_ssn_only_after_a_cue() -> None:
    assert found("SSN: 536221234") == [("us_ssn", "536221234")]
    assert found("her social security number is 536221234.") == [("us_ssn", "536221234")]
    assert found("order 536221234 shipped") == []
    assert found("SSN: 1536221234") == []  # ten digits
    assert found("SSN: 966221234") == []  # area 9xx


# --------------------------------------------------------------------------------------------
# ip_address


def test_ipv4_addresses_without_the_port() -> None:
    text = "from 192.168.1.10:8080 via 10.0.0.1, dns 8.8.8.8."
    assert found(text) == [("ip_address", "192.168.1.10"), ("ip_address", "10.0.0.1"), ("ip_address", "8.8.8.8")]


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3.4",
        "Version: 10.0.0.1 is out",
        "build 6.1.7601.2",
        "the release 2.0.1.3 notes",
        "v1.2.3.4",
        "V10.0.0.1",
        "Mozilla/5.0 Chrome/120.0.0.0 Safari/537.36",
        "OID 1.2.3.4.5",
        "999.1.1.1",
        "1.2.3.256",
        "01.2.3.4",  # leading zero
        "12345.1.1.1",
        "see section 4.5.3.1",
    ],
)
def test_ipv4_negatives(text: str) -> None:
    assert found(text, kinds=["ip_address"]) == []


def test_ipv6_addresses() -> None:
    text = "bind [2001:db8::1]:443, fe80::1ff:fe23:4567:890a/64 and ::1; full 2001:0db8:85a3:0000:0000:8a2e:0370:7334"
    assert found(text) == [
        ("ip_address", "2001:db8::1"),
        ("ip_address", "fe80::1ff:fe23:4567:890a"),
        ("ip_address", "::1"),
        ("ip_address", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ]


@pytest.mark.parametrize(
    "text", ["std::vector<int>", "Foo::Bar::baz", "12:30:45", "mac 00:1A:2B:3C:4D:5E", "a:b:c", "ratio 1:2:3:4"]
)
def test_ipv6_negatives(text: str) -> None:
    assert found(text, kinds=["ip_address"]) == []


# --------------------------------------------------------------------------------------------
# api_key


@pytest.mark.parametrize(
    ("key", "detector"),
    [
        (OPENAI, "openai_key"),
        ("sk-" + "aB3dE5fG7hJ9kL1mN3pQ5rT3BlbkFJ5tU9vW1xY3zA5bC7dE9f", "openai_key"),
        ("sk-svcacct-" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", "openai_key"),
        ("sk-admin-" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", "openai_key"),
        (ANTHROPIC, "anthropic_key"),
        ("sk-ant-admin01-" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", "anthropic_key"),
        (AWS_ID, "aws_access_key_id"),
        ("ASIAY34FZKBOKMUTVV7A", "aws_access_key_id"),
        (GITHUB, "github_token"),
        ("gho_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", "github_token"),
        (
            "github_pat_" + "11ABCDEFG0123456789abc_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1t",
            "github_token",
        ),
        ("xoxb-" + "2048351203-4201739218-aB3dE5fG7hJ9kL1mN3pQ5rS7", "slack_token"),
        ("xoxp-" + "2048351203-4201739218-4201739219-0a1b2c3d4e5f6a7b8c9d", "slack_token"),
        ("https://hooks.slack.com/services/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", "slack_webhook"),
        ("AIza" + "SyA-aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1x", "google_api_key"),
        ("sk_live_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7t", "stripe_key"),
        ("rk_live_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7t", "stripe_key"),
    ],
)
def test_vendor_keys(key: str, detector: str) -> None:
    text = f"the key is {key} , rotate it"
    findings = scan(text)
    assert [(f.kind, text[f.start : f.end], f.detector) for f in findings] == [("api_key", key, detector)]


@pytest.mark.parametrize(
    "text",
    [
        "sk-this-is-not-a-real-key-just-some-text",  # no digits, no capitals
        "task-aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",  # "sk-" inside a word
        "AKIAIOSFODNN7EXAMPL",  # 19 characters
        "XAKIAIOSFODNN7EXAMPLE",
        "ghp_tooShort123",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",  # the docs' placeholder
        "AIzaTooShort",
        "sk_live_short",
    ],
)
def test_vendor_key_negatives(text: str) -> None:
    assert found(text) == []


def test_aws_secret_key_only_when_assigned() -> None:
    for text in (
        f"aws_secret_access_key = {AWS_SECRET}",
        f'AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"',
        f'{{"SecretAccessKey": "{AWS_SECRET}"}}',
        f"secret_access_key: '{AWS_SECRET}'",
    ):
        findings = scan(text)
        assert [(f.kind, text[f.start : f.end], f.detector) for f in findings] == [
            ("api_key", AWS_SECRET, "aws_secret_key")
        ], text
    assert found(f"the docs use {AWS_SECRET} as an example") == []


@pytest.mark.parametrize(
    "text",
    [
        'api_key = "q8Xz3LmP9vT2kR7wN4bY"',
        "API_KEY=q8Xz3LmP9vT2kR7wN4bY",
        '{"token": "q8Xz3LmP9vT2kR7wN4bY"}',
        "password: q8Xz3LmP9vT2kR7wN4bY",
        "Authorization: Bearer q8Xz3LmP9vT2kR7wN4bY",
        "-H 'X-Api-Key: q8Xz3LmP9vT2kR7wN4bY'",
        "client.auth_token := 'q8Xz3LmP9vT2kR7wN4bY'",
        "export DB_PASSWD=q8Xz3LmP9vT2kR7wN4bY;",
        "?access_token=q8Xz3LmP9vT2kR7wN4bY&page=2",
        "$config['secret'] => 'q8Xz3LmP9vT2kR7wN4bY',",
        "privateKey: q8Xz3LmP9vT2kR7wN4bY.",
    ],
)
def test_high_entropy_values_assigned_to_secret_names(text: str) -> None:
    # The span is the value alone: no key name, quotes, "Bearer " or trailing punctuation.
    findings = scan(text)
    assert [(f.kind, text[f.start : f.end], f.detector) for f in findings] == [
        ("api_key", "q8Xz3LmP9vT2kR7wN4bY", "secret_assignment")
    ]


@pytest.mark.parametrize(
    "text",
    [
        'password = "changeme"',  # short
        'token: "placeholder-value"',  # no digits
        'password = "correct-horse-battery-staple"',
        'api_key = "your_api_key_1234567890"',  # a placeholder
        'api_key = "<OPENAI_API_KEY_12345678>"',
        "AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY}",
        "api_key = os.environ['OPENAI_API_KEY']",
        "token = get_token_from_vault(path_2024)",
        '"max_tokens": 1234567890123456789',
        'author: "jsmith_2019_contributor"',  # "auth" inside another word
        'token_url = "https://auth.example.com/oauth2/token"',
        'password_hash = "$2b$12$KIXQJ1b2c3d4e5f6g7h8iOeKjhY5zq8nq6Yw7x0y1z2A3B4C5D6E7F"',
        'cache_key = "user_1234567890_profile_v2"',  # not a secret-looking name
        'token = "aaaaaaaaaaaaaaaaaaaa1"',  # low entropy
        'request_id = "req_q8Xz3LmP9vT2kR7wN4bY"',
    ],
)
def test_assigned_value_negatives(text: str) -> None:
    assert found(text) == []


def test_a_jwt_is_not_also_a_high_entropy_api_key() -> None:
    for text in (f"Authorization: Bearer {JWT}", f'{{"access_token": "{JWT}"}}', f"?id_token={JWT}&x=1"):
        findings = scan(text)
        assert [(f.kind, text[f.start : f.end], f.detector) for f in findings] == [("jwt", JWT, "jwt")]


def test_a_vendor_key_assigned_to_a_secret_name_is_reported_once_by_its_vendor_detector() -> None:
    text = f'OPENAI_API_KEY="{OPENAI}"'
    assert [(f.kind, text[f.start : f.end], f.detector) for f in scan(text)] == [("api_key", OPENAI, "openai_key")]


# --------------------------------------------------------------------------------------------
# private_key


PRIVATE_LABELS = ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY",
                  "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK"]  # fmt: skip


@pytest.mark.parametrize("label", PRIVATE_LABELS)
def test_private_key_blocks(label: str) -> None:
    block = f"-----BEGIN {label}-----\n{PEM_BODY}\n-----END {label}-----"
    assert found(f"here:\n{block}\nbye") == [("private_key", block)]


def test_private_key_in_json_with_escaped_newlines() -> None:
    block = "-----BEGIN PRIVATE KEY-----\\n" + PEM_BODY.replace("\n", "\\n") + "\\n-----END PRIVATE KEY-----"
    text = json.dumps({"type": "service_account", "private_key": "x"}).replace('"x"', f'"{block}\\n"')
    assert found(text) == [("private_key", block)]


def test_private_key_without_end_runs_to_the_end_of_its_base64() -> None:
    block = f"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B2C\n\n{PEM_BODY}"
    assert found(f"{block}\n\n(rest cut off)") == [("private_key", block)]


@pytest.mark.parametrize("label", ["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", "PGP PUBLIC KEY BLOCK"])
def test_public_keys_and_certificates_are_not_reported(label: str) -> None:
    assert found(f"-----BEGIN {label}-----\n{PEM_BODY}\n-----END {label}-----") == []


# --------------------------------------------------------------------------------------------
# jwt


def test_jwts() -> None:
    rs = f"{b64url({'alg': 'RS256', 'kid': 'k1'})}.{b64url({'sub': '42'})}.c2lnbmF0dXJl_c2ln-bmF0"
    unsigned = f"{b64url({'alg': 'none'})}.{b64url({'sub': '42'})}."
    text = f"a {JWT} b {rs} c {unsigned} d"
    assert found(text) == [("jwt", JWT), ("jwt", rs), ("jwt", unsigned)]


@pytest.mark.parametrize(
    "token",
    [
        f"{b64url({'typ': 'JWT'})}.{b64url({'sub': '42'})}.c2lnbmF0dXJl",  # header without "alg"
        f"{b64url({'alg': 'HS256'})}.{b64url({'sub': '42'})}.",  # signed alg, empty signature
        f"{b64url({'alg': 'HS256'})}.{b64url({'sub': '42'})}",  # two segments
        "eyJub3QganNvbg.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl",  # header is not JSON
        f"{b64url(['alg'])}.{b64url({'sub': '42'})}.c2lnbmF0dXJl",  # header is not an object
    ],
)
def test_jwt_negatives(token: str) -> None:
    assert found(f"x {token} y", kinds=["jwt"]) == []


# --------------------------------------------------------------------------------------------
# the scanner


def test_findings_are_sorted_frozen_and_carry_the_detector() -> None:
    text = f"key {AWS_ID}, mail a@example.com, ip 10.0.0.1"
    findings = scan(text)
    assert [f.start for f in findings] == sorted(f.start for f in findings)
    assert findings[0] == Finding("api_key", 4, 24, "aws_access_key_id")
    with pytest.raises(AttributeError):
        findings[0].kind = "email"  # type: ignore[misc]


def test_offsets_are_str_indices_with_non_ascii_text() -> None:
    text = "日本語のメモ 🙂: jane@example.com, 电话 +44 20 7946 0958, café 4111 1111 1111 1111"
    assert found(text) == [
        ("email", "jane@example.com"),
        ("phone", "+44 20 7946 0958"),
        ("payment_card", "4111 1111 1111 1111"),
    ]
    # A character that lower-cases to two ("İ") does not shift anything either.
    text = "İİİ SSN 536221234 token: q8Xz3LmP9vT2kR7wN4bY"
    assert found(text) == [("us_ssn", "536221234"), ("api_key", "q8Xz3LmP9vT2kR7wN4bY")]


def test_scan_empty_and_plain_text() -> None:
    assert scan("") == []
    assert scan("Nothing to see here, just prose about budgets and tokens.") == []


def test_tg_scan_is_exported() -> None:
    assert tg.scan is scan
    assert tg.Finding is Finding
    assert tg.Scanner is Scanner


def test_kinds_restrict_the_scan() -> None:
    text = f"mail a@example.com, key {AWS_ID}, card 4111 1111 1111 1111"
    assert found(text, kinds=["email"]) == [("email", "a@example.com")]
    assert found(text, kinds="payment_card") == [("payment_card", "4111 1111 1111 1111")]
    scanner = Scanner(kinds=["api_key", "email"])
    assert scanner.kinds == ("api_key", "email")
    assert all("api_key" in d.kinds or "email" in d.kinds for d in scanner.detectors)
    assert [f.kind for f in scanner.scan(text)] == ["email", "api_key"]


def test_unknown_kinds_are_a_config_error_naming_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown sensitive-data kind\(s\) 'passport'.*valid kinds: api_key, email"):
        Scanner(kinds=["email", "passport"])
    with pytest.raises(ConfigError):
        scan("x", kinds=["credit_card"])
    assert issubclass(ConfigError, ValueError)


def test_builtin_kinds_and_detectors() -> None:
    assert BUILTIN_KINDS == (
        "email", "phone", "payment_card", "iban", "us_ssn", "ip_address", "api_key", "private_key", "jwt"
    )  # fmt: skip
    detectors = builtin_detectors()
    assert {k for d in detectors for k in d.kinds} == set(BUILTIN_KINDS)
    assert len({d.name for d in detectors}) == len(detectors)
    assert Scanner().kinds == tuple(sorted(BUILTIN_KINDS))


class EmployeeIds:
    """A custom detector: employee ids like EMP-123456."""

    name = "employee_id"
    kinds = ("employee_id",)

    def find(self, text: str) -> Iterator[Finding]:
        import re

        for m in re.finditer(r"\bEMP-\d{6}\b", text):
            yield Finding("employee_id", m.start(), m.end(), self.name)


def test_custom_detector_plugged_into_a_scanner() -> None:
    detector: Detector = EmployeeIds()
    scanner = Scanner([*builtin_detectors(), detector])
    text = "EMP-123456 wrote from bob@example.com"
    assert [(f.kind, text[f.start : f.end], f.detector) for f in scanner.scan(text)] == [
        ("employee_id", "EMP-123456", "employee_id"),
        ("email", "bob@example.com", "email"),
    ]
    assert Scanner([detector]).kinds == ("employee_id",)
    assert [f.kind for f in Scanner([*builtin_detectors(), detector], kinds=["employee_id"]).scan(text)] == [
        "employee_id"
    ]


def test_overlaps_keep_the_longer_then_the_higher_priority_finding() -> None:
    class Wide:
        name = "wide"
        kinds = ("thing",)

        def find(self, text: str) -> list[Finding]:
            return [Finding("thing", 0, len(text), "wide")]

    class Exact:
        name = "exact"
        kinds = ("other",)
        priority = 99

        def find(self, text: str) -> list[Finding]:
            return [Finding("other", 0, len(text), "exact"), Finding("other", 0, 2, "exact")]

    text = "mail a@example.com"
    # The wide finding covers the e-mail address: the longer one wins.
    assert [f.detector for f in Scanner([*builtin_detectors(), Wide()]).scan(text)] == ["wide"]
    # Same span: the higher priority wins; the short one overlaps it and goes.
    assert [f.detector for f in Scanner([Wide(), Exact()]).scan(text)] == ["exact"]


def test_a_bad_detector_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="is not a detector"):
        Scanner([object()])  # type: ignore[list-item]

    class StrKinds:
        name = "x"
        kinds = "email"

        def find(self, text: str) -> list[Finding]:
            return []

    with pytest.raises(ConfigError, match="must be a tuple of str"):
        Scanner([StrKinds()])  # type: ignore[list-item]


def test_scan_parts() -> None:
    scanner = Scanner()
    assert scanner.scan_parts(["a@example.com", "nothing", "ip 10.0.0.1"]) == [
        [Finding("email", 0, 13, "email")],
        [],
        [Finding("ip_address", 3, 11, "ip_address")],
    ]


def test_one_scanner_shared_by_threads() -> None:
    texts = [f"user{i}@example.com paid with 4111 1111 1111 1111 from 10.0.{i}.1" for i in range(200)]
    expected = [found(t) for t in texts]
    results: dict[int, list[tuple[str, str]]] = {}

    def work(offset: int) -> None:
        for i in range(offset, len(texts), 4):
            results[i] = found(texts[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(texts))] == expected


@pytest.mark.parametrize(
    "text",
    [
        "1" * 200_000,
        "a@" * 100_000,
        ":" * 200_000,
        "1:2:3:4:5:6:7:" * 10_000,
        "= " * 100_000,
        "0." * 100_000,
        "+1" * 100_000,
        "-----BEGIN PRIVATE KEY-----" * 10_000,
        "eyJhbGciOiJIUzI1NiJ9." * 10_000,
        "x@" + "a." * 100_000,
        "token: " * 30_000,
        "000-" * 50_000,
        "sk-" * 70_000,
    ],
)
def test_pathological_inputs_take_linear_time(text: str) -> None:
    t0 = time.perf_counter()
    scan(text)
    assert time.perf_counter() - t0 < 2.0  # each is 200-400 KB: well under 0.5 s when linear


def test_the_module_imports_only_the_standard_library() -> None:
    code = (
        "import sys, tokenguard.sensitive as s; s.scan('a@example.com 10.0.0.1'); "
        "print(sorted(m for m in ('pydantic', 'presidio_analyzer', 'spacy', 'openai', 'anthropic', 'tiktoken') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------------
# redaction


def test_redact() -> None:
    text = "mail a@example.com now, card 4111 1111 1111 1111."
    findings = scan(text)
    assert redact(text, findings) == "mail [REDACTED:email] now, card [REDACTED:payment_card]."
    assert redact(text, findings, placeholder="<{kind}>") == "mail <email> now, card <payment_card>."
    assert redact(text, findings, placeholder="***") == "mail *** now, card ***."
    assert redact(text, findings, placeholder="[{detector}]") == "mail [email] now, card [luhn_card]."
    assert redact(text, []) == text
    # Overlapping findings (from anywhere): the first one wins.
    assert redact("abcdef", [Finding("x", 0, 4, "d"), Finding("y", 2, 6, "d")], placeholder="*") == "*ef"
    with pytest.raises(ConfigError, match="placeholder"):
        redact(text, findings, placeholder="{nope}")


def body() -> dict[str, object]:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "My card is 4111 1111 1111 1111 and mail a@example.com"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUtJQUlPU0ZPRE5ON0VYQU1QTEU="}},
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_AKIAIOSFODNN7EXAMPLE",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"ip": "10.0.0.1"}'},
                    }
                ],
            },
        ],
        "stop": ("END", "ip 10.0.0.2"),
        "max_tokens": 100,
        "metadata": None,
    }


def test_redact_json_redacts_nested_strings_and_counts_by_kind() -> None:
    value = body()
    before = copy.deepcopy(value)
    new, counts = redact_json(Scanner(), value)
    assert value == before  # not mutated
    assert counts == Counter({"payment_card": 1, "email": 1, "ip_address": 2})
    user = new["messages"][1]["content"]  # type: ignore[index]
    assert user[0]["text"] == "My card is [REDACTED:payment_card] and mail [REDACTED:email]"
    assert new["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"ip": "[REDACTED:ip_address]"}'  # type: ignore[index]
    assert new["stop"] == ("END", "ip [REDACTED:ip_address]")  # a tuple stays a tuple
    # Unchanged subtrees are the very same objects; changed containers are copies.
    assert new["messages"][0] is value["messages"][0]  # type: ignore[index]
    assert user[1] is value["messages"][1]["content"][1]  # type: ignore[index]
    assert new["messages"] is not value["messages"]
    # Keys in SKIP_KEYS are neither scanned nor changed: the call id holds an AWS-key-shaped string.
    assert new["messages"][2]["tool_calls"][0]["id"] == "call_AKIAIOSFODNN7EXAMPLE"  # type: ignore[index]
    assert {"id", "url", "data", "role", "type", "name", "model"} <= SKIP_KEYS


def test_redact_json_returns_the_same_object_when_nothing_is_found() -> None:
    value = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "n": 1, "ok": True}
    new, counts = redact_json(Scanner(), value)
    assert new is value
    assert counts == Counter()
    for scalar in ("plain", 42, 1.5, None, True):
        assert redact_json(Scanner(), scalar)[0] is scalar


def test_redact_json_placeholder_and_top_level_string() -> None:
    new, counts = redact_json(Scanner(kinds=["email"]), "a@example.com and 10.0.0.1", placeholder="<{kind}>")
    assert new == "<email> and 10.0.0.1"
    assert counts == Counter({"email": 1})


def test_scan_texts_counts_by_kind() -> None:
    counts = scan_texts(Scanner(), ["a@example.com b@example.com", "10.0.0.1", "nothing"])
    assert counts == Counter({"email": 2, "ip_address": 1})


# --------------------------------------------------------------------------------------------
# the labelled corpus


def load_corpus() -> list[dict[str, object]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_corpus_precision_and_recall_per_kind() -> None:
    rows = load_corpus()
    assert len(rows) >= 150
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    mistakes = []
    for row in rows:
        text = row["text"]
        assert isinstance(text, str)
        got = Counter((f.kind, text[f.start : f.end]) for f in scan(text))
        want = Counter((e["kind"], e["value"]) for e in row["expect"])  # type: ignore[attr-defined]
        for key in got | want:
            hit = min(got[key], want[key])
            tp[key[0]] += hit
            fp[key[0]] += got[key] - hit
            fn[key[0]] += want[key] - hit
            if got[key] != want[key]:
                mistakes.append(("FP" if got[key] > want[key] else "FN", key, text[:80]))
    lines = [f"{'kind':<14} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8}"]
    result = {}
    for kind in BUILTIN_KINDS:
        precision = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else 1.0
        recall = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else 1.0
        result[kind] = (precision, recall)
        lines.append(f"{kind:<14} {tp[kind]:>4} {fp[kind]:>4} {fn[kind]:>4} {precision:>10.3f} {recall:>8.3f}")
    print(f"\nsensitive-data corpus: {len(rows)} texts\n" + "\n".join(lines))
    for m in mistakes:
        print(*m)
    for kind in BUILTIN_KINDS:
        assert tp[kind] >= 4, f"the corpus needs true positives of {kind}"
        precision, recall = result[kind]
        assert precision >= 0.95, (kind, precision, mistakes)
        assert recall >= 0.95, (kind, recall, mistakes)


def test_corpus_values_occur_in_their_texts() -> None:
    for row in load_corpus():
        for e in row["expect"]:  # type: ignore[attr-defined]
            assert e["kind"] in BUILTIN_KINDS
            assert e["value"] in row["text"]  # type: ignore[operator]


# --------------------------------------------------------------------------------------------
# the fast paths: each must find exactly what the plain way finds

# Pieces of texts: values of every kind, near misses, the characters and strings the prefilter tests,
# separators, digits of other scripts, characters that lower-case oddly ("K" Kelvin sign, "İ").
PIECES = (
    "sk-proj-", "sk-ant-api03-", "sk-", OPENAI, ANTHROPIC, GITHUB, AWS_ID, AWS_SECRET, JWT, "eyJ", "AKIA",
    "ghp_", "github_pat_", "xoxb-", "xoxb-1234-5678-abcdEFGHijkl", "AIza", "sk_live_", "rk_live_",
    "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/", "-----BEGIN PRIVATE KEY-----\n", PEM_BODY,
    "\n-----END PRIVATE KEY-----", "a@b.co", "jane.doe@example.com", "mailto:", "git@github.com:org/x.git",
    "+1 415-555-0132", "(415) 555-0132", "415.555.0132", "1-800-555-0199", "020 7946 0958", "06 12 34 56 78",
    "4111 1111 1111 1111", "378282246310005", "3782 822463 10005", "2024 ", "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000", "078-05-1120", "SSN: ", "536221234", "10.0.0.1", "256.1.1.1", "version ",
    "Chrome/120.0.0.0", "::1", "2001:db8::8a2e:370:7334", "std::vector", "12:30:45", "password = ", "token: ",
    '"secret": "', "Authorization: Bearer ", "aws_secret_access_key = ", "\u212aEY=", "\u0130", "\u0663\u0664",
    " 01 \u0662\u0663\u0664\u0665\u0666\u0667\u0668 ", "é", "中文", "@", ".", ":", "=", "-", "_", "/", "+", "(",
    "J", "A", " ", "\n", '"', "'", ",",
)  # fmt: skip
ALPHABETS = (string.ascii_letters + string.digits, string.digits + " -.", "0123456789abcdef:", string.printable)


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 30)):
            if rng.random() < 0.6:
                parts.append(rng.choice(PIECES))
            else:
                parts.append("".join(rng.choices(rng.choice(ALPHABETS), k=rng.randint(1, 40))))
        texts.append("".join(parts))
    return texts


class Unfiltered:
    """A built-in detector without its ``_requires``: the scanner calls it on every text."""

    def __init__(self, detector: Detector) -> None:
        self.name = detector.name
        self.kinds = detector.kinds
        self.priority = getattr(detector, "priority", 50)
        self.find = detector.find


def test_the_prefilter_never_hides_a_finding() -> None:
    # Texts of every length around the prefilter's short-text limit (where it tests strings and digit
    # counts as well as characters), the labelled corpus, and each of them padded past the limit.
    texts = random_texts(3000, seed=1) + [str(row["text"]) for row in load_corpus()]
    texts += [t + " pad" * (S._SHORT_TEXT // 4) for t in texts[::10]]
    assert any(len(t) <= S._SHORT_TEXT for t in texts) and any(len(t) > S._SHORT_TEXT for t in texts)
    filtered = Scanner()
    unfiltered = Scanner([Unfiltered(d) for d in builtin_detectors()])
    kinds: Counter[str] = Counter()
    for text in texts:
        findings = filtered.scan(text)
        assert findings == unfiltered.scan(text), text
        kinds.update(f.detector for f in findings)
    # (The texts do exercise every detector.)
    assert set(kinds) == {d.name for d in builtin_detectors()}


def test_the_prefilter_calls_only_the_detectors_whose_triggers_are_there() -> None:
    called: list[str] = []

    def recorded(detector: Detector) -> Detector:
        find = detector.find

        def find_and_record(text: str) -> Iterable[Finding]:
            called.append(detector.name)
            return find(text)

        detector.find = find_and_record  # type: ignore[method-assign]
        return detector

    scanner = Scanner([recorded(d) for d in builtin_detectors()])

    def calls(text: str) -> list[str]:
        called.clear()
        scanner.scan(text)
        return called

    assert calls("Please summarise the quarterly forecast for the team and list the open tickets.") == []
    assert calls("Summarize this article in 3 bullet points.") == []  # one digit: no number format fits
    assert calls("Translate to French: see you tomorrow at the station.") == []  # no secret word
    assert calls("Write to a@example.com today.") == ["email"]
    assert calls("The key = Zx9kLm2Qw8rTy5vB3nM1") == ["aws_secret_key", "iban_mod97", "secret_assignment"]
    # Of the vendor formats, only the one whose prefix is there ("sk-", not "sk-ant-" or "k_live_").
    assert calls(f"use {OPENAI} now") == ["openai_key", "iban_mod97", "us_ssn", "phone"]
    assert calls("card 4111 1111 1111 1111") == ["iban_mod97", "luhn_card", "us_ssn", "phone"]
    assert calls("call +1 415 555 0132") == ["iban_mod97", "us_ssn", "phone"]  # 11 digits: not a card
    # Past the short-text limit only characters are tested: any text with a "-" calls the "-" detectors.
    long = "a - b " * S._SHORT_TEXT
    assert calls(long) == ["pem_private_key", "openai_key", "anthropic_key", "slack_token"]

    # Other detectors always run, whatever attributes they have.
    class Custom(EmployeeIds):
        _requires = (1,)

    assert [f.detector for f in Scanner([Custom()]).scan("EMP-123456")] == ["employee_id"]


def test_shared_and_rare_literal_searches_find_what_finditer_finds() -> None:
    texts = random_texts(1500, seed=2)
    texts += [f"https://hooks.slack.com/services/T0123ABCD/B0123ABCD/{'aB3x' * i}" for i in range(3, 6)]
    webhook = next(d for d in builtin_detectors() if d.name == "slack_webhook")._regexes[0][0]  # type: ignore[attr-defined]
    # Vendor formats that start with the same letter share one pass (_vendor_families).
    families = S._vendor_families()
    assert set(families) == {"k", "A", "g"}
    for text in texts:
        for _, members in families.values():
            for regex in members:
                expected = [m.span() for m in regex.finditer(text)]
                assert [m.span() for m in S._family_matches(regex, text)] == expected, (regex.pattern, text)
                S._local.derived = None
        # The colons are searched once for IPv6 candidates and for assignments.
        derived = S._Derived(text)
        assert derived.colons == (
            [m.span() for m in S._IPV6_HINT.finditer(text)],
            [m.span() for m in S._ASSIGN_COLON.finditer(text)],
        ), text
        # Regexes that start with a rare character or a long string are searched from its occurrences.
        for regex, literal in ((S._EMAIL_AT, "@"), (S._PHONE_INTL, "+"), (S._JWT, "J"), (webhook, ".slack.com/")):
            expected = [m.span() for m in regex.finditer(text)]
            assert [m.span() for m in S._finditer_rare(regex, literal, text)] == expected


def test_the_number_formats_regex_finds_what_the_two_it_replaced_found() -> None:
    # The number formats regex spells out each separator, tells the formats apart by length and finds
    # "(415) 555-0132" too; these are the regex with groups and back-references, and the phone
    # detector's own regex for the one in parentheses, that it replaced.
    grouped = re.compile(
        r"""000(?<![0Aa]000)(?:
            (?P<ssn>(?P<s1>[- ])00(?P=s1)0000)
          | (?P<nanp>(?P<s2>[-. ])000(?P=s2)0000)
          | 0(?:0{9,15}|(?P<s3>[ -])(?:0000(?P=s3)0000(?:(?P=s3)0{1,4}){0,2}|000000(?P=s3)0{4,5}))
          | (?P<nine>000000)(?!0)
        )""",
        re.VERBOSE,
    )
    paren = re.compile(r"\(000\)[ .-]?000[ .-]0000")
    pieces = (
        "000-00-0000", "000 00 0000", "000-000-0000", "000.000.0000", "000 000 0000", "(000) 000-0000",
        "(000)000.0000", "(000)-000 0000", "0000 0000 0000 0000", "0000-0000-0000-000", "0000000000000",
        "0000 000000 00000", "000000000", "0", "00", "000", " ", "-", ".", "a", "A", "(", ")",
    )  # fmt: skip
    rng = random.Random(3)
    for _ in range(5000):
        shape = "".join(rng.choices(pieces, k=rng.randint(1, 12)))
        expected: dict[str, list[tuple[int, int, str]]] = {"ssn": [], "nanp": [], "card": [], "nine": [], "paren": []}
        for m in grouped.finditer(shape):
            kind = {"ssn": "ssn", "nanp": "nanp", "nine": "nine"}.get(m.lastgroup or "", "card")
            expected[kind].append((m.start(), m.end(), m.group("s1") or m.group("s2") or m.group("s3") or ""))
        expected["paren"] = [(m.start() + 1, m.end(), ")") for m in paren.finditer(shape)]
        derived = S._Derived(shape)
        derived._shape = shape
        assert derived.numbers == expected, shape


# --------------------------------------------------------------------------------------------
# Presidio (the real analyzer, installed by the test dependency group)


@pytest.fixture(scope="module")
def presidio() -> PresidioDetector:
    return PresidioDetector()


def test_presidio_detector_finds_pattern_entities(presidio: PresidioDetector) -> None:
    text = "Mail john.doe@example.com, card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, ip 192.168.1.10"
    got = {(f.kind, text[f.start : f.end], f.detector) for f in presidio.find(text)}
    assert {
        ("email", "john.doe@example.com", "presidio"),
        ("payment_card", "4111 1111 1111 1111", "presidio"),
        ("iban", "GB82 WEST 1234 5698 7654 32", "presidio"),
        ("ip_address", "192.168.1.10", "presidio"),
    } <= got
    # Unmapped entity types become lower-cased kinds ("URL" -> "url"); the mapped ones are the built-in kinds.
    assert {"email", "payment_card", "iban", "ip_address", "us_ssn", "phone", "url", "person"} <= set(presidio.kinds)


def test_presidio_entities_mapping_and_threshold(presidio: PresidioDetector) -> None:
    only_cards = PresidioDetector(presidio.analyzer, entities={"CREDIT_CARD": "card"})
    text = "card 4111 1111 1111 1111 from a@example.com"
    assert [(f.kind, text[f.start : f.end]) for f in only_cards.find(text)] == [("card", "4111 1111 1111 1111")]
    assert only_cards.kinds == ("card",)
    strict = PresidioDetector(presidio.analyzer, entities={"URL": "url"}, score_threshold=0.99)
    assert list(strict.find("see https://example.com/x")) == []


def test_presidio_in_a_scanner_with_the_builtin_detectors(presidio: PresidioDetector) -> None:
    scanner = Scanner([*builtin_detectors(), presidio])
    text = "Mail john.doe@example.com or call +1 415-555-0132 about 4111 1111 1111 1111."
    findings = scanner.scan(text)
    # Equal spans are reported once, by the built-in detector; Presidio's URL inside the address goes.
    assert [(f.kind, text[f.start : f.end], f.detector) for f in findings] == [
        ("email", "john.doe@example.com", "email"),
        ("phone", "+1 415-555-0132", "phone"),
        ("payment_card", "4111 1111 1111 1111", "luhn_card"),
    ]
    assert Scanner([presidio], kinds=["email"]).kinds == ("email",)


def test_presidio_missing_is_an_import_error_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)
    with pytest.raises(ImportError, match=r"pip install 'tokenguard\[presidio\]'"):
        PresidioDetector()

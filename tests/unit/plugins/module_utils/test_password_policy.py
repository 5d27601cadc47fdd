"""Password policy and client-side hashes, cross-checked against independent implementations."""

from __future__ import annotations

import base64
import secrets
import warnings

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _password_policy as pp

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt  # glibc's SHA-256 crypt, removed in Python 3.13
    except ImportError:  # pragma: no cover
        crypt = None


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("CHANGE_THIS_SECURE_PASSWORD", "known placeholder"),
        ("change-this-secure-password!A1", "known placeholder"),
        ("MyChangeMe-Password-2024!", "known placeholder"),
        ("changeme", "at least 16"),
        ("Password", "known placeholder"),
        ("secret", "known placeholder"),
        ("zzzzzzzzzzzzzzzzzzzzzzzzzz", "single repeated character"),
        ("alllowercaseletters", "fewer than three character classes"),
        ("lowercaseand12345", "fewer than three character classes"),
        ("Xy7!mutuapix_app-2024", "account or database name 'mutuapix_app'"),
        ("Xy7!MUTUAPIX-DB-2024", "account or database name 'mutuapix'"),
        ("", "empty"),
    ],
)
def test_each_rule_is_named_and_password_never_echoed(password: str, rule: str) -> None:
    problems = pp.password_problems(password, 16, ("mutuapix_app", "mutuapix"))
    text = "; ".join(problems)
    assert rule in text
    if password:
        assert password not in text
    with pytest.raises(pp.PasswordPolicyError) as info:
        pp.check_password(password, 16, ("mutuapix_app", "mutuapix"), what="hardening_app_password")
    assert str(info.value).startswith("hardening_app_password refused by the password policy")


@pytest.mark.parametrize(
    "password",
    [
        "Xk7#pQ2v!Lm9@wZr",
        "correct horse battery staple orbit",  # long passphrase: classes not required
        "Ünïcødé-Пароль-密码-9Zq",
        "Quote'Double\"Back\\slash%$9",
    ],
)
def test_strong_passwords_pass(password: str) -> None:
    assert pp.password_problems(password, 16, ("app", "laravel_db")) == []


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        (" " * 23 + "x", "only 2 different characters"),
        (" \t" * 12, "repeats a short pattern"),
        ("passwordpasswordpassword", "common password repeated"),
        ("123456789012345678901234", "common password repeated"),
        ("Password123456789!", "only digits and symbols added"),
        ("Test-2024-0815-4711-!!", "only digits and symbols added"),
        ("Xq7!Xq7!Xq7!Xq7!Xq7!Xq7!", "repeats a short pattern"),
        ("aaaaBBBB1111!!!!", "only 4 different characters"),
        ("abcdefghijklmnopqrstuvwxyz", "runs or sequences"),
        ("AAAAAAAAbbbbbbbbCDEFGHIJ12345", "runs or sequences"),
    ],
)
def test_long_but_trivial_passwords_are_refused(password: str, rule: str) -> None:
    """From 24 characters the class rule no longer applies; length alone must not make these pass."""
    problems = pp.password_problems(password, 16, ("mutuapix_app",))
    assert rule in "; ".join(problems), problems
    assert password not in "; ".join(problems)


@pytest.mark.parametrize(
    "password",
    [
        "tundra mosaic velvet anchor",  # diceware, four words
        "crane-oyster-gravel-mitten-sprout",
        "see tree bee free knee glee",  # few letters, but words, not a pattern
        "Bk-user-pw-0123456789!",  # a short digit run inside a varied password
        "rootpw-Test-4-harness!",  # the test harness's root password
    ],
)
def test_passphrases_and_fixture_passwords_still_pass(password: str) -> None:
    assert pp.password_problems(password, 16, ("mutuapix_app", "mutuapix")) == []


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("P@ssw0rd123456789", "look-alike characters"),  # Password123456789 with @ for a, 0 for o
        ("P@55w0rd-2024-08-15!", "look-alike characters"),
        ("Ch@ng3_Th1s_S3cur3_P@ssw0rd", "look-alike characters"),  # the placeholder itself
        ("Ch4ngeMe!2024xyzw", "look-alike characters"),
        ("R3pl@c3-M3-2024-0815", "look-alike characters"),
        ("S3cr3t!2024#08154711", "look-alike characters"),  # secret, digits and symbols after it
        ("@dm1n!2024#08154711", "look-alike characters"),
        ("L@r@v3l#2024!0815", "look-alike characters"),
    ],
)
def test_common_passwords_in_look_alike_characters_are_refused(password: str, rule: str) -> None:
    problems = pp.password_problems(password, 16, ("mutuapix_app", "mutuapix"))
    assert rule in "; ".join(problems), problems
    assert password not in "; ".join(problems)


@pytest.mark.parametrize(
    "password",
    [
        "T!38475019263547",  # one letter and digits: 3, 5, 7 are not "test" here
        "7e5t-is-not-4-word-Zq9",  # letters beyond the word
        "Laravel-Queue-Worker-7!x",
        "Passw0rd-Manager-Vault-8q",  # a common word inside a longer phrase
    ],
)
def test_look_alike_rule_leaves_other_passwords_alone(password: str) -> None:
    assert pp.password_problems(password, 16, ("mutuapix_app", "mutuapix")) == []


def test_random_numbers_spell_no_password() -> None:
    """Digits can stand for letters (3 for e, 7 for t): a random number still spells no password."""
    for _index in range(300):
        for secret in (
            "".join(secrets.choice("0123456789") for _digit in range(30)),
            "".join(secrets.choice("0123456789!@$+|") for _digit in range(30)),
        ):
            assert "look-alike" not in "; ".join(pp.password_problems(secret, 16, ())), secret


def test_generated_secrets_pass() -> None:
    """What the docs tell people to use: ``openssl rand -base64 24`` (and 33), ``openssl rand -hex 16``."""
    for _index in range(300):
        for secret in (
            base64.b64encode(secrets.token_bytes(24)).decode(),
            base64.b64encode(secrets.token_bytes(33)).decode(),
            secrets.token_hex(16),
        ):
            assert pp.password_problems(secret, 16, ()) == [], secret


def test_repeating_unit_and_sequence_share() -> None:
    assert pp.repeating_unit("abcabcab") == "abc"
    assert pp.repeating_unit("abcd") == "abcd"
    assert pp.sequence_share("7890") == 1.0  # 9 -> 0 wraps like a keypad
    assert pp.sequence_share("Xk7#pQ2v!Lm9@wZr") == 2 / 15  # "pQ" and "Lm"


def test_short_names_are_not_forbidden_words() -> None:
    # A two-letter account name would forbid half the alphabet; only names of 3+ count.
    assert pp.password_problems("Xk7#pQ2v!Lm9@wZr", 16, ("pQ",)) == []


def test_character_classes() -> None:
    assert pp.character_classes("abc") == 1
    assert pp.character_classes("aB1") == 3
    assert pp.character_classes("aB1!") == 4
    assert pp.character_classes("ñÑ5") == 3


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        # MySQL documentation / widely published PASSWORD() values.
        ("secret", "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"),
        ("password", "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
    ],
)
def test_native_password_hash(password: str, expected: str) -> None:
    assert pp.native_password_hash(password) == expected


def test_ed25519_matches_rfc8032_keys_for_32_byte_passwords() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for password in ("A" * 32, "0123456789abcdef0123456789ABCDEF", "p" * 16 + "Q" * 16):
        public = (
            Ed25519PrivateKey.from_private_bytes(password.encode())
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        assert pp.ed25519_password_hash(password) == base64.b64encode(public).decode().rstrip("=")


def test_ed25519_recorded_mariadb_answer() -> None:
    # SELECT authentication_string after
    # CREATE USER e@localhost IDENTIFIED VIA ed25519 USING PASSWORD('Hello ed25519 pw!')
    # on MariaDB 10.11.19 (recorded).
    assert pp.ed25519_password_hash("Hello ed25519 pw!") == "yi26JQzcLYrVvTgU8hzx5TSex2oNMEWp/OCol7IaAHY"
    assert len(pp.ed25519_password_hash("x" * 200)) == 43


@pytest.mark.skipif(crypt is None, reason="no crypt module")
@pytest.mark.parametrize(
    ("password", "salt"),
    [
        ("Hello world!", "saltstring"),
        ("x" * 70, "abcdefghijklmnop"),
        ("pässwörd\"\\'", "ab"),
        ("p", "0123456789abcdef"),
    ],
)
def test_sha256_crypt_matches_glibc(password: str, salt: str) -> None:
    expected = crypt.crypt(password, f"$5$rounds=5000${salt}").rsplit("$", 1)[1]
    assert pp.sha256_crypt_digest(password.encode(), salt.encode()) == expected


def test_drepper_published_vector() -> None:
    # From Drepper's SHA-crypt specification: $5$saltstring with "Hello world!".
    assert pp.sha256_crypt_digest(b"Hello world!", b"saltstring") == "5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"


def test_caching_sha2_roundtrip_and_mismatch() -> None:
    stored = pp.caching_sha2_hash("Xk7#pQ2v!Lm9@wZr")
    assert stored.startswith("$A$005$") and len(stored) == 7 + 20 + 43
    assert pp.caching_sha2_matches("Xk7#pQ2v!Lm9@wZr", stored.encode())
    assert not pp.caching_sha2_matches("Xk7#pQ2v!Lm9@wZR", stored.encode())
    # The salt of a stored string is reused: same password, same salt, same string.
    assert pp.caching_sha2_hash("Xk7#pQ2v!Lm9@wZr", salt=stored[7:27]) == stored
    # MySQL's salts are 7-bit bytes that may include quotes and backslashes.
    odd_salt = "i`xay#fG/\\' TrbkNA82"
    assert pp.caching_sha2_matches("pw-Á", pp.caching_sha2_hash("pw-Á", salt=odd_salt).encode())
    # mysql.infoschema/session/sys carry an invalid string that never matches anything.
    invalid = b"$A$005$THISISACOMBINATIONOFINVALIDSALTANDPASSWORDTHATMUSTNEVERBRBEUSED"
    assert not pp.caching_sha2_matches("anything", invalid)
    assert not pp.caching_sha2_matches("anything", b"")
    assert not pp.caching_sha2_matches("anything", b"$A$0ZZ$" + b"x" * 63)


def test_password_matches_dispatch() -> None:
    assert pp.password_matches("mysql_native_password", "secret", b"*14E65567ABDB5135D0CFD9A70B3032C179A49EE7")
    assert not pp.password_matches("mysql_native_password", "Secret", b"*14E65567ABDB5135D0CFD9A70B3032C179A49EE7")
    assert pp.password_matches("ed25519", "Hello ed25519 pw!", b"yi26JQzcLYrVvTgU8hzx5TSex2oNMEWp/OCol7IaAHY")
    assert pp.password_matches("unix_socket", "x", b"") is None
    with pytest.raises(ValueError, match="no client-side hash"):
        pp.password_hash("sha256_password", "x")

# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Password policy and client-side password hashing for database accounts (private API).

Hashes are computed here, on the managed host, so the plaintext never travels to the
server in a statement (MariaDB writes statements verbatim to its general log).
"""

from __future__ import annotations

import base64
import hashlib
import secrets

DEFAULT_MIN_LENGTH = 16
# Below this length a password needs three character classes; long passphrases do not.
CLASSES_EXEMPT_LENGTH = 24

# Placeholders seen in scripts and .env examples, and the commonest passwords. Compared
# case-insensitively against the whole password with separators removed.
KNOWN_WEAK_PASSWORDS = frozenset(
    {
        "changethissecurepassword",
        "changeme",
        "changemenow",
        "changethis",
        "changethispassword",
        "password",
        "passw0rd",
        "password1",
        "password123",
        "secret",
        "secretpassword",
        "supersecret",
        "mysecretpassword",
        "default",
        "defaultpassword",
        "admin",
        "adminadmin",
        "administrator",
        "root",
        "rootpassword",
        "toor",
        "mysql",
        "mariadb",
        "laravel",
        "homestead",
        "letmein",
        "welcome",
        "qwerty",
        "qwertyuiop",
        "qwerty123",
        "123456",
        "12345678",
        "123456789",
        "1234567890",
        "abc123",
        "iloveyou",
        "test",
        "testpassword",
        "yourpassword",
        "yourstrongpassword",
        "yoursecurepassword",
        "securepassword",
        "strongpassword",
        "placeholder",
        "replaceme",
        "todo",
        "fixme",
        "xxxxxxxx",
    }
)
# Substrings that mark a template value however it is dressed up.
PLACEHOLDER_MARKERS = ("changethis", "changeme", "replaceme", "placeholder", "yourpassword", "securepassword")
# Digits and symbols written for the letter they look like ("P@ssw0rd", "Ch@ng3M3"). A "1" is
# an "i" or an "l", so placeholders are looked for in both readings.
LOOK_ALIKES = {"a": "@4", "e": "3", "i": "1!", "l": "1|", "o": "0", "s": "$5", "t": "7+"}
_AS_I = str.maketrans(
    {"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "|": "l", "0": "o", "$": "s", "5": "s", "7": "t", "+": "t"}
)
_AS_L = str.maketrans(
    {"@": "a", "4": "a", "3": "e", "1": "l", "!": "i", "|": "l", "0": "o", "$": "s", "5": "s", "7": "t", "+": "t"}
)
# Fewer different characters than this is trivial at any length (24 spaces and an 'x').
MIN_DISTINCT_CHARACTERS = 8
# Share of neighbouring characters that are equal or adjacent (aa, ab, ba, 90) from which the
# password is a run or a sequence ('aaaa', 'abcdef', '1234567890') rather than a secret.
MAX_SEQUENCE_SHARE = 0.75


class PasswordPolicyError(ValueError):
    """A password was refused; the message names the rule, never the password."""


def _squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def character_classes(password: str) -> int:
    """How many of lower case, upper case, digits and other characters the password uses."""
    return sum(
        (
            any(ch.islower() for ch in password),
            any(ch.isupper() for ch in password),
            any(ch.isdigit() for ch in password),
            any(not ch.isalnum() for ch in password),
        )
    )


def repeating_unit(text: str) -> str:
    """The shortest prefix that ``text`` repeats ('abcab' -> 'abc'), or ``text`` itself."""
    for period in range(1, len(text) // 2 + 1):
        if all(text[i] == text[i + period] for i in range(len(text) - period)):
            return text[:period]
    return text


def sequence_share(password: str) -> float:
    """The share of neighbouring characters that are equal or next to each other (case-insensitive)."""
    text = password.lower()
    pairs = [(text[i], text[i + 1]) for i in range(len(text) - 1)]
    if not pairs:
        return 0.0
    close = sum(1 for a, b in pairs if abs(ord(a) - ord(b)) <= 1 or {a, b} == {"0", "9"})
    return close / len(pairs)


def spells_word(text: str, word: str) -> bool:
    """Whether ``text`` (lower case) is ``word`` once or more, in letters or look-alikes, with only
    digits and symbols around the repetitions and only symbols (no digits) inside one.

    ``P@ssw0rd-2024!`` spells ``password``; ``T!3847...`` does not spell ``test``: a digit inside
    the word must stand for its next letter. At least one real letter is required, so a random
    number never spells a word.
    """
    if not any(ch.isalpha() for ch in text):
        return False
    states = {(0, False)}  # (letters of the word matched so far, at least one whole word seen)
    for ch in text:
        following: set[tuple[int, bool]] = set()
        for matched, seen in states:
            expected = word[matched]
            if ch == expected or ch in LOOK_ALIKES.get(expected, ""):
                following.add((0, True) if matched + 1 == len(word) else (matched + 1, seen))
            if not ch.isalpha() and (matched == 0 or not ch.isdigit()):
                following.add((matched, seen))
        if not following:
            return False
        states = following
    return (0, True) in states


def _weak_word_problem(password: str, squashed: str) -> str | None:
    if squashed in KNOWN_WEAK_PASSWORDS or any(marker in squashed for marker in PLACEHOLDER_MARKERS):
        return "it is a known placeholder or common password"
    letters = "".join(ch for ch in password.lower() if ch.isalpha())
    if repeating_unit(squashed) in KNOWN_WEAK_PASSWORDS or (
        letters and repeating_unit(letters) in KNOWN_WEAK_PASSWORDS
    ):
        return "it is a common password repeated or with only digits and symbols added"
    lower = password.lower()
    readings = {_squash(lower.translate(table)) for table in (_AS_I, _AS_L)}
    if any(
        reading in KNOWN_WEAK_PASSWORDS or any(marker in reading for marker in PLACEHOLDER_MARKERS)
        for reading in readings
    ) or any(spells_word(lower, word) for word in KNOWN_WEAK_PASSWORDS if word.isalpha()):
        return (
            "it is a known placeholder or common password written with look-alike characters "
            "(@ for a, 0 for o, 3 for e, ...), possibly repeated or with digits and symbols added"
        )
    return None


def _triviality_problem(password: str) -> str | None:
    """Rules that hold at any length: a long password is not a strong one by itself."""
    distinct = len(set(password))
    if distinct == 1:
        return "it is a single repeated character"
    if len(password) >= 4 and len(repeating_unit(password)) <= len(password) // 2:
        return "it repeats a short pattern"
    if distinct < MIN_DISTINCT_CHARACTERS:
        return f"it uses only {distinct} different characters; at least {MIN_DISTINCT_CHARACTERS} are required"
    if len(password) >= 4 and sequence_share(password) >= MAX_SEQUENCE_SHARE:
        return "it is mostly runs or sequences of neighbouring characters (aaaa, abcd, 1234)"
    return None


def password_problems(
    password: str, min_length: int = DEFAULT_MIN_LENGTH, forbidden_words: tuple[str, ...] = ()
) -> list[str]:
    """Every rule the password breaks, as messages that never contain the password."""
    problems: list[str] = []
    if not password:
        return ["the password is empty"]
    if password != password.strip():
        # A secret encrypted from stdin (echo ... | ansible-vault encrypt_string) or a YAML block scalar ends in a
        # line break; the account would get it, while the .env line ends there, so the app could never log in.
        problems.append(
            "it starts or ends with white space (a line break kept by echo | ansible-vault encrypt_string?); "
            "remove it, for example with the trim filter"
        )
    if len(password) < min_length:
        problems.append(f"it is {len(password)} characters long; at least {min_length} are required")
    squashed = _squash(password)
    weak = _weak_word_problem(password, squashed)
    if weak:
        problems.append(weak)
    for word in forbidden_words:
        word_squashed = _squash(word)
        if len(word_squashed) >= 3 and word_squashed in squashed:
            problems.append(f"it contains the account or database name {word!r}")
    trivial = _triviality_problem(password)
    if trivial:
        problems.append(trivial)
    if len(password) < CLASSES_EXEMPT_LENGTH and character_classes(password) < 3:
        problems.append(
            f"it uses fewer than three character classes (lower case, upper case, digits, symbols); "
            f"use three or a passphrase of at least {CLASSES_EXEMPT_LENGTH} characters"
        )
    return problems


def check_password(
    password: str, min_length: int, forbidden_words: tuple[str, ...], what: str = "password"
) -> list[str]:
    """Raise PasswordPolicyError naming the broken rules; return them when only weak-allowed."""
    problems = password_problems(password, min_length, forbidden_words)
    if problems:
        raise PasswordPolicyError(f"{what} refused by the password policy: " + "; ".join(problems))
    return problems


# --- mysql_native_password -------------------------------------------------------------


def native_password_hash(password: str) -> str:
    """The ``*``-prefixed double SHA1 that PASSWORD() computes on MariaDB and MySQL 5.7."""
    stage1 = hashlib.sha1(password.encode("utf-8")).digest()  # noqa: S324 - the protocol's hash
    return "*" + hashlib.sha1(stage1).hexdigest().upper()  # noqa: S324


# --- ed25519 (MariaDB auth_ed25519) ----------------------------------------------------
# MariaDB's plugin takes SHA-512 of the password of any length as the Ed25519 secret
# expansion (RFC 8032 with the password as "seed") and stores the public key in base64
# without padding. cryptography only accepts 32-byte seeds, hence this small curve code.

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y: int, sign: int) -> int:
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x & 1) != sign:
        x = _P - x
    return x


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def _point_add(p1: tuple[int, int, int, int], p2: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    a = (p1[1] - p1[0]) * (p2[1] - p2[0]) % _P
    b = (p1[1] + p1[0]) * (p2[1] + p2[0]) % _P
    c = 2 * p1[3] * p2[3] * _D % _P
    d = 2 * p1[2] * p2[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _scalar_mult_base(scalar: int) -> tuple[int, int, int, int]:
    result = (0, 1, 1, 0)
    point = _G
    while scalar:
        if scalar & 1:
            result = _point_add(result, point)
        point = _point_add(point, point)
        scalar >>= 1
    return result


def ed25519_password_hash(password: str) -> str:
    """What MariaDB's ``ed25519_password()``/``PASSWORD()`` stores for the ed25519 plugin."""
    digest = bytearray(hashlib.sha512(password.encode("utf-8")).digest()[:32])
    digest[0] &= 248
    digest[31] &= 63
    digest[31] |= 64
    x, y, z, _unused = _scalar_mult_base(int.from_bytes(digest, "little"))
    zinv = pow(z, _P - 2, _P)
    x, y = x * zinv % _P, y * zinv % _P
    public = (y | ((x & 1) << 255)).to_bytes(32, "little")
    return base64.b64encode(public).decode("ascii").rstrip("=")


# --- caching_sha2_password (MySQL 8) ---------------------------------------------------
# MySQL stores "$A$" + 3 hex digits (rounds / 1000) + "$" + 20 salt characters + the
# 43-character SHA-256 crypt (Drepper's algorithm, its own salt length of 20).

CACHING_SHA2_SALT_LENGTH = 20
CACHING_SHA2_DIGEST_LENGTH = 43
_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHA256_CRYPT_ORDER = (
    (0, 10, 20),
    (21, 1, 11),
    (12, 22, 2),
    (3, 13, 23),
    (24, 4, 14),
    (15, 25, 5),
    (6, 16, 26),
    (27, 7, 17),
    (18, 28, 8),
    (9, 19, 29),
)


def _crypt_b64(b2: int, b1: int, b0: int, count: int) -> str:
    value = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _index in range(count):
        out.append(_CRYPT_ALPHABET[value & 0x3F])
        value >>= 6
    return "".join(out)


def sha256_crypt_digest(password: bytes, salt: bytes, rounds: int = 5000) -> str:
    """The 43-character digest of Drepper's SHA-256 crypt (no salt length cap)."""
    alt = hashlib.sha256(password + salt + password).digest()
    ctx = hashlib.sha256(password + salt)
    length = len(password)
    ctx.update(alt * (length // 32) + alt[: length % 32])
    bits = length
    while bits:
        ctx.update(alt if bits & 1 else password)
        bits >>= 1
    digest_a = ctx.digest()
    dp = hashlib.sha256(password * length).digest()
    p_bytes = dp * (length // 32) + dp[: length % 32]
    ds = hashlib.sha256(salt * (16 + digest_a[0])).digest()
    s_bytes = ds * (len(salt) // 32) + ds[: len(salt) % 32]
    current = digest_a
    for i in range(rounds):
        ctx = hashlib.sha256()
        ctx.update(p_bytes if i & 1 else current)
        if i % 3:
            ctx.update(s_bytes)
        if i % 7:
            ctx.update(p_bytes)
        ctx.update(current if i & 1 else p_bytes)
        current = ctx.digest()
    out = "".join(_crypt_b64(current[a], current[b], current[c], 4) for a, b, c in _SHA256_CRYPT_ORDER)
    return out + _crypt_b64(0, current[31], current[30], 3)


def caching_sha2_hash(password: str, salt: str | None = None, rounds: int = 5000) -> str:
    """A caching_sha2_password authentication string, with a fresh printable salt by default."""
    if salt is None:
        salt = "".join(secrets.choice(_CRYPT_ALPHABET) for _index in range(CACHING_SHA2_SALT_LENGTH))
    digest = sha256_crypt_digest(password.encode("utf-8"), salt.encode("latin-1"), rounds)
    return "$A$%03X$%s%s" % (rounds // 1000, salt, digest)


def caching_sha2_matches(password: str, stored: bytes) -> bool:
    """Whether ``password`` produces the stored caching_sha2_password string (salt reused)."""
    head = b"$A$"
    if not stored.startswith(head) or len(stored) < 7 + CACHING_SHA2_SALT_LENGTH + CACHING_SHA2_DIGEST_LENGTH:
        return False
    try:
        rounds = int(stored[3:6].decode("ascii"), 16) * 1000
    except ValueError:
        return False
    salt = stored[7 : 7 + CACHING_SHA2_SALT_LENGTH]
    digest = stored[7 + CACHING_SHA2_SALT_LENGTH :].decode("ascii", "replace")
    return secrets.compare_digest(sha256_crypt_digest(password.encode("utf-8"), salt, rounds), digest)


def password_matches(plugin: str, password: str, stored: bytes) -> bool | None:
    """True/False when the stored credential of ``plugin`` can be checked, None otherwise."""
    if plugin == "mysql_native_password":
        return secrets.compare_digest(native_password_hash(password), stored.decode("ascii", "replace"))
    if plugin == "ed25519":
        return secrets.compare_digest(ed25519_password_hash(password), stored.decode("ascii", "replace"))
    if plugin == "caching_sha2_password":
        return caching_sha2_matches(password, stored)
    return None


def password_hash(plugin: str, password: str) -> str:
    """The authentication string to send for ``plugin`` (never the plaintext)."""
    if plugin == "mysql_native_password":
        return native_password_hash(password)
    if plugin == "ed25519":
        return ed25519_password_hash(password)
    if plugin == "caching_sha2_password":
        return caching_sha2_hash(password)
    raise ValueError(f"no client-side hash for authentication plugin {plugin}")

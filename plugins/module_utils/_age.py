# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""age v1 encryption (X25519 recipients) with ``cryptography``, streaming both ways.

Files written here decrypt with the reference CLI: ``age -d -i key.txt file.age``; files
the CLI writes for X25519 recipients decrypt here. Spec: https://age-encryption.org/v1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterator
from typing import BinaryIO

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_CRYPTOGRAPHY = False

INTRO = b"age-encryption.org/v1\n"
CHUNK = 64 * 1024
TAG = 16
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class AgeError(Exception):
    """Bad key, corrupt file or wrong identity."""


# --- Bech32 (BIP 173), as age uses it for keys, without the 90-character limit ---------


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def _convertbits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (tobits - bits)) & maxv)
    elif not pad and (bits >= frombits or ((acc << (tobits - bits)) & maxv)):
        raise AgeError("invalid padding in key encoding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    values = _convertbits(data, 8, 5, True)
    polymod = _polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in values + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    if text.lower() != text and text.upper() != text:
        raise AgeError("mixed-case key")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise AgeError("not a Bech32 key")
    hrp, data_part = text[:pos], text[pos + 1 :]
    try:
        values = [_BECH32_CHARSET.index(c) for c in data_part]
    except ValueError as exc:
        raise AgeError("invalid character in key") from exc
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise AgeError("key checksum mismatch (typo?)")
    return hrp, bytes(_convertbits(values[:-6], 5, 8, False))


# --- keys -----------------------------------------------------------------------------------


def parse_recipient(text: str) -> bytes:
    """The 32-byte X25519 public key of an ``age1…`` recipient."""
    text = text.strip()
    try:
        hrp, data = bech32_decode(text)
    except AgeError as exc:
        raise AgeError(f"invalid age recipient {text[:12]}…: {exc}") from exc
    if hrp != "age" or len(data) != 32:
        raise AgeError(f"invalid age recipient {text[:12]}…: expected an X25519 key starting with age1")
    return data


def recipient_fingerprint(recipient: str) -> str:
    """A short, non-secret identifier of a recipient for manifests and logs."""
    return "sha256:" + hashlib.sha256(parse_recipient(recipient)).hexdigest()[:16]


def parse_identities(text: str) -> list[bytes]:
    """X25519 private keys from identity file content (``AGE-SECRET-KEY-1…`` lines)."""
    keys = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            hrp, data = bech32_decode(line)
        except AgeError as exc:
            raise AgeError(f"invalid age identity: {exc}") from exc
        if hrp != "age-secret-key-" or len(data) != 32:
            raise AgeError("invalid age identity: expected AGE-SECRET-KEY-1…")
        keys.append(data)
    if not keys:
        raise AgeError("no age identity found (expected a line starting with AGE-SECRET-KEY-1)")
    return keys


def generate_identity() -> tuple[str, str]:
    """A new (identity, recipient) pair, as ``age-keygen`` would print them."""
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return bech32_encode("age-secret-key-", raw).upper(), bech32_encode("age", public)


# --- primitives ---------------------------------------------------------------------------


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    if b"=" in data or b"\r" in data:
        raise AgeError("non-canonical base64 in age header")
    return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# --- encryption -----------------------------------------------------------------------------


class AgeWriter:
    """File-like writer: ``write()`` plaintext, ``close()`` flushes the final chunk.

    The header and every encrypted chunk go straight to ``out``; at most one chunk of
    plaintext is buffered.
    """

    def __init__(self, out: BinaryIO, recipients: list[str]) -> None:
        if not recipients:
            raise AgeError("at least one recipient is required")
        self._out = out
        file_key = os.urandom(16)
        header = INTRO
        for recipient in recipients:
            public = parse_recipient(recipient)
            ephemeral = X25519PrivateKey.generate()
            share = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
            wrap_key = _hkdf(shared, share + public, b"age-encryption.org/v1/X25519")
            body = ChaCha20Poly1305(wrap_key).encrypt(b"\x00" * 12, file_key, None)
            header += b"-> X25519 " + _b64(share) + b"\n" + _wrap64(_b64(body))
        header += b"---"
        mac = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
        header += b" " + _b64(mac) + b"\n"
        nonce = os.urandom(16)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._counter = 0
        self._buffer = bytearray()
        self._closed = False
        out.write(header + nonce)

    def write(self, data: bytes) -> int:
        self._buffer += data
        # Keep at least one byte back: the last chunk must carry the final flag.
        while len(self._buffer) > CHUNK:
            chunk = bytes(self._buffer[:CHUNK])
            del self._buffer[:CHUNK]
            self._out.write(self._aead.encrypt(_nonce(self._counter, False), chunk, None))
            self._counter += 1
        return len(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.write(self._aead.encrypt(_nonce(self._counter, True), bytes(self._buffer), None))
        self._buffer.clear()


def _wrap64(data: bytes) -> bytes:
    lines = [data[i : i + 64] for i in range(0, len(data), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"\n".join(lines) + b"\n"


# --- decryption -----------------------------------------------------------------------------


def _read_header(src: BinaryIO) -> tuple[bytes, list[tuple[list[bytes], bytes]], bytes]:
    """Returns (header bytes up to '---', stanzas [(args, body)], mac)."""
    header = src.readline(4096)
    if header != INTRO:
        raise AgeError("not an age v1 file (bad first line)")
    stanzas: list[tuple[list[bytes], bytes]] = []
    while True:
        line = src.readline(4096)
        if not line.endswith(b"\n"):
            raise AgeError("truncated age header")
        if line.startswith(b"---"):
            mac_part = line[3:].strip()
            header += b"---"
            return header, stanzas, _unb64(mac_part)
        if not line.startswith(b"-> "):
            raise AgeError("malformed age header")
        header += line
        args = line[3:-1].split(b" ")
        body = b""
        while True:
            body_line = src.readline(4096)
            if not body_line.endswith(b"\n"):
                raise AgeError("truncated age header")
            header += body_line
            piece = body_line[:-1]
            body += piece
            if len(piece) < 64:
                break
        stanzas.append((args, _unb64(body) if body else b""))


def _unwrap_file_key(stanzas: list[tuple[list[bytes], bytes]], identities: list[bytes]) -> bytes:
    for args, body in stanzas:
        if not args or args[0] != b"X25519" or len(args) != 2:
            continue
        share = _unb64(args[1])
        if len(share) != 32 or len(body) != 32:
            raise AgeError("malformed X25519 stanza")
        for ident in identities:
            private = X25519PrivateKey.from_private_bytes(ident)
            public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            shared = private.exchange(X25519PublicKey.from_public_bytes(share))
            wrap_key = _hkdf(shared, share + public, b"age-encryption.org/v1/X25519")
            try:
                return ChaCha20Poly1305(wrap_key).decrypt(b"\x00" * 12, body, None)
            except Exception:  # noqa: BLE001, S112 - InvalidTag: not this identity, try the next
                continue
    raise AgeError("no identity matches this file's recipients (wrong or missing age identity)")


def decrypt_stream(src: BinaryIO, identities: list[bytes], block: int = CHUNK + TAG) -> Iterator[bytes]:
    """Yield plaintext chunks of an age file; raises AgeError on any tampering or truncation."""
    header, stanzas, mac = _read_header(src)
    file_key = _unwrap_file_key(stanzas, identities)
    expected = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise AgeError("age header MAC mismatch: the file was modified")
    nonce = src.read(16)
    if len(nonce) != 16:
        raise AgeError("truncated age file (no payload nonce)")
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    counter = 0
    current = src.read(block)
    while True:
        following = src.read(block) if len(current) == block else b""
        last = not following
        if len(current) < TAG:
            raise AgeError("truncated age file")
        try:
            plain = aead.decrypt(_nonce(counter, last), current, None)
        except Exception as exc:
            raise AgeError(f"age payload chunk {counter} failed authentication: corrupt or truncated file") from exc
        if plain:
            yield plain
        if last:
            return
        counter += 1
        current = following

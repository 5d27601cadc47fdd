"""age v1 interoperability with Debian's age CLI, both directions, and failure modes."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _age

AGE = shutil.which("age")


def encrypt(data: bytes, recipients: list[str]) -> bytes:
    out = io.BytesIO()
    writer = _age.AgeWriter(out, recipients)
    writer.write(data)
    writer.close()
    return out.getvalue()


@pytest.mark.skipif(AGE is None, reason="age CLI missing: scripts/bootstrap.sh installs it")
@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 200_000])
def test_cli_decrypts_ours(tmp_path, size):
    identity, recipient = _age.generate_identity()
    key = tmp_path / "key.txt"
    key.write_text(identity + "\n")
    data = os.urandom(size)
    enc = tmp_path / "x.age"
    enc.write_bytes(encrypt(data, [recipient]))
    out = subprocess.run([AGE, "-d", "-i", str(key), str(enc)], capture_output=True, check=True)
    assert out.stdout == data


@pytest.mark.skipif(AGE is None, reason="age CLI missing: scripts/bootstrap.sh installs it")
def test_we_decrypt_cli_output(tmp_path):
    identity, recipient = _age.generate_identity()
    src = tmp_path / "plain"
    src.write_bytes(os.urandom(100_000))
    subprocess.run([AGE, "-r", recipient, "-o", str(tmp_path / "c.age"), str(src)], check=True)
    with open(tmp_path / "c.age", "rb") as handle:
        plain = b"".join(_age.decrypt_stream(handle, _age.parse_identities(identity)))
    assert plain == src.read_bytes()


def test_multiple_recipients_each_decrypt():
    keys = [_age.generate_identity() for _n in range(3)]
    blob = encrypt(b"secret dump", [pair[1] for pair in keys])
    for identity, _recipient in keys:
        assert b"".join(_age.decrypt_stream(io.BytesIO(blob), _age.parse_identities(identity))) == b"secret dump"


def test_tampering_and_truncation_fail():
    identity, recipient = _age.generate_identity()
    blob = bytearray(encrypt(os.urandom(150_000), [recipient]))
    ids = _age.parse_identities(identity)
    tampered = bytearray(blob)
    tampered[-100] ^= 1
    with pytest.raises(_age.AgeError, match="failed authentication"):
        b"".join(_age.decrypt_stream(io.BytesIO(bytes(tampered)), ids))
    with pytest.raises(_age.AgeError):
        b"".join(_age.decrypt_stream(io.BytesIO(bytes(blob[: 65536 + 200])), ids))
    header_tampered = bytes(blob).replace(b"-> X25519 ", b"-> X25519 A", 1)
    with pytest.raises(_age.AgeError):
        b"".join(_age.decrypt_stream(io.BytesIO(header_tampered), ids))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "age1",
        "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
        "ssh-ed25519 AAAA",
        "AGE-SECRET-KEY-1XYZ",
    ],
)
def test_invalid_recipients_are_refused(bad):
    with pytest.raises(_age.AgeError, match="invalid age recipient"):
        _age.parse_recipient(bad)


def test_recipient_typo_is_caught():
    recipient = _age.generate_identity()[1]
    typo = recipient[:-1] + ("q" if recipient[-1] != "q" else "p")
    with pytest.raises(_age.AgeError, match="checksum"):
        _age.parse_recipient(typo)


def test_identity_file_parsing():
    identity = _age.generate_identity()[0]
    assert len(_age.parse_identities(f"# created: now\n# public key: x\n{identity}\n")) == 1
    with pytest.raises(_age.AgeError, match="no age identity"):
        _age.parse_identities("# only comments\n")

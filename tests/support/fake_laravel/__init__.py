"""A stand-in Laravel app for tests, demo and bench: release archives and app directories."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

ARTISAN = Path(__file__).with_name("artisan")

# A migration that succeeds: new column, new table, data backfill.
GOOD_MIGRATION = """\
ALTER TABLE users ADD COLUMN phone varchar(32) NULL;
CREATE TABLE payment_methods (
  id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id bigint unsigned NOT NULL,
  brand varchar(32) NOT NULL,
  KEY payment_methods_user_id_index (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
UPDATE users SET phone = CONCAT('+55', LPAD(id, 9, '0')) WHERE id <= 10;
"""

# A migration that fails half-way: the first statements commit (MySQL DDL is not
# transactional), then a statement on a missing table fails, as a real release bug would.
FAILING_MIGRATION = """\
ALTER TABLE transactions ADD COLUMN fee_cents int NOT NULL DEFAULT 0;
UPDATE transactions SET fee_cents = 150 WHERE id % 3 = 0;
CREATE TABLE payouts (
  id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  amount decimal(12,2) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
DELETE FROM sessions;
ALTER TABLE transactions_typo ADD KEY transactions_fee_cents_index (fee_cents);
"""


def build_release(
    dest: str | os.PathLike[str],
    release_id: str,
    migrations: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Write ``<dest>/<release_id>.tar.gz``: artisan, public/index.php, VERSION, database/migrations/*.sql.

    ``migrations`` maps a migration name (``2026_11_28_000001_add_phone``) to its SQL.
    """
    entries: dict[str, tuple[bytes, int]] = {
        "artisan": (ARTISAN.read_bytes(), 0o644),  # run as `php artisan`
        "VERSION": (f"{release_id}\n".encode(), 0o644),
        "public/index.php": (f"<?php echo 'release {release_id}';\n".encode(), 0o644),
        "storage/.gitignore": (b"*\n", 0o644),  # replaced by the shared storage/ link
    }
    for name, sql in (migrations or {}).items():
        entries[f"database/migrations/{name}.sql"] = (sql.encode(), 0o644)
    for name, text in (files or {}).items():
        entries[name] = (text.encode(), 0o644)
    path = Path(dest) / f"{release_id}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, mode) in sorted(entries.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 1_764_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


def write_env(path: str | os.PathLike[str], database: str, socket: str, user: str, password: str) -> None:
    """A Laravel ``.env`` (mode 0600) for the fake app."""
    text = (
        "APP_ENV=production\n"
        "DB_CONNECTION=mysql\n"
        f"DB_DATABASE={database}\n"
        f"DB_SOCKET={socket}\n"
        f"DB_USERNAME={user}\n"
        f'DB_PASSWORD="{password}"\n'
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)

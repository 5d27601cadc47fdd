"""A Laravel-like schema and data generator; size is a parameter.

Rows are generated server-side from the SEQUENCE engine, so a 1 GB database takes
seconds per table, not hours of client round trips. Strings carry the awkward bytes a
dump must survive: quotes, backslashes, `),(`, newlines, NUL bytes, 4-byte UTF-8, NULLs.
"""

from __future__ import annotations

import argparse
from typing import Any

SCHEMA = [
    """CREATE TABLE users (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  name varchar(255) NOT NULL,
  email varchar(255) NOT NULL,
  email_verified_at timestamp NULL DEFAULT NULL,
  password varchar(255) NOT NULL,
  remember_token varchar(100) DEFAULT NULL,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY users_email_unique (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE transactions (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id bigint unsigned NOT NULL,
  amount decimal(15,2) NOT NULL,
  fee decimal(10,4) DEFAULT NULL,
  rate double DEFAULT NULL,
  currency char(3) NOT NULL DEFAULT 'BRL',
  status varchar(20) NOT NULL,
  flags bit(8) DEFAULT NULL,
  metadata json DEFAULT NULL,
  description text,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (id),
  KEY transactions_user_id_index (user_id),
  KEY transactions_status_created_at_index (status, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    # audit_logs has no primary key on purpose: the hidden row id case.
    """CREATE TABLE audit_logs (
  user_id bigint unsigned DEFAULT NULL,
  action varchar(50) NOT NULL,
  payload varbinary(255) DEFAULT NULL,
  ip varbinary(16) DEFAULT NULL,
  created_at timestamp NULL DEFAULT NULL,
  KEY audit_logs_user_id_index (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE jobs (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  queue varchar(255) NOT NULL,
  payload longtext NOT NULL,
  attempts tinyint unsigned NOT NULL,
  reserved_at int unsigned DEFAULT NULL,
  available_at int unsigned NOT NULL,
  created_at int unsigned NOT NULL,
  PRIMARY KEY (id),
  KEY jobs_queue_index (queue)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE failed_jobs (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  uuid varchar(255) NOT NULL,
  connection text NOT NULL,
  queue text NOT NULL,
  payload longtext NOT NULL,
  exception longtext NOT NULL,
  failed_at timestamp NOT NULL DEFAULT current_timestamp(),
  PRIMARY KEY (id),
  UNIQUE KEY failed_jobs_uuid_unique (uuid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE sessions (
  id varchar(255) NOT NULL,
  user_id bigint unsigned DEFAULT NULL,
  ip_address varchar(45) DEFAULT NULL,
  user_agent text,
  payload longtext NOT NULL,
  last_activity int NOT NULL,
  PRIMARY KEY (id),
  KEY sessions_last_activity_index (last_activity)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE cache (
  `key` varchar(255) NOT NULL,
  value mediumtext NOT NULL,
  expiration int NOT NULL,
  PRIMARY KEY (`key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE migrations (
  id int unsigned NOT NULL AUTO_INCREMENT,
  migration varchar(255) NOT NULL,
  batch int NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE VIEW user_balances AS
  SELECT u.id AS user_id, u.email, COALESCE(SUM(t.amount), 0) AS balance
  FROM users u LEFT JOIN transactions t ON t.user_id = u.id AND t.status = 'paid'
  GROUP BY u.id, u.email""",
    """CREATE TRIGGER transactions_before_insert BEFORE INSERT ON transactions FOR EACH ROW
  SET NEW.updated_at = COALESCE(NEW.updated_at, NEW.created_at)""",
    """CREATE PROCEDURE user_total(IN p_user bigint unsigned)
  SELECT COALESCE(SUM(amount), 0) FROM transactions WHERE user_id = p_user""",
    """CREATE EVENT purge_sessions ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00'
  DISABLE DO DELETE FROM sessions WHERE last_activity < UNIX_TIMESTAMP() - 86400""",
]

# An awkward string: quote, backslash, the row separator, newline, NUL, 4-byte UTF-8.
NASTY = "CONCAT('O''Brien \\\\ ),( ', CHAR(10), 'line2', CHAR(0), ' 💸 ção ')"

# Approximate bytes each row takes in a dump, to size the tables.
ROW_BYTES = {"users": 230, "transactions": 420, "audit_logs": 110, "jobs": 520, "failed_jobs": 900, "sessions": 330}
SHARE = {"users": 0.08, "transactions": 0.62, "audit_logs": 0.18, "jobs": 0.05, "failed_jobs": 0.03, "sessions": 0.04}


def _seq_insert(cur: Any, table: str, columns: str, select: str, rows: int, batch: int = 200_000) -> None:
    done = 0
    while done < rows:
        n = min(batch, rows - done)
        cur.execute(
            f"INSERT INTO {table} ({columns}) SELECT {select} FROM (SELECT seq + {done} AS seq FROM seq_1_to_{n}) s"
        )
        done += n


def create_schema(conn: Any) -> None:
    with conn.cursor() as cur:
        for stmt in SCHEMA:
            cur.execute(stmt)


def seed(conn: Any, target_bytes: int = 2_000_000) -> dict[str, int]:
    """Fill the tables so a plain dump is roughly ``target_bytes``; returns rows per table."""
    counts = {t: max(3, int(target_bytes * SHARE[t] / ROW_BYTES[t] * 1.3)) for t in SHARE}
    with conn.cursor() as cur:
        cur.execute("SET SESSION unique_checks=0, foreign_key_checks=0")
        cur.execute("SET @base := UNIX_TIMESTAMP('2025-01-01 00:00:00')")
        _seq_insert(
            cur,
            "users",
            "id, name, email, email_verified_at, password, remember_token, created_at, updated_at",
            f"seq, IF(seq % 7 = 0, {NASTY}, CONCAT('User ', seq, ' d''Ávila')), CONCAT('user', seq, '@example.com'),"
            " IF(seq % 3 = 0, NULL, FROM_UNIXTIME(@base + seq)),"
            " CONCAT('$2y$12$', SUBSTRING(SHA2(seq, 256), 1, 53)), IF(seq % 2 = 0, NULL, MD5(seq)),"
            " FROM_UNIXTIME(@base + seq), FROM_UNIXTIME(@base + seq * 2)",
            counts["users"],
        )
        users = counts["users"]
        _seq_insert(
            cur,
            "transactions",
            "id, user_id, amount, fee, rate, currency, status, flags, metadata, description, created_at",
            f"seq, 1 + (seq * 7919) % {users}, ROUND((seq * 104729 % 1000000) / 100, 2),"
            " IF(seq % 5 = 0, NULL, (seq % 10000) / 10000), (seq % 997) / 7.3 - 50.125,"
            " ELT(1 + seq % 3, 'BRL', 'USD', 'EUR'), ELT(1 + seq % 4, 'paid', 'pending', 'failed', 'refunded'),"
            " IF(seq % 9 = 0, NULL, b'10100101' ^ (seq % 256)),"
            " IF(seq % 11 = 0, NULL, JSON_OBJECT('pix_key', CONCAT('key-', seq), 'note', 'aspas \"duplas\" \\\\ ok',"
            " 'n', seq % 100, 'emoji', '🙂')),"
            f" IF(seq % 13 = 0, {NASTY}, CONCAT('Pagamento PIX #', seq, ' ', REPEAT('x', seq % 120), ' fim)')),"
            " FROM_UNIXTIME(@base + seq)",
            counts["transactions"],
        )
        _seq_insert(
            cur,
            "audit_logs",
            "user_id, action, payload, ip, created_at",
            f"IF(seq % 17 = 0, NULL, 1 + seq % {users}), ELT(1 + seq % 4, 'login', 'logout', 'pix.send', 'pix.recv'),"
            " IF(seq % 4 = 0, NULL, CONCAT(UNHEX(MD5(seq)), CHAR(0), '),(', CHAR(39), CHAR(92), CHAR(10))),"
            " INET6_ATON(CONCAT('10.', seq % 256, '.', (seq DIV 256) % 256, '.1')), FROM_UNIXTIME(@base + seq)",
            counts["audit_logs"],
        )
        _seq_insert(
            cur,
            "jobs",
            "id, queue, payload, attempts, reserved_at, available_at, created_at",
            "seq, ELT(1 + seq % 3, 'default', 'payments', 'emails'),"
            ' CONCAT(\'{"uuid":"\', MD5(seq), \'","displayName":"App\\\\\\\\Jobs\\\\\\\\SendPix","data":"\','
            " REPEAT('a', 300 + seq % 200), '\"}'), seq % 3, NULL, @base + seq, @base + seq",
            counts["jobs"],
        )
        _seq_insert(
            cur,
            "failed_jobs",
            "id, uuid, connection, queue, payload, exception, failed_at",
            f"seq, UUID(), 'database', 'payments', CONCAT('{{\"job\":', seq, '}}'),"
            f" CONCAT('RuntimeException: ', {NASTY}, REPEAT(' at line', 80)), FROM_UNIXTIME(@base + seq)",
            counts["failed_jobs"],
        )
        _seq_insert(
            cur,
            "sessions",
            "id, user_id, ip_address, user_agent, payload, last_activity",
            "SHA2(seq, 256), IF(seq % 2 = 0, NULL, seq), '127.0.0.1', 'Mozilla/5.0 (X11; Linux) \"quoted\"',"
            " TO_BASE64(REPEAT(MD5(seq), 6)), @base + seq",
            counts["sessions"],
        )
        cur.execute("INSERT INTO cache VALUES ('config', 'a:0:{}', 0), ('rates', 's:3:\"BRL\";', 2000000000)")
        cur.execute(
            "INSERT INTO migrations (migration, batch) VALUES"
            " ('0001_01_01_000000_create_users_table', 1), ('0001_01_01_000002_create_jobs_table', 1),"
            " ('2025_01_01_000000_create_transactions_table', 2)"
        )
    counts["cache"] = 2
    counts["migrations"] = 3
    return counts


def create_database(server: Any, name: str, target_bytes: int = 2_000_000) -> dict[str, int]:
    """Create ``name`` on a tests.support.mariadb.MariaDB server, with schema and data."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            cur.execute(f"USE `{name}`")
        create_schema(conn)
        return seed(conn, target_bytes)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password-file", help="file holding the password (never on the command line)")
    parser.add_argument("--database", required=True)
    parser.add_argument("--size", type=float, default=25, help="approximate plain dump size in MB")
    args = parser.parse_args()
    import pymysql

    password = ""
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as handle:
            password = handle.read().strip()
    conn = pymysql.connect(
        unix_socket=args.socket, user=args.user, password=password, charset="utf8mb4", autocommit=True
    )
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
        cur.execute(f"CREATE DATABASE `{args.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute(f"USE `{args.database}`")
    create_schema(conn)
    counts = seed(conn, int(args.size * 1_000_000))
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()

"""mysql_backup against a real private MariaDB: restorable with standard tools, exact, secure, safe on failure."""

from __future__ import annotations

import contextlib
import datetime
import grp
import json
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _age, _backup, _retention
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import quote_identifier
from tests.support import datagen
from tests.support.mariadb import temporary_server
from tests.support.runner import MODULE_PYTHON, run_module

BACKUP_GRANTS = [
    "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `bk_app`.* TO 'bk_user'@'localhost'",
    "GRANT SELECT ON `mysql`.`proc` TO 'bk_user'@'localhost'",
]


@contextlib.contextmanager
def scratch_db(mariadb, db, rows=2):
    """A database ``db`` with one table ``t`` of ``rows`` rows, dropped afterwards."""
    quoted = quote_identifier(db)
    mariadb.execute(f"DROP DATABASE IF EXISTS {quoted}")
    mariadb.execute(f"CREATE DATABASE {quoted}")
    mariadb.execute(f"CREATE TABLE {quoted}.t (id INT PRIMARY KEY)")
    mariadb.execute(f"INSERT INTO {quoted}.t VALUES " + ", ".join(f"({i})" for i in range(1, rows + 1)))
    try:
        yield db
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS {quoted}")


@contextlib.contextmanager
def backup_account(mariadb, user, password, db="bk_app"):
    """An account with exactly the documented backup grants on ``db``; yields its login options."""
    mariadb.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
    mariadb.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY %s", (password,))
    for grant in BACKUP_GRANTS:
        mariadb.execute(grant.replace("`bk_app`", quote_identifier(db)).replace("'bk_user'", f"'{user}'"))
    try:
        yield dict(mariadb.login, login_user=user, login_password=password)
    finally:
        mariadb.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")


def backup(mariadb, db, dest, check=False, env=None, **kwargs):
    return run_module("mysql_backup", dict(mariadb.login, database=db, dest=str(dest), **kwargs), check=check, env=env)


def restore_with_cli(mariadb, pipeline: list[list[str]], target: str, client_charset: str = "utf8mb4") -> None:
    mariadb.execute(f"DROP DATABASE IF EXISTS `{target}`")
    mariadb.execute(f"CREATE DATABASE `{target}`")
    procs = []
    prev = None
    for cmd in pipeline:
        proc = subprocess.Popen(cmd, stdin=prev.stdout if prev else None, stdout=subprocess.PIPE)
        if prev:
            prev.stdout.close()
        procs.append(proc)
        prev = proc
    client = [a for a in mariadb.client_args(target) if not a.startswith("--default-character-set=")]
    client.insert(-1, f"--default-character-set={client_charset}")
    load = subprocess.run(client, stdin=prev.stdout, capture_output=True, check=False)
    for proc in procs:
        assert proc.wait() == 0
    assert load.returncode == 0, load.stderr


def table_checksums(mariadb, db: str) -> dict[str, tuple[int, int]]:
    tables = [r[0] for r in mariadb.execute(f"SHOW FULL TABLES FROM `{db}` WHERE Table_type = 'BASE TABLE'")]
    out = {}
    for table in tables:
        count = mariadb.execute(f"SELECT COUNT(*) FROM `{db}`.`{table}`")[0][0]
        checksum = mariadb.execute(f"CHECKSUM TABLE `{db}`.`{table}`")[0][1]
        out[table] = (count, checksum)
    return out


def objects(mariadb, db: str) -> dict[str, list[str]]:
    return {
        "views": sorted(r[0] for r in mariadb.execute(f"SHOW FULL TABLES FROM `{db}` WHERE Table_type = 'VIEW'")),
        "triggers": sorted(r[0] for r in mariadb.execute(f"SHOW TRIGGERS FROM `{db}`")),
        "routines": sorted(r[1] for r in mariadb.execute("SHOW PROCEDURE STATUS WHERE Db = %s", (db,))),
        "events": sorted(r[1] for r in mariadb.execute(f"SHOW EVENTS FROM `{db}`")),
    }


def test_zstd_backup_restores_with_zstdcat_and_counts_are_exact(mariadb, backup_db, tmp_path):
    dest = tmp_path / "backups"
    result = backup(mariadb, backup_db, dest, label="nightly")
    assert result.rc == 0, result
    path = Path(result["path"])
    assert path.name.startswith("bk_app-nightly-") and path.name.endswith(".sql.zst")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(result["manifest_path"]).stat().st_mode) == 0o600
    manifest = json.loads(Path(result["manifest_path"]).read_text())
    assert manifest["sha256"] == result["sha256"] == _sha256(path)
    assert manifest["size"] == path.stat().st_size
    # exact counts against the server
    for table, rows in result["tables"].items():
        assert rows == mariadb.execute(f"SELECT COUNT(*) FROM bk_app.`{table}`")[0][0], table
    assert manifest["tables"]["user_balances"]["kind"] == "view"
    assert manifest["tables"]["transactions"]["triggers"] == ["transactions_before_insert"]
    restore_with_cli(mariadb, [["zstdcat", str(path)]], "bk_restored")
    assert table_checksums(mariadb, "bk_restored") == table_checksums(mariadb, backup_db)
    assert objects(mariadb, "bk_restored") == objects(mariadb, backup_db)
    mariadb.execute("DROP DATABASE bk_restored")


# Binary values a dump must carry exactly: every byte, and bytes next to quotes and backslashes that a
# client parsing by characters could take for the start of a multi-byte character.
_TRICKY_BYTES = [
    bytes(range(256)),
    b"\xe9'",
    b"\xc3\\",
    b"\xf0\x9f'\\",
    b"\x00\x1a\r\n;\n),(\n",
    "\U0001f600 \u00e7".encode(),
    os.urandom(600),
    b"",
]


@pytest.mark.parametrize("case", ["utf8", "latin1", "inet6"])
def test_mariadb_backup_character_sets_restore_exactly(tmp_path, case):
    """A database whose character columns are all utf8 is dumped in the binary character set without
    --hex-blob (30% less CPU for the dump program); one with a latin1 column, or an INET6 or UUID
    column, in utf8mb4 with --hex-blob: a binary session would restore the latin1 column's non-ASCII
    DEFAULT as mojibake ('cafÃ©'), and the INET6 and UUID values as NULL (their text read as the
    packed form). Both happened here before the module checked for them.

    Either file, loaded with the standard client (utf8mb4 or latin1, the usual client character sets)
    or by mysql_restore_verify, brings back non-ASCII names, defaults, comments, a view and a trigger
    with non-ASCII literals, expressions (DEFAULT, generated column, a case-insensitive CHECK) and every
    byte value of a binary column exactly.
    """
    # A server of its own: the raw bytes it writes would end up in the shared server's binary log,
    # which other tests read back as text.
    with temporary_server("mutuapix-charsets-") as mariadb:
        _character_sets_round_trip(mariadb, tmp_path, case)


def _character_sets_round_trip(mariadb, tmp_path, case):
    db = "bk_charsets"
    mariadb.execute(f"DROP DATABASE IF EXISTS {db}")
    mariadb.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    legacy = case != "utf8"
    charset = "latin1" if case == "latin1" else "utf8mb4"
    mariadb.execute(
        f"CREATE TABLE {db}.legacy (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET {charset} DEFAULT 'café' "
        f"COMMENT 'nome é', kind ENUM('ação', 'b') CHARACTER SET {charset} NOT NULL DEFAULT 'ação', "
        f"note TEXT CHARACTER SET utf8mb4) DEFAULT CHARSET={charset} COMMENT='tabela ç'"
    )
    mariadb.execute(f"CREATE TABLE {db}.`blobs_ção` (id INT PRIMARY KEY, `dado_é` VARBINARY(700), b LONGBLOB)")
    mariadb.execute(
        f"INSERT INTO {db}.legacy VALUES (1, 'São Paulo', 'b', 'naïve 😀'), (2, %s, 'ação', NULL)", ("ÿ\\'\";",)
    )
    mariadb.execute(f"INSERT INTO {db}.legacy (id) VALUES (3)")
    # MariaDB's own types, and the others a dump writes as text or numbers, in either session
    if case == "inet6":
        mariadb.execute(f"CREATE TABLE {db}.addresses (id INT PRIMARY KEY, ip INET6, u UUID)")
        mariadb.execute(
            f"INSERT INTO {db}.addresses VALUES (1, '::1', '123e4567-e89b-12d3-a456-426614174000'), (2, NULL, NULL),"
            " (3, 'fe80::ff:1', '00000000-0000-0000-0000-000000000001')"
        )
    mariadb.execute(
        f"CREATE TABLE {db}.typed (id INT PRIMARY KEY, p POINT, bits BIT(5), j JSON, "
        "s SET('a', 'b', 'ç'), e ENUM('x', 'é'), f FLOAT, d DOUBLE, n DECIMAL(20, 6), t TIME(6), y YEAR, "
        "dt DATETIME(6))"
    )
    mariadb.execute(
        f"INSERT INTO {db}.typed VALUES (1, POINT(1.5, -2), "
        "b'10101', '{\"a\": \"ç\\\\\\\"x\"}', 'a,ç', 'é', 1.25, -3.5e300, 12345678901234.123456, "
        "'-838:59:59.000001', 2155, '2038-01-19 03:14:08.123456'), (2, NULL, b'0', "
        "'[]', '', 'x', -0.0, 1e-300, -0.000001, '00:00:00', 1901, '1000-01-01 00:00:00'), "
        "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    # literals in expressions: a DEFAULT expression, a generated column, a case-insensitive CHECK
    mariadb.execute(
        f"CREATE TABLE {db}.exprs (id INT PRIMARY KEY, status VARCHAR(20) NOT NULL DEFAULT 'active', "
        "name VARCHAR(20) DEFAULT (concat('x', 'é')), label VARCHAR(40) AS (concat(status, '-ção')) VIRTUAL, "
        "CONSTRAINT st CHECK (status IN ('active', 'blocked', 'ção')))"
    )
    mariadb.execute(f"INSERT INTO {db}.exprs (id, status) VALUES (1, 'Active'), (2, 'ção')")
    for i, value in enumerate(_TRICKY_BYTES):
        mariadb.execute(f"INSERT INTO {db}.`blobs_ção` VALUES (%s, %s, %s)", (i, value, value * 3))
    mariadb.execute("CREATE VIEW rótulos AS SELECT id, 'ação' AS label FROM legacy", database=db)
    mariadb.execute(
        "CREATE TRIGGER legacy_nota BEFORE INSERT ON legacy FOR EACH ROW SET NEW.note = COALESCE(NEW.note, 'padrão ç')",
        database=db,
    )
    result = backup(mariadb, db, tmp_path / "b")
    assert result.rc == 0, result
    options = json.loads(Path(result["manifest_path"]).read_text())["dump"]["options"]
    if legacy:
        assert "--default-character-set=utf8mb4" in options and "--hex-blob" in options, options
    else:
        assert "--default-character-set=binary" in options and "--hex-blob" not in options, options

    def shape(name: str) -> list:
        tables = ("legacy", "`blobs_ção`", "typed", "exprs")
        create = [mariadb.execute(f"SHOW CREATE TABLE {name}.{t}")[0][1] for t in tables]
        view = mariadb.execute(f"SELECT * FROM {name}.rótulos ORDER BY id")
        blobs = mariadb.execute(f"SELECT id, `dado_é`, b FROM {name}.`blobs_ção` ORDER BY id")
        rows = mariadb.execute(f"SELECT id, name, kind, note FROM {name}.legacy ORDER BY id")
        typed = mariadb.execute(f"SELECT *, ST_AsText(p) FROM {name}.typed ORDER BY id")
        addresses = []
        if case == "inet6":
            addresses = mariadb.execute(f"SELECT id, ip, u, HEX(ip), HEX(u) FROM {name}.addresses ORDER BY id")
            assert addresses[0][1:3] == ("::1", "123e4567-e89b-12d3-a456-426614174000"), addresses
        exprs = mariadb.execute(f"SELECT * FROM {name}.exprs ORDER BY id")
        return [create, view, blobs, rows, typed, addresses, exprs]

    expected = shape(db)
    assert [row[1] for row in expected[2]] == _TRICKY_BYTES
    for charset in ("utf8mb4", "latin1"):
        target = f"bk_charsets_{charset}"
        restore_with_cli(mariadb, [["zstdcat", result["path"]]], target, client_charset=charset)
        assert shape(target) == expected, charset
        assert table_checksums(mariadb, target) == table_checksums(mariadb, db), charset
        mariadb.execute(f"INSERT INTO {target}.exprs (id, status) VALUES (3, 'BLOCKED')")
        assert mariadb.execute(f"SELECT name, label FROM {target}.exprs WHERE id = 3") == [("xé", "BLOCKED-ção")]
        mariadb.execute(f"INSERT INTO {target}.legacy (id) VALUES (4)")
        assert mariadb.execute(f"SELECT name, kind, note FROM {target}.legacy WHERE id = 4") == [
            ("café", "ação", "padrão ç")
        ]
        mariadb.execute(f"DROP DATABASE {target}")
    verified = run_module("mysql_restore_verify", dict(mariadb.login, src=result["path"]))
    assert not verified.failed, verified.get("msg")
    assert all(t["digest_ok"] for t in verified["tables"].values()), verified["tables"]
    mariadb.execute(f"DROP DATABASE {db}")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_gzip_backup_restores_with_zcat(mariadb, backup_db, tmp_path):
    result = backup(mariadb, backup_db, tmp_path, compression="gzip", compression_level=1)
    assert result.rc == 0, result
    assert result["path"].endswith(".sql.gz")
    restore_with_cli(mariadb, [["zcat", result["path"]]], "bk_restored_gz")
    assert table_checksums(mariadb, "bk_restored_gz") == table_checksums(mariadb, backup_db)
    mariadb.execute("DROP DATABASE bk_restored_gz")


def test_encrypted_backup_restores_with_age_cli(mariadb, backup_db, tmp_path):
    identity, recipient = _age.generate_identity()
    second = _age.generate_identity()[1]
    key = tmp_path / "key.txt"
    key.write_text(identity + "\n")
    key.chmod(0o600)
    result = backup(mariadb, backup_db, tmp_path / "enc", encrypt_recipients=[recipient, second])
    assert result.rc == 0, result
    assert result["encrypted"] and result["path"].endswith(".sql.zst.age")
    manifest = json.loads(Path(result["manifest_path"]).read_text())
    assert len(manifest["encryption"]["recipients"]) == 2
    assert recipient not in json.dumps(manifest)
    assert Path(result["path"]).read_bytes().startswith(b"age-encryption.org/v1\n")
    restore_with_cli(mariadb, [["age", "-d", "-i", str(key), result["path"]], ["zstdcat"]], "bk_restored_age")
    assert table_checksums(mariadb, "bk_restored_age") == table_checksums(mariadb, backup_db)
    mariadb.execute("DROP DATABASE bk_restored_age")


def test_exclusions(mariadb, backup_db, tmp_path):
    result = backup(mariadb, backup_db, tmp_path, exclude_tables=["cache"], exclude_table_data=["sessions", "jobs"])
    assert result.rc == 0, result
    assert "cache" not in result["tables"]
    assert result["tables"]["sessions"] == 0 and result["tables"]["jobs"] == 0
    assert result["tables"]["users"] > 0


def test_excluding_a_view_is_no_unknown_table(mariadb, tmp_path):
    with scratch_db(mariadb, "bk_exview") as db:
        mariadb.execute(f"CREATE VIEW {db}.v AS SELECT id FROM {db}.t")
        result = backup(mariadb, db, tmp_path, exclude_tables=["v", "nope"])
        assert result.rc == 0, result.get("msg")
        warnings = str(result.get("warnings"))  # strings, or event records on newer ansible-core
        assert f"excluded table 'nope' does not exist in {db}" in warnings and "'v'" not in warnings, warnings
        assert set(json.loads(Path(result["manifest_path"]).read_text())["tables"]) == {"t"}


def test_exclusions_written_as_database_dot_table_as_for_mysqldump(mariadb, tmp_path):
    """mysqldump's --ignore-table takes db.table: written so, the table was backed up all the same."""
    with scratch_db(mariadb, "bk_exdot") as db:
        mariadb.execute(f"CREATE TABLE {db}.cache (id INT PRIMARY KEY)")
        mariadb.execute(f"CREATE TABLE {db}.sessions (id INT PRIMARY KEY)")
        mariadb.execute(f"INSERT INTO {db}.sessions VALUES (1)")
        mariadb.execute(f"CREATE SEQUENCE {db}.ticket")
        result = backup(
            mariadb, db, tmp_path, exclude_tables=[f"{db}.cache", "ticket"], exclude_table_data=[f"{db}.sessions"]
        )
        assert result.rc == 0, result.get("msg")
        assert result["tables"] == {"t": 2, "sessions": 0}, result["tables"]
        assert not result.get("warnings"), result.get("warnings")
        manifest = json.loads(Path(result["manifest_path"]).read_text())
        assert manifest["dump"]["exclude_tables"] == ["cache", "ticket"]


@pytest.mark.parametrize("how", ["exclude_table_data", "no_data"])
def test_triggers_of_tables_backed_up_without_data_are_in_the_manifest_and_verify(mariadb, tmp_path, how):
    """A table dumped without its rows goes from its structure to its triggers (no data section)."""
    db = "bk_trg"
    mariadb.execute(f"DROP DATABASE IF EXISTS {db}")
    mariadb.execute(f"CREATE DATABASE {db}")
    for table in ("sessions", "orders"):
        mariadb.execute(f"CREATE TABLE {db}.{table} (id INT PRIMARY KEY, s TEXT)")
        mariadb.execute(f"INSERT INTO {db}.{table} VALUES (1, 'a'), (2, 'b')")
        mariadb.execute(f"CREATE TRIGGER {table}_bi BEFORE INSERT ON {table} FOR EACH ROW SET NEW.s = 'x'", database=db)
    options = (
        {"exclude_table_data": ["sessions"]} if how == "exclude_table_data" else {"extra_dump_args": ["--no-data"]}
    )
    try:
        result = backup(mariadb, db, tmp_path, **options)
        assert result.rc == 0, result.get("msg")
        tables = json.loads(Path(result["manifest_path"]).read_text())["tables"]
        assert tables["sessions"]["triggers"] == ["sessions_bi"]
        assert tables["orders"]["triggers"] == ["orders_bi"]
        assert [f["part"] for f in tables["sessions"]["frames"]] == ["schema", "triggers"]
        verified = run_module("mysql_restore_verify", dict(mariadb.login, src=result["path"]))
        assert verified.rc == 0, verified.get("msg")
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS {db}")


def test_least_privilege_backup_account(mariadb, backup_db, tmp_path):
    with backup_account(mariadb, "bk_user", "Bk-user-pw-0123456789!") as args:
        result = run_module("mysql_backup", dict(args, database=backup_db, dest=str(tmp_path)))
        assert result.rc == 0, result
        manifest = json.loads(Path(result["manifest_path"]).read_text())
        assert manifest["routines"] == ["procedure user_total"]
        assert manifest["events"] == ["purge_sessions"]
        # the snapshot's own binlog position, with no binlog privilege (the test server logs binlogs)
        assert manifest["binlog"]["exact"] is True and manifest["binlog"]["gtid"], manifest["binlog"]
        # without SHOW VIEW / TRIGGER the module refuses up front and says what to grant
        mariadb.execute("REVOKE SHOW VIEW, TRIGGER ON `bk_app`.* FROM 'bk_user'@'localhost'")
        refused = run_module("mysql_backup", dict(args, database=backup_db, dest=str(tmp_path / "x")))
        assert refused.failed and "lacks SHOW VIEW, TRIGGER" in refused["msg"]
        assert not (tmp_path / "x").exists()


def test_an_account_that_cannot_read_routines_is_refused_in_check_mode_and_for_real(mariadb, backup_db, tmp_path):
    """Without SELECT ON mysql.proc, mariadb-dump lists no routine and fails nothing: the backup held none."""
    with backup_account(mariadb, "bk_noproc", "Bk-noproc-pw-0123456789!") as args:
        mariadb.execute("REVOKE SELECT ON `mysql`.`proc` FROM 'bk_noproc'@'localhost'")
        options = dict(args, database=backup_db, dest=str(tmp_path / "x"))
        for check in (True, False):
            refused = run_module("mysql_backup", options, check=check)
            assert refused.failed, (check, refused.get("msg"), refused.get("tables"))
            assert "lacks SELECT ON `mysql`.`proc`" in refused["msg"] and "stored procedures" in refused["msg"]
            assert refused["missing_privileges"] == ["SELECT ON `mysql`.`proc`"]
        assert not (tmp_path / "x").exists()


def test_home_my_cnf_does_not_replace_the_modules_account_for_the_dump(mariadb, tmp_path):
    """The dump program connects as the preflight did, whatever the user's ~/.my.cnf says."""
    home = tmp_path / "home"
    home.mkdir()
    # root's ~/.my.cnf with another account and a stale password, read by the clients after an extra file
    my_cnf = home / ".my.cnf"
    my_cnf.write_text("[client]\nuser=admin\npassword=stale-admin-pw\nsocket=/nonexistent/mysqld.sock\n")
    my_cnf.chmod(0o600)
    with scratch_db(mariadb, "bk_mycnf") as db:
        # explicit login options and an explicit config_file: ~/.my.cnf is not the module's
        result = backup(mariadb, db, tmp_path / "dest", env={"HOME": str(home)})
        assert result.rc == 0, result.get("msg")
        assert result["tables"] == {"t": 2}


def test_backup_account_with_its_grants_in_a_default_role(mariadb, backup_db, tmp_path):
    """Privileges given through the account's default role count; those of a role it has not enabled do not."""
    mariadb.execute("DROP USER IF EXISTS 'bk_role_user'@'localhost'")
    for role in ("bk_dumpers", "bk_readers", "bk_spare"):
        mariadb.execute(f"DROP ROLE IF EXISTS {role}")
        mariadb.execute(f"CREATE ROLE {role}")
    # the default role holds part of the grants and gets the rest from a role granted to it
    mariadb.execute("GRANT SELECT, SHOW VIEW ON `bk_app`.* TO bk_readers")
    mariadb.execute("GRANT bk_readers TO bk_dumpers")
    mariadb.execute("GRANT TRIGGER, EVENT, LOCK TABLES ON `bk_app`.* TO bk_dumpers")
    mariadb.execute("GRANT SELECT ON `mysql`.`proc` TO bk_dumpers")
    mariadb.execute("GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `bk_app`.* TO bk_spare")
    mariadb.execute("CREATE USER 'bk_role_user'@'localhost' IDENTIFIED BY 'Bk-role-pw-0123456789!'")
    mariadb.execute("GRANT bk_dumpers TO 'bk_role_user'@'localhost'")
    mariadb.execute("GRANT bk_spare TO 'bk_role_user'@'localhost'")
    mariadb.execute("SET DEFAULT ROLE bk_dumpers FOR 'bk_role_user'@'localhost'")
    args = dict(mariadb.login, login_user="bk_role_user", login_password="Bk-role-pw-0123456789!")
    try:
        result = run_module("mysql_backup", dict(args, database=backup_db, dest=str(tmp_path)))
        assert result.rc == 0, result.get("msg")
        assert json.loads(Path(result["manifest_path"]).read_text())["routines"] == ["procedure user_total"]
        # bk_spare would cover it, but the dump program's session does not enable it
        mariadb.execute("REVOKE TRIGGER ON `bk_app`.* FROM bk_dumpers")
        refused = run_module("mysql_backup", dict(args, database=backup_db, dest=str(tmp_path / "x")))
        assert refused.failed and "lacks TRIGGER" in refused["msg"], refused.get("msg")
    finally:
        mariadb.execute("DROP USER IF EXISTS 'bk_role_user'@'localhost'")
        for role in ("bk_dumpers", "bk_readers", "bk_spare"):
            mariadb.execute(f"DROP ROLE IF EXISTS {role}")


def client_program_user(option_file) -> str:
    """The account the mariadb client logs in as with ``--defaults-file=option_file``."""
    client = subprocess.run(
        ["mariadb", f"--defaults-file={option_file}", "-N", "-e", "SELECT CURRENT_USER()"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert client.returncode == 0, client.stderr
    return client.stdout.strip()


def test_config_file_with_escapes_and_quotes_as_mysqls_clients_read_it(mariadb, backup_db, tmp_path):
    """A password with a backslash and a '#', written in an option file the way MySQL's documentation says."""
    cnf = tmp_path / "backup.cnf"
    cnf.write_text(
        "[client]\nuser = bk_cnf  # the backup account\n"
        'password = "Ab1\\\\x#y \'q\\""\n'
        f"socket = '{mariadb.socket}'\n"
    )
    cnf.chmod(0o600)
    with backup_account(mariadb, "bk_cnf", "Ab1\\x#y 'q\"") as args:
        assert client_program_user(cnf) == "bk_cnf@localhost"  # the file is right for the server's own clients
        result = run_module("mysql_backup", dict(config_file=str(cnf), database=backup_db, dest=str(tmp_path / "d")))
        assert result.rc == 0, result.get("msg")
        assert args["login_password"] not in json.dumps(result)


def test_config_file_that_includes_the_account_from_a_conf_d_folder(mariadb, backup_db, tmp_path):
    """Debian's layout: my.cnf opens [client-server] and !includedir's the folder that holds the account."""
    conf = tmp_path / "mariadb.conf.d"
    conf.mkdir()
    main = tmp_path / "my.cnf"
    main.write_text(f"[client-server]\nsocket = {mariadb.socket}\n!includedir {conf}\n")
    (conf / "50-client.cnf").write_text("[client]\nuser = bk_wrong\npassword = wrong\n")
    (conf / "60-backup.cnf").write_text("[client]\nuser = bk_inc\npassword = 'Bk-inc-0123456789!'\n")
    (conf / "60-backup.cnf").chmod(0o600)
    with backup_account(mariadb, "bk_inc", "Bk-inc-0123456789!") as args:
        assert client_program_user(main) == "bk_inc@localhost"
        result = run_module("mysql_backup", dict(config_file=str(main), database=backup_db, dest=str(tmp_path / "d")))
        assert result.rc == 0, result.get("msg")
        assert result["tables"] and args["login_password"] not in json.dumps(result)
        (conf / "70-typo.cnf").write_text("password = no group\n")
        refused = run_module("mysql_backup", dict(config_file=str(main), database=backup_db, dest=str(tmp_path / "e")))
        assert refused.failed and f"in {conf / '70-typo.cnf'}: line 1: an option before any [group]" in refused["msg"]
        assert not (tmp_path / "e").exists()


def test_least_privilege_account_on_a_database_whose_name_has_a_space(mariadb, tmp_path):
    with (
        scratch_db(mariadb, "bk my db", rows=3) as db,
        backup_account(mariadb, "bk_space", "Bk-pw-0123456789!", db) as args,
    ):
        result = run_module("mysql_backup", dict(args, database=db, dest=str(tmp_path)))
        assert result.rc == 0, result.get("msg")
        assert result["tables"] == {"t": 3}
        mariadb.execute(f"REVOKE EVENT ON `{db}`.* FROM 'bk_space'@'localhost'")
        refused = run_module("mysql_backup", dict(args, database=db, dest=str(tmp_path / "x")))
        assert refused.failed and f"lacks EVENT on `{db}`.*" in refused["msg"], refused.get("msg")


def test_check_mode_writes_nothing(mariadb, backup_db, tmp_path):
    dest = tmp_path / "planned"
    result = backup(mariadb, backup_db, dest, check=True)
    assert result.rc == 0 and result["changed"], result
    assert result["path"].startswith(str(dest)) and result["path"].endswith(".sql.zst")
    assert result["free_bytes"] > result["estimated_bytes"] > 0
    assert not dest.exists()


def test_retention_after_success_only_and_never_newest(mariadb, backup_db, tmp_path):
    first = backup(mariadb, backup_db, tmp_path)
    assert first.rc == 0
    time.sleep(1.1)
    failed = backup(mariadb, backup_db, tmp_path, keep_last=0, extra_dump_args=["--no-such-option"])
    assert failed.failed and "--no-such-option" in failed["msg"] and failed["rc"] != 0
    assert Path(first["path"]).exists()
    time.sleep(1.1)
    second = backup(mariadb, backup_db, tmp_path, keep_last=1)
    assert second.rc == 0
    assert second["retention_deleted"] == [Path(first["path"]).name]
    assert not Path(first["path"]).exists() and not Path(first["manifest_path"]).exists()
    assert Path(second["path"]).exists()


def test_retention_prunes_only_the_series_of_the_runs_label(mariadb, backup_db, tmp_path):
    """A labelled archive and the nightly backups share dest: neither run's rules touch the other's."""
    archive = backup(mariadb, backup_db, tmp_path, label="archive")
    time.sleep(1.1)
    archive2 = backup(mariadb, backup_db, tmp_path, label="archive")
    nightly = backup(mariadb, backup_db, tmp_path)
    assert archive.rc == archive2.rc == nightly.rc == 0
    time.sleep(1.1)
    nightly2 = backup(mariadb, backup_db, tmp_path, keep_last=1)
    assert nightly2.rc == 0 and nightly2["retention_deleted"] == [Path(nightly["path"]).name]
    assert Path(archive["path"]).exists() and Path(archive2["path"]).exists()
    time.sleep(1.1)
    planned = backup(mariadb, backup_db, tmp_path, label="archive", keep_last=1, check=True)
    archive3 = backup(mariadb, backup_db, tmp_path, label="archive", keep_last=1)
    expected = sorted(Path(r["path"]).name for r in (archive, archive2))
    assert sorted(planned["retention_deleted"]) == sorted(archive3["retention_deleted"]) == expected
    assert Path(nightly2["path"]).exists() and Path(archive3["path"]).exists()


def test_a_backup_retention_cannot_delete_is_a_warning_not_a_failed_backup(mariadb, backup_db, tmp_path):
    """The new backup was written, then an old one could not be deleted: the task failed ("cannot write
    dest"), so the playbook skipped the new backup's proof of restore and off-site copy."""
    stuck = f"{backup_db}-20200101T000000Z.sql.zst"
    (tmp_path / stuck).mkdir()  # not unlinkable (EISDIR), even as root
    (tmp_path / (stuck + ".manifest.json")).write_text("{}")
    result = backup(mariadb, backup_db, tmp_path, keep_last=1)
    assert not result.failed and result.rc == 0, result
    assert Path(result["path"]).exists() and Path(result["manifest_path"]).exists()
    assert result["retention_deleted"] == [] and len(result["retention_errors"]) == 1
    assert stuck in result["retention_errors"][0] and (tmp_path / (stuck + ".manifest.json")).exists()
    assert any("retention could not delete 1 older backup" in str(w) for w in result.get("warnings", [])), result


def test_check_mode_names_exactly_what_retention_will_delete(mariadb, backup_db, tmp_path):
    """The backup a run writes counts for retention: check mode must count it too."""
    first = backup(mariadb, backup_db, tmp_path)
    time.sleep(1.1)
    second = backup(mariadb, backup_db, tmp_path)
    assert first.rc == 0 and second.rc == 0
    time.sleep(1.1)
    planned = backup(mariadb, backup_db, tmp_path, check=True, keep_last=2)
    assert planned.rc == 0 and Path(first["path"]).exists()
    real = backup(mariadb, backup_db, tmp_path, keep_last=2)
    assert real.rc == 0, real
    assert planned["retention_deleted"] == real["retention_deleted"] == [Path(first["path"]).name]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"database": "no_such_db"}, "does not exist"),
        ({"login_password": "wrong-password"}, "Access denied"),
        ({"login_unix_socket": "/nonexistent/mysqld.sock"}, "is the server running"),
        ({"encrypt_recipients": ["age1notakey"]}, "invalid age recipient"),
        ({"dest": "relative/dir"}, "absolute path"),
        ({"label": "../etc"}, "label"),
        ({"extra_dump_args": ["--skip-comments"]}, "may not contain --skip-comments"),
        # a prefix the dump program expands: the snapshot would be off and the backup inconsistent
        ({"extra_dump_args": ["--skip-single"]}, "reads it as --single-transaction turned off"),
        ({"min_size": "1G"}, "below min_size"),
        # INSERT DELAYED INTO statements (on MyISAM/Aria tables): rows the manifest would not count
        ({"extra_dump_args": ["--delayed-insert"]}, "reads it as --delayed-insert"),
        # zlib refused it once the file was open: a traceback and no JSON
        ({"compression": "gzip", "compression_level": 19}, "no gzip level"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(mariadb, backup_db, tmp_path, override, expected):
    dest = tmp_path / "dest"
    args = dict(mariadb.login, database=backup_db, dest=str(dest))
    args.update(override)
    if override.get("dest"):
        args["dest"] = override["dest"]
    result = run_module("mysql_backup", args)
    assert result.failed, result
    assert expected in result["msg"]
    assert "Traceback" not in result["msg"]
    leftovers = [p.name for p in dest.iterdir() if not p.name.endswith(".lock")] if dest.exists() else []
    assert leftovers == []


def test_a_database_name_with_a_slash_is_refused_before_anything_is_written(mariadb, tmp_path):
    """The file is named after the database: '/' in it made a path outside dest (or a lock in no directory)."""
    dest = tmp_path / "dest"
    with scratch_db(mariadb, "shop/eu") as db:
        result = backup(mariadb, db, dest)
    assert result.failed and "contains a '/'" in result["msg"], result.get("msg")
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_unreachable_tcp_port(backup_db, tmp_path, mariadb):
    args = dict(mariadb.login_tcp, login_port=1, database=backup_db, dest=str(tmp_path), connect_timeout=3)
    args["config_file"] = mariadb.login["config_file"]
    result = run_module("mysql_backup", args)
    assert result.failed and "cannot connect" in result["msg"]


def test_localhost_with_a_port_reaches_the_server_for_the_dump_too(backup_db, tmp_path, mariadb):
    """login_host localhost without a socket: the dump program took its compiled-in socket, not the port."""
    mariadb.execute("CREATE USER tcp_backup@'127.0.0.1' IDENTIFIED BY 'Tcp-backup-pw-2026'")  # TCP only
    try:
        mariadb.execute("GRANT ALL ON *.* TO tcp_backup@'127.0.0.1'")
        args = dict(
            mariadb.login_tcp,
            login_host="localhost",
            login_user="tcp_backup",
            login_password="Tcp-backup-pw-2026",
            config_file=mariadb.login["config_file"],
            database=backup_db,
            dest=str(tmp_path),
        )
        result = run_module("mysql_backup", args)
        assert not result.failed, result.get("msg")
        assert result["tables"]
    finally:
        mariadb.execute("DROP USER tcp_backup@'127.0.0.1'")


def test_missing_trailer_is_a_failure(mariadb, backup_db, tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "mariadb-dump"
    fake.write_text(
        "#!/bin/sh\nprintf -- '-- MariaDB dump 10.19\\n--\\n-- Table structure for table `t`\\n--\\nCREATE TABLE t (a int);\\n'\nexit 0\n"
    )
    fake.chmod(0o755)
    dest = tmp_path / "dest"
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}"}
    result = backup(mariadb, backup_db, dest, env=env)
    assert result.failed and "Dump completed" in result["msg"]
    assert [p.name for p in dest.iterdir() if not p.name.endswith(".lock")] == []


def test_silent_dump_failure_still_says_what_to_check(mariadb, backup_db, tmp_path):
    """A dump program that dies without a word: the message still says where to look."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "mariadb-dump"
    fake.write_text("#!/bin/sh\nprintf -- '-- MariaDB dump 10.19\\n'\nexit 2\n")
    fake.chmod(0o755)
    dest = tmp_path / "dest"
    result = backup(mariadb, backup_db, dest, env={"PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert result.failed
    assert "exit code 2" in result["msg"] and "server's error log" in result["msg"], result["msg"]
    assert [p.name for p in dest.iterdir() if not p.name.endswith(".lock")] == []


def test_not_enough_space_is_refused_up_front(mariadb, backup_db, tmpfs):
    dest = tmpfs("tiny", size="400k")
    result = backup(mariadb, backup_db, dest, compression="none")
    assert result.failed and "not enough free space" in result["msg"], result
    assert list(dest.iterdir()) == []


def test_disk_full_mid_write_removes_partial_and_keeps_earlier_backups(mariadb, backup_db, tmpfs, tmp_path):
    """The preflight estimate passes, then the disk fills up while writing (a dump bigger than estimated)."""
    dest = tmpfs("small", size="6m")
    earlier = dest / _retention.backup_file_name("bk_app", datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    earlier.write_bytes(b"earlier backup")
    (dest / (earlier.name + _retention.MANIFEST_SUFFIX)).write_text("{}")
    big = tmp_path / "big.sql"
    row = "(1,'" + "x" * 200 + "'),\n"
    big.write_text(
        "-- MariaDB dump 10.19\n--\n-- Table structure for table `t`\n--\n\nCREATE TABLE t (a int, b text);\n"
        "--\n-- Dumping data for table `t`\n--\n\nLOCK TABLES `t` WRITE;\nINSERT INTO `t` VALUES\n"
        + row * 60_000
        + "(2,'y');\nUNLOCK TABLES;\n-- Dump completed\n"
    )
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "mariadb-dump").write_text(f"#!/bin/sh\nexec cat {big}\n")
    (fake_bin / "mariadb-dump").chmod(0o755)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}"}
    result = backup(mariadb, backup_db, dest, compression="none", keep_last=1, env=env)
    assert result.failed, result
    assert "no space left" in result["msg"]
    names = sorted(p.name for p in dest.iterdir())
    assert names == sorted([earlier.name, earlier.name + _retention.MANIFEST_SUFFIX, ".bk_app.backup.lock"])


def test_manifest_that_cannot_be_written_takes_the_data_file_with_it(mariadb, tmp_path):
    """The data file is renamed into place first; when its manifest then fails, it is removed again."""
    dest = tmp_path / "dest"
    dest.mkdir(mode=0o700)
    with scratch_db(mariadb, "bk_nomanifest") as db:
        earlier = backup(mariadb, db, dest)
        assert earlier.rc == 0
        time.sleep(1.1)  # the next backup's name is another second's
        # a directory where the manifests of the next minute's backups would go: os.replace onto it fails
        start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        for second in range(60):
            name = _retention.backup_file_name(db, start + datetime.timedelta(seconds=second), None, "zstd")
            (dest / (name + _retention.MANIFEST_SUFFIX)).mkdir(exist_ok=True)
        failed = backup(mariadb, db, dest, keep_last=0)
        assert failed.failed and "Traceback" not in failed["msg"], failed
        files = sorted(p.name for p in dest.iterdir() if not p.is_dir() and not p.name.endswith(".lock"))
        assert files == sorted([Path(earlier["path"]).name, Path(earlier["manifest_path"]).name]), files


def test_unwritable_dest(mariadb, backup_db, tmpfs, tmp_path):
    readonly = tmpfs("ro", size="64m", readonly=True)
    result = backup(mariadb, backup_db, readonly / "sub")
    assert result.failed and "cannot write" in result["msg"], result
    # check mode says the same instead of planning a backup the run cannot write
    for dest in (readonly, readonly / "sub"):
        planned = backup(mariadb, backup_db, dest, check=True)
        assert planned.failed and "read-only file system" in planned["msg"], planned
    (tmp_path / "a-file").write_text("")
    planned = backup(mariadb, backup_db, tmp_path / "a-file" / "sub", check=True)
    assert planned.failed and "is not a directory" in planned["msg"], planned
    assert backup(mariadb, backup_db, tmp_path / "a-file" / "sub").failed


def test_two_runs_never_overlap(mariadb, backup_db, tmp_path):
    tmp_path.chmod(0o700)
    with _backup.backup_lock(str(tmp_path), backup_db, 0):
        started = time.monotonic()
        result = backup(mariadb, backup_db, tmp_path, lock_timeout=2)
        waited = time.monotonic() - started
    assert result.failed and "another backup" in result["msg"]
    assert waited >= 2
    assert not list(tmp_path.glob("*.sql.zst"))
    assert backup(mariadb, backup_db, tmp_path).rc == 0  # lock released


def test_two_runs_started_in_the_same_second_both_write_their_backup(mariadb, tmp_path):
    """The second waits for the lock, then writes a backup of its own instead of failing on the first's name."""
    with scratch_db(mariadb, "bk_twice") as db:
        results: list = [None, None]

        def run(i):
            results[i] = backup(mariadb, db, tmp_path)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(r.rc == 0 for r in results), [r.get("msg") for r in results]
    paths = {r["path"] for r in results}
    assert len(paths) == 2 and all(Path(p).exists() and Path(p + _retention.MANIFEST_SUFFIX).exists() for p in paths)


def test_a_run_that_waited_for_the_lock_is_newer_than_the_backup_written_meanwhile(mariadb, tmp_path):
    """Named for its start, the waiting run was older than the other run's backup: keep_last=1 deleted its own."""
    tmp_path.chmod(0o700)
    lock = tmp_path / ".bk_waited.backup.lock"
    with scratch_db(mariadb, "bk_waited") as db:
        procs = []
        with _backup.backup_lock(str(tmp_path), db, 0):
            result: list = []
            waiting = threading.Thread(
                target=lambda: result.append(
                    run_module(
                        "mysql_backup",
                        dict(mariadb.login, database=db, dest=str(tmp_path), keep_last=1),
                        popen_hook=procs.append,
                    )
                )
            )
            waiting.start()
            deadline = time.monotonic() + 60
            # the run has chosen its name (before the fix) and opened the lock file: it waits
            while not (procs and _opened(procs[0].pid, lock)) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.1)
            # meanwhile the run holding the lock wrote its backup, named for now
            now = datetime.datetime.now(datetime.timezone.utc)
            other = tmp_path / _retention.backup_file_name(db, now)
            other.write_bytes(b"the other run's backup")
            (tmp_path / (other.name + _retention.MANIFEST_SUFFIX)).write_text(json.dumps({"database": db}))
        waiting.join()
    done = result[0]
    assert done.rc == 0, done.get("msg")
    assert Path(done["path"]).exists(), done["retention_deleted"]
    assert done["retention_deleted"] == [other.name]
    assert _retention.parse_backup_name(Path(done["path"]).name, db).timestamp > now.replace(microsecond=0)


def _opened(pid: int, path: Path) -> bool:
    with contextlib.suppress(OSError):
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    return False


def test_password_never_in_argv_environ_results_or_files(mariadb, backup_db, tmp_path):
    """Scan /proc of every process during a run; check results, -vvv output and temp files."""
    password = mariadb.ROOT_PASSWORD
    seen: list[str] = []
    leaks: list[str] = []
    stop = threading.Event()

    module_pid: list[int] = []

    def descends_from_module(pid: str) -> bool:
        """Only the module and its children are ours: other tests may run clients of their own."""
        for _hop in range(5):
            if module_pid and int(pid) == module_pid[0]:
                return True
            try:
                stat_fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return False
            pid = stat_fields[1]
            if pid in ("0", "1"):
                return False
        return False

    def scan() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or not descends_from_module(pid):
                    continue
                for name in ("cmdline", "environ"):
                    try:
                        data = Path(f"/proc/{pid}/{name}").read_bytes()
                    except OSError:
                        continue
                    text = data.decode("utf-8", "replace")
                    if "mariadb-dump" in text and name == "cmdline":
                        seen.append(text)
                    if password in text:
                        leaks.append(f"{pid}/{name}: {text[:200]}")
            time.sleep(0.005)

    datagen.create_database(mariadb, "bk_big", 12_000_000)
    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    # The module's own temporary directory, so that option files of other tests' modules
    # (pytest-xdist runs two at once) cannot be mistaken for this one's.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir(mode=0o700)
    try:
        result = run_module(
            "mysql_backup",
            dict(mariadb.login, database="bk_big", dest=str(tmp_path / "dest")),
            env={"TMPDIR": str(private_tmp)},
            popen_hook=lambda proc: module_pid.append(proc.pid),
        )
    finally:
        stop.set()
        thread.join()
        mariadb.execute("DROP DATABASE IF EXISTS bk_big")
    assert result.rc == 0, result
    # The module also runs `mariadb-dump --version` (no credentials involved) for the manifest.
    dumping = [cmd for cmd in seen if "--version" not in cmd.split("\x00")]
    assert dumping, "the scanner never saw mariadb-dump dumping"
    assert all("--defaults-file=" in cmd for cmd in dumping)
    assert leaks == []
    assert password not in json.dumps(result)
    # the option file the dump program read was in the module's temporary directory, and is gone
    option_files = {
        arg.split("=", 1)[1] for cmd in dumping for arg in cmd.split("\x00") if arg.startswith("--defaults-file=")
    }
    assert option_files and all(Path(f).parent == private_tmp and not Path(f).exists() for f in option_files), (
        option_files
    )
    assert not [n for n in os.listdir(private_tmp) if n.startswith(".mutuapix-client-")]
    assert password.encode() not in Path(result["path"]).read_bytes()
    assert password not in Path(result["manifest_path"]).read_text()


def backup_playbook(mariadb, db, tmp_path, task_yaml="", verbose=False):
    """Run mysql_backup from a real playbook (YAML typing included) into tmp_path/out."""
    from tests.support.runner import run_playbook

    playbook = tmp_path / "pb.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - mutuapix.ops.mysql_backup:\n"
        f"        login_unix_socket: {mariadb.socket}\n        login_user: root\n"
        f"        login_password: '{mariadb.ROOT_PASSWORD}'\n        config_file: {mariadb.login['config_file']}\n"
        f"        database: {db}\n        dest: {tmp_path / 'out'}\n{task_yaml}"
    )
    args = ["-c", "local", "-e", "ansible_python_interpreter=" + MODULE_PYTHON]
    return run_playbook(playbook, "localhost,", args=["-vvv", *args] if verbose else args)


def test_password_not_in_vvv_output(mariadb, backup_db, tmp_path):
    proc = backup_playbook(mariadb, backup_db, tmp_path, verbose=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "changed=1" in proc.stdout
    assert mariadb.ROOT_PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("written", "expected"), [("0640", 0o640), ("0644", None)])
def test_mode_as_a_playbook_writes_it(mariadb, backup_db, tmp_path, written, expected):
    """YAML makes an unquoted 0640 the integer 416: the files get 0640, not 0416 (world-writable)."""
    proc = backup_playbook(mariadb, backup_db, tmp_path, f"        mode: {written}\n")
    out = tmp_path / "out"
    if expected is None:
        assert proc.returncode != 0
        assert "mode 0644 would let others read" in proc.stdout, proc.stdout[-3000:]
        assert not out.exists()
        return
    assert proc.returncode == 0, proc.stdout[-3000:]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if not p.name.startswith(".")}
    assert len(modes) == 2 and set(modes.values()) == {expected}, modes


@pytest.mark.parametrize(("mode", "expected"), [("0640", 0o750), ("0600", 0o700)])
def test_a_created_dest_lets_the_backups_group_in_only_when_it_may_read_them(
    mariadb, backup_db, tmp_path, mode, expected
):
    """dest used to be created 0700 root:root whatever group and mode said: the group could read its files
    (0640) but never reach them. An existing directory keeps its mode."""
    group = grp.getgrgid(os.getgid() if os.getgid() else 65534)  # nogroup when running as root
    dest = tmp_path / "new" / "backups"
    result = backup(mariadb, backup_db, dest, group=group.gr_name, mode=mode)
    assert result.rc == 0, result
    info = dest.stat()
    assert stat.S_IMODE(info.st_mode) == expected and info.st_gid == group.gr_gid
    assert Path(result["path"]).stat().st_gid == group.gr_gid
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o700)
    again = backup(mariadb, backup_db, existing, group=group.gr_name, mode=mode)
    assert again.rc == 0, again
    assert stat.S_IMODE(existing.stat().st_mode) == 0o700 and existing.stat().st_gid == os.getgid()


def test_server_killed_mid_dump_fails_cleanly(second_server, tmp_path):
    datagen.create_database(second_server, "big", 60_000_000)
    dest = tmp_path / "dest"
    dest.mkdir(mode=0o700)
    earlier = run_module("mysql_backup", dict(second_server.login, database="big", dest=str(dest), label="earlier"))
    assert earlier.rc == 0
    killer_done = threading.Event()

    def kill_when_partial() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            partial = [p for p in dest.iterdir() if ".partial-" in p.name]
            if partial and partial[0].stat().st_size > 50_000:
                second_server.kill()
                break
            time.sleep(0.01)
        killer_done.set()

    thread = threading.Thread(target=kill_when_partial, daemon=True)
    thread.start()
    result = run_module("mysql_backup", dict(second_server.login, database="big", dest=str(dest), compression_level=19))
    thread.join()
    assert result.failed, result
    # Which message depends on the moment of the kill: the dump program's exit code (its stderr,
    # "Lost connection ..." when it had time to print it) or a dump that ended without its trailer.
    assert "mariadb-dump failed with exit code" in result["msg"] or "Dump completed" in result["msg"], result["msg"]
    names = sorted(p.name for p in dest.iterdir())
    assert Path(earlier["path"]).name in names and not [n for n in names if ".partial-" in n]
    assert len([n for n in names if n.endswith(".sql.zst")]) == 1
    # the lock is free again
    with _backup.backup_lock(str(dest), "big", 0):
        pass


def _ledger_state(mariadb, db: str) -> tuple:
    return mariadb.execute(f"SELECT COUNT(*), SUM(CRC32(CONCAT_WS(':', id, v, n))) FROM `{db}`.ledger")[0]


def test_binlog_position_is_the_snapshots_so_a_replay_from_it_recreates_the_database(mariadb, tmp_path):
    """Point-in-time recovery from the manifest's position, while a writer commits throughout the backup.

    A position read before the dump's snapshot would replay transactions the dump already
    holds (duplicate keys, the replay fails); one read after it would miss some (the state
    differs). Only the snapshot's own position recreates the database exactly.
    """
    db = "bk_pitr"
    mariadb.execute(f"DROP DATABASE IF EXISTS {db}")
    mariadb.execute(f"CREATE DATABASE {db}")
    mariadb.execute(
        f"CREATE TABLE {db}.ledger (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(200) NOT NULL, n INT NOT NULL DEFAULT 0)"
    )
    mariadb.execute(f"INSERT INTO {db}.ledger (v) SELECT REPEAT('x', 150) FROM {db}.seq_1_to_40000")
    stop = threading.Event()
    commits = [0]
    errors: list[BaseException] = []

    def writer() -> None:
        conn = mariadb.connect(db)
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute("INSERT INTO ledger (v) VALUES (%s)", (f"w{commits[0]}",))
                    cur.execute("UPDATE ledger SET n = n + 1 WHERE id = %s", (1 + commits[0] * 7 % 40000,))
                    commits[0] += 2
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        while commits[0] < 200 and thread.is_alive():
            time.sleep(0.01)
        during = commits[0]
        result = backup(mariadb, db, tmp_path / "backups")
        during = commits[0] - during
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert result.rc == 0, result
    assert during > 50, f"the writer committed only {during} times during the backup: the test proves nothing"
    position = result["binlog"]
    assert position["exact"] is True, position
    snapshot_gtid = mariadb.execute("SELECT BINLOG_GTID_POS(%s, %s)", (position["file"], position["position"]))
    assert snapshot_gtid[0][0] == position["gtid"], position
    expected = _ledger_state(mariadb, db)
    end_file, end_pos = mariadb.execute("SHOW MASTER STATUS")[0][:2]
    logs = [r[0] for r in mariadb.execute("SHOW BINARY LOGS")]
    files = [str(mariadb.datadir / f) for f in logs[logs.index(position["file"]) : logs.index(end_file) + 1]]

    restore_with_cli(mariadb, [["zstdcat", result["path"]]], db)
    assert _ledger_state(mariadb, db) != expected  # the dump alone is older than the source
    replay = subprocess.Popen(
        [
            "mariadb-binlog",
            f"--start-position={position['position']}",
            f"--stop-position={end_pos}",
            f"--database={db}",
            *files,
        ],
        stdout=subprocess.PIPE,
    )
    load = subprocess.run(mariadb.client_args(db), stdin=replay.stdout, capture_output=True, check=False)
    replay.stdout.close()
    assert load.returncode == 0, load.stderr.decode()  # e.g. a duplicate key: replayed from too early
    assert replay.wait() == 0
    assert _ledger_state(mariadb, db) == expected
    mariadb.execute(f"DROP DATABASE {db}")


def test_a_table_name_with_a_line_break_is_refused_up_front(mariadb, tmp_path):
    """Such a name would split the comment that frames its table: it would fall out of the manifest."""
    db = "bk_newline"
    name = "x\n-- Table structure for table `evil`"
    quoted = "`" + name.replace("`", "``") + "`"
    mariadb.execute(f"DROP DATABASE IF EXISTS {db}")
    mariadb.execute(f"CREATE DATABASE {db}")
    try:
        mariadb.execute(f"CREATE TABLE {db}.plain (id INT PRIMARY KEY)")
        mariadb.execute(f"CREATE TABLE {db}.{quoted} (id INT PRIMARY KEY)")
        mariadb.execute(f"INSERT INTO {db}.{quoted} VALUES (1), (2)")
        dest = tmp_path / "backups"
        result = backup(mariadb, db, dest)
        assert result.failed and "contain a line break" in result["msg"] and "RENAME TABLE" in result["msg"], result
        assert not dest.exists()
        mariadb.execute(f"RENAME TABLE {db}.{quoted} TO {db}.renamed")
        result = backup(mariadb, db, dest)
        assert result.rc == 0 and result["tables"] == {"plain": 0, "renamed": 2}, result
    finally:
        mariadb.execute(f"DROP DATABASE {db}")


def test_a_row_bigger_than_the_dump_programs_default_packet_is_backed_up_and_verifies(mariadb, tmp_path):
    """mariadb-dump's compiled-in max_allowed_packet is 24M: a 30 MB attachment row (a 60 MB hex line)
    failed the nightly backup with 'Lost connection to server during query when dumping table'."""
    db = "bk_bigrow"
    mariadb.execute(f"DROP DATABASE IF EXISTS {db}")
    mariadb.execute(f"CREATE DATABASE {db}")
    try:
        mariadb.execute(f"CREATE TABLE {db}.attachments (id INT PRIMARY KEY, body LONGBLOB)")
        mariadb.execute(f"INSERT INTO {db}.attachments VALUES (1, REPEAT('x', 30000000)), (2, 'small')")
        result = backup(mariadb, db, tmp_path / "b")
        assert result.rc == 0, result.get("msg")
        assert result["tables"] == {"attachments": 2}
        verified = run_module("mysql_restore_verify", dict(mariadb.login, src=result["path"]))
        assert not verified.failed, verified.get("msg")
        assert verified["tables"]["attachments"] == {"rows_expected": 2, "rows_restored": 2, "digest_ok": True}
    finally:
        mariadb.execute(f"DROP DATABASE {db}")

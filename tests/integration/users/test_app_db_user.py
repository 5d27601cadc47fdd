"""app_db_user against the private MariaDB: real logins, real grants, the server's own logs."""

from __future__ import annotations

import subprocess

import pymysql
import pytest

from tests.integration.users.conftest import Accounts, cli_login, login
from tests.support.mariadb import MariaDB
from tests.support.runner import run_module

STRONG = "Xk7#pQ2v!Lm9@wZr"
OTHER = "Yz8$Rt4n&Bq6^Hs3"

DENIED = (1044, 1045, 1142, 1143, 1227, 1370, 1410, 1419)


def denied(conn: pymysql.connections.Connection, sql: str) -> int:
    """Run ``sql`` expecting an access-denied error; return its code."""
    with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute(sql)
    code = info.value.args[0]
    assert code in DENIED, f"{sql!r} failed with {info.value}, not an access error"
    return int(code)


def allowed(conn: pymysql.connections.Connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
            cur.fetchall()


def test_check_mode_then_create_then_idempotent(accounts: Accounts, app_database: str) -> None:
    args = {"name": "p5_check", "password": STRONG, "privileges": "app", "database": app_database}
    planned = accounts.run(check=True, diff=True, **args)
    assert planned["changed"] and planned["created"] and not planned.failed, planned
    assert not accounts.exists("p5_check"), "check mode created the account"
    esc = app_database.replace("_", "\\_")
    assert planned["statements"] == [
        "CREATE USER `p5_check`@`localhost` IDENTIFIED VIA mysql_native_password USING '<redacted>'",
        f"GRANT DELETE, INSERT, SELECT, UPDATE ON `{esc}`.* TO `p5_check`@`localhost`",
    ]
    assert planned["diff"]["before"] == {"p5_check@localhost": {"exists": False}}
    assert planned["diff"]["after"]["p5_check@localhost"]["privileges"] == {
        f"{esc}.*": ["DELETE", "INSERT", "SELECT", "UPDATE"]
    }

    applied = accounts.run(**args)
    assert applied["changed"] and applied["statements"] == planned["statements"], applied
    assert accounts.exists("p5_check")
    again = accounts.run(check=True, **args)
    assert not again["changed"] and again["statements"] == [], again
    again = accounts.run(**args)
    assert not again["changed"] and not again["password_changed"], again
    assert again["privileges"] == {"p5_check@localhost": {f"{esc}.*": ["DELETE", "INSERT", "SELECT", "UPDATE"]}}


def test_app_preset_can_do_dml_only(accounts: Accounts, mariadb: MariaDB, app_database: str) -> None:
    assert not accounts.run(name="p5_app", password=STRONG, privileges="app", database=app_database).failed
    conn = login(mariadb, "p5_app", STRONG, app_database)
    try:
        allowed(
            conn,
            "SELECT COUNT(*) FROM users",
            "INSERT INTO cache (`key`, value, expiration) VALUES ('p5', 'v', 1)",
            "UPDATE cache SET value = 'w' WHERE `key` = 'p5'",
            "DELETE FROM cache WHERE `key` = 'p5'",
        )
        denied(conn, "CREATE TABLE p5_new (id int)")
        denied(conn, "DROP TABLE cache")
        denied(conn, "ALTER TABLE cache ADD COLUMN x int")
        denied(conn, "SELECT User FROM mysql.user")
        denied(conn, "CREATE DATABASE p5_other")
        denied(conn, f"GRANT SELECT ON `{app_database}`.* TO `p5_app`@`localhost`")
    finally:
        conn.close()
    # The escaped wildcard: a database whose name differs in the `_` position is not covered.
    twin = app_database.replace("_", "X", 1)
    mariadb.execute(f"CREATE DATABASE `{twin}`")
    try:
        conn = login(mariadb, "p5_app", STRONG)
        denied(conn, f"CREATE TABLE `{twin}`.t (id int)")
        denied(conn, f"USE `{twin}`")
        conn.close()
    finally:
        mariadb.execute(f"DROP DATABASE `{twin}`")


def test_migrate_preset_runs_laravel_ddl(accounts: Accounts, mariadb: MariaDB, app_database: str) -> None:
    assert not accounts.run(name="p5_migrate", password=STRONG, privileges="migrate", database=app_database).failed
    conn = login(mariadb, "p5_migrate", STRONG, app_database)
    try:
        allowed(
            conn,
            "CREATE TABLE p5_orders (id bigint unsigned auto_increment primary key, user_id bigint unsigned,"
            " total decimal(10,2), CONSTRAINT p5_fk FOREIGN KEY (user_id) REFERENCES users (id))",
            "ALTER TABLE p5_orders ADD COLUMN note varchar(20)",
            "CREATE INDEX p5_orders_total ON p5_orders (total)",
            "CREATE VIEW p5_view AS SELECT id FROM p5_orders",
            "CREATE PROCEDURE p5_proc() SELECT 1",
            "CALL p5_proc()",
            "CREATE EVENT p5_event ON SCHEDULE EVERY 1 DAY DO DELETE FROM cache WHERE expiration < 0",
            "CREATE TEMPORARY TABLE p5_tmp (id int)",
            "LOCK TABLES p5_orders WRITE",
            "UNLOCK TABLES",
            "INSERT INTO p5_orders (user_id, total) SELECT id, 1 FROM users LIMIT 1",
            "DROP VIEW p5_view",
            "DROP PROCEDURE p5_proc",
            "DROP EVENT p5_event",
            "DROP TABLE p5_orders",
        )
        # With binary logging on, triggers need SUPER or log_bin_trust_function_creators=1
        # (documented in roles/hardening/README.md and docs/security.md).
        trigger = "CREATE TRIGGER p5_trg BEFORE INSERT ON cache FOR EACH ROW SET NEW.expiration = NEW.expiration"
        trust = mariadb.execute("SELECT @@log_bin_trust_function_creators")[0][0]
        if not trust:
            assert denied(conn, trigger) == 1419
        mariadb.execute("SET GLOBAL log_bin_trust_function_creators = 1")
        try:
            allowed(conn, trigger, "DROP TRIGGER p5_trg")
        finally:
            mariadb.execute("SET GLOBAL log_bin_trust_function_creators = %s", (trust,))
        denied(conn, "CREATE DATABASE p5_other")
        denied(conn, "SELECT User FROM mysql.user")
        denied(conn, "CREATE USER p5_evil@localhost")
        denied(conn, "SET GLOBAL max_connections = 10")
        denied(conn, f"GRANT SELECT ON `{app_database}`.* TO `p5_migrate`@`localhost`")
    finally:
        conn.close()


def test_readonly_preset(accounts: Accounts, mariadb: MariaDB, app_database: str) -> None:
    assert not accounts.run(name="p5_ro", password=STRONG, privileges="readonly", database=app_database).failed
    conn = login(mariadb, "p5_ro", STRONG, app_database)
    try:
        allowed(conn, "SELECT COUNT(*) FROM transactions")
        denied(conn, "INSERT INTO cache (`key`, value, expiration) VALUES ('p5', 'v', 1)")
        denied(conn, "DELETE FROM cache")
        denied(conn, "CREATE TABLE p5_new (id int)")
    finally:
        conn.close()


@pytest.mark.parametrize("binlog", [False, True])
def test_backup_preset_dumps_everything_and_nothing_more(
    accounts: Accounts, mariadb: MariaDB, app_database: str, tmp_path, binlog: bool
) -> None:
    result = accounts.run(
        name="p5_backup",
        password=STRONG,
        privileges="backup",
        database=app_database,
        backup_binlog_privilege=binlog,
    )
    assert not result.failed, result
    expected = {
        f"{app_database.replace('_', chr(92) + '_')}.*": ["EVENT", "LOCK TABLES", "SELECT", "SHOW VIEW", "TRIGGER"]
    }
    expected["mysql.proc"] = ["SELECT"]
    if binlog:
        expected["*.*"] = ["BINLOG MONITOR"]
    assert result["privileges"]["p5_backup@localhost"] == expected
    cnf = tmp_path / "backup.cnf"
    cnf.write_text(f'[client]\nuser=p5_backup\npassword="{STRONG}"\nsocket={mariadb.socket}\n')
    cnf.chmod(0o600)
    dump = subprocess.run(
        [
            "mariadb-dump",
            f"--defaults-file={cnf}",
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            app_database,
        ],
        capture_output=True,
        check=False,
    )
    assert dump.returncode == 0, dump.stderr.decode()
    text = dump.stdout.decode("utf-8", "replace")
    assert "CREATE TABLE `transactions`" in text
    assert "PROCEDURE" in text and "TRIGGER" in text and "EVENT" in text and "VIEW" in text
    # ... and the collection's own backup module, run as this account, succeeds.
    backup = run_module(
        "mysql_backup",
        {
            "login_unix_socket": mariadb.socket,
            "login_user": "p5_backup",
            "login_password": STRONG,
            "config_file": str(cnf),
            "database": app_database,
            "dest": str(tmp_path / "backups"),
        },
    )
    assert not backup.failed and backup["changed"], {k: v for k, v in backup.items() if k != "invocation"}
    conn = login(mariadb, "p5_backup", STRONG, app_database)
    try:
        denied(conn, "INSERT INTO cache (`key`, value, expiration) VALUES ('p5', 'v', 1)")
        denied(conn, "CREATE TABLE p5_new (id int)")
        denied(conn, "SELECT User FROM mysql.user")
        if binlog:
            allowed(conn, "SHOW MASTER STATUS")
        else:
            denied(conn, "SHOW MASTER STATUS")
    finally:
        conn.close()


def test_extra_privileges_are_revoked(accounts: Accounts, mariadb: MariaDB, app_database: str) -> None:
    assert not accounts.run(name="p5_exact", password=STRONG, privileges="migrate", database=app_database).failed
    mariadb.execute(f"GRANT ALL PRIVILEGES ON `{app_database}`.* TO `p5_exact`@`localhost` WITH GRANT OPTION")
    mariadb.execute("GRANT PROCESS, FILE ON *.* TO `p5_exact`@`localhost`")
    mariadb.execute("GRANT SELECT ON mysql.user TO `p5_exact`@`localhost`")
    result = accounts.run(diff=True, name="p5_exact", password=STRONG, privileges="app", database=app_database)
    assert result["changed"] and not result["password_changed"], result
    revoked = result["revoked"]["p5_exact@localhost"]
    assert revoked["*.*"] == ["FILE", "PROCESS"]
    assert revoked["mysql.user"] == ["SELECT"]
    assert "GRANT OPTION" in revoked[f"{app_database}.*"] and "ALL PRIVILEGES" in revoked[f"{app_database}.*"]
    grants = accounts.grants("p5_exact")
    assert grants[0].startswith("GRANT USAGE ON *.* TO")
    rest = sorted(grants[1:])
    esc = app_database.replace("_", "\\_")
    assert rest == [f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{esc}`.* TO `p5_exact`@`localhost`"], grants
    assert not accounts.run(name="p5_exact", password=STRONG, privileges="app", database=app_database)["changed"]


# What SHOW GRANTS folds into ALL PRIVILEGES on MariaDB 10.3.4-11.2, per database and per table.
EVERY_TABLE_PRIVILEGE = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "REFERENCES", "INDEX", "ALTER",
    "CREATE VIEW", "SHOW VIEW", "TRIGGER", "DELETE HISTORY",
]  # fmt: skip
EVERY_DB_PRIVILEGE = [
    *EVERY_TABLE_PRIVILEGE, "CREATE ROUTINE", "ALTER ROUTINE", "EXECUTE", "EVENT",
    "CREATE TEMPORARY TABLES", "LOCK TABLES",
]  # fmt: skip


def test_every_privilege_of_a_level_is_idempotent(accounts: Accounts, app_database: str) -> None:
    """The server prints ALL PRIVILEGES for a level that holds all of its privileges (on MySQL 8 the
    migrate preset is such a set): that is the list asked for, not something to revoke and grant again."""
    esc = app_database.replace("_", "\\_")
    privileges = {f"{esc}.*": EVERY_DB_PRIVILEGE, f"{app_database}.users": EVERY_TABLE_PRIVILEGE}
    args = {"name": "p5_every", "password": STRONG, "privileges": privileges}
    assert not accounts.run(**args).failed
    grants = accounts.grants("p5_every")
    assert f"GRANT ALL PRIVILEGES ON `{esc}`.* TO `p5_every`@`localhost`" in grants, grants
    assert f"GRANT ALL PRIVILEGES ON `{app_database}`.`users` TO `p5_every`@`localhost`" in grants, grants
    again = accounts.run(check=True, **args)
    assert not again["changed"] and again["statements"] == [], again
    again = accounts.run(**args)
    assert not again["changed"] and again["statements"] == [], again
    # One privilege fewer: only that one goes (through REVOKE ALL and a GRANT of the rest).
    fewer = {f"{esc}.*": [p for p in EVERY_DB_PRIVILEGE if p != "DROP"], f"{app_database}.users": ["SELECT"]}
    result = accounts.run(name="p5_every", password=STRONG, privileges=fewer)
    assert result["changed"], result
    rest = sorted(accounts.grants("p5_every")[1:])
    assert not any("ALL PRIVILEGES" in g or "DROP" in g for g in rest), rest
    assert not accounts.run(name="p5_every", password=STRONG, privileges=fewer)["changed"]


def test_global_privileges_and_grant_option_refused(accounts: Accounts) -> None:
    for privileges, needle in (
        ({"*.*": ["PROCESS"]}, "global privileges on '*.*' refused"),
        ({"p5db.*": ["SELECT", "GRANT OPTION"]}, "GRANT OPTION on 'p5db.*' refused"),
        ({"p5db.*": ["SUPER"]}, "SUPER on 'p5db.*' are global privileges"),
        ({"p5db.*": ["SELECT", "FOO BAR"]}, "FOO BAR on 'p5db.*': not a privilege of this server"),
    ):
        result = accounts.run(name="p5_global", password=STRONG, privileges=privileges)
        assert result.failed and needle in result["msg"], result
        assert not accounts.exists("p5_global")
    result = accounts.run(
        name="p5_global", password=STRONG, privileges={"*.*": ["PROCESS"]}, allow_global_privileges=True
    )
    assert result["changed"] and accounts.grants("p5_global")[0].startswith("GRANT PROCESS ON *.*"), result


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("CHANGE_THIS_SECURE_PASSWORD", "known placeholder"),
        ("Change-This-Secure-Password-2024", "known placeholder"),
        ("Ch@ng3_Th1s_S3cur3_P@ssw0rd", "look-alike characters"),
        ("P@ssw0rd123456789", "look-alike characters"),
        ("changeme", "at least 16 are required"),
        ("Short1!", "at least 16 are required"),
        ("aaaaaaaaaaaaaaaaaaaa", "single repeated character"),
        ("abcdefghijklmnopqr", "fewer than three character classes"),
        ("Xx9!p5_policy-Secret", "contains the account or database name"),
        ("", "the password is empty"),
    ],
)
def test_password_policy_refuses_and_never_echoes(accounts: Accounts, password: str, rule: str) -> None:
    result = accounts.run(name="p5_policy", password=password, privileges="app", database="p5db")
    assert result.failed and rule in result["msg"], result
    assert "p5_policy" in result["msg"] and "password" in result["msg"]
    if password:
        assert password not in result["msg"] and password not in result.stderr
    assert not accounts.exists("p5_policy")


def test_weak_password_allowed_with_warning(accounts: Accounts) -> None:
    refused = accounts.run(name="p5_weak", password="Short1!xyz", password_min_length=8)
    assert refused.failed and "password_min_length=8 is below 16" in refused["msg"], refused
    result = accounts.run(name="p5_weak", password="Short1!xyz", password_min_length=8, allow_weak_password=True)
    assert result["created"], result
    assert any("password_min_length=8 is below 16" in str(w) for w in result.get("warnings", [])), result
    weak = accounts.run(name="p5_weak", password="changeme", password_min_length=8, allow_weak_password=True)
    assert not weak.failed and any("known placeholder" in str(w) for w in weak.get("warnings", [])), weak
    assert "changeme" not in str(weak.get("warnings")), weak


def test_password_change_is_detected_and_applied(accounts: Accounts, mariadb: MariaDB) -> None:
    assert accounts.run(name="p5_pw", password=STRONG)["created"]
    changed = accounts.run(name="p5_pw", password=OTHER)
    assert changed["changed"] and changed["password_changed"] and not changed["created"], changed
    login(mariadb, "p5_pw", OTHER).close()
    with pytest.raises(pymysql.err.OperationalError):
        login(mariadb, "p5_pw", STRONG)
    same = accounts.run(name="p5_pw", password=OTHER)
    assert not same["changed"] and not same["password_changed"], same
    on_create = accounts.run(name="p5_pw", password=STRONG, update_password="on_create")
    assert not on_create["changed"], on_create
    login(mariadb, "p5_pw", OTHER).close()


@pytest.mark.usefixtures("ed25519_plugin")
def test_on_create_diff_shows_only_what_the_run_changes(accounts: Accounts, mariadb: MariaDB) -> None:
    """update_password=on_create leaves an existing account's password and plugin alone: the diff must not
    announce another plugin - neither one named in the task nor the server default chosen by plugin=auto."""
    assert accounts.run(name="p5_oc", password=STRONG, plugin="mysql_native_password")["created"]
    named = accounts.run(diff=True, name="p5_oc", password=OTHER, plugin="ed25519", update_password="on_create")
    assert not named["changed"] and named["statements"] == [], named
    assert named["diff"]["after"] == named["diff"]["before"], named["diff"]
    assert named["diff"]["before"]["p5_oc@localhost"]["plugin"] == "mysql_native_password"
    # ... and says that the plugin it was asked for is not applied (it only changes with the password).
    assert any(
        "plugin ed25519 is not applied, the account keeps mysql_native_password" in str(w)
        for w in named.get("warnings", [])
    ), named
    # An account with a plugin app_db_user does not manage: auto resolves to the server default for new accounts.
    mariadb.execute("CREATE USER `p5_oc_sock`@`localhost` IDENTIFIED VIA unix_socket")
    accounts.touched.add(("p5_oc_sock", "localhost"))
    auto = accounts.run(diff=True, check=True, name="p5_oc_sock", password=STRONG, update_password="on_create")
    assert not auto["changed"] and auto["statements"] == [], auto
    assert auto["diff"]["after"] == auto["diff"]["before"], auto["diff"]
    assert auto["diff"]["before"]["p5_oc_sock@localhost"]["plugin"] == "unix_socket"
    assert not any("not applied" in str(w) for w in auto.get("warnings", []))  # plugin=auto asks for none
    login(mariadb, "p5_oc", STRONG).close()  # and the password was indeed not touched


@pytest.mark.parametrize(
    "password",
    [
        "Quote'Double\"Mix-2024x",
        "Back\\slash\\\\End-9Zq",
        "Percent%_Wild%%card7Q",
        "Dollar$HOME${x}`id`9Q",
        "Ünïcødé-Пароль-密码-9Zq",
        "Semi; DROP USER root; -- 9Zq",
    ],
)
def test_awkward_passwords_work(accounts: Accounts, mariadb: MariaDB, password: str) -> None:
    result = accounts.run(name="p5_awk", password=password)
    assert result["created"], result
    conn = login(mariadb, "p5_awk", password.encode("utf-8"))
    conn.close()
    assert cli_login(mariadb, "p5_awk", password).returncode == 0
    assert not accounts.run(name="p5_awk", password=password)["changed"]
    assert mariadb.execute("SELECT COUNT(*) FROM mysql.user WHERE User = 'root'")[0][0] >= 2


@pytest.mark.usefixtures("ed25519_plugin")
def test_ed25519_hash_computed_client_side(accounts: Accounts, mariadb: MariaDB) -> None:
    password = "Ed-25519'Pässword\\9"
    result = accounts.run(name="p5_ed", password=password, plugin="ed25519")
    assert result["created"] and "IDENTIFIED VIA ed25519 USING '<redacted>'" in result["statements"][0], result
    stored = mariadb.execute("SELECT plugin, authentication_string FROM mysql.user WHERE User = 'p5_ed'")[0]
    expected = mariadb.execute("SELECT PASSWORD(%s)", (password,))  # native, to prove it differs
    assert stored[0] == "ed25519" and stored[1] != expected[0][0]
    # The server's own ed25519 hash of the same password equals ours.
    mariadb.execute("CREATE USER `p5_ed_ref`@`localhost` IDENTIFIED VIA ed25519 USING PASSWORD(%s)", (password,))
    try:
        ref = mariadb.execute("SELECT authentication_string FROM mysql.user WHERE User = 'p5_ed_ref'")[0][0]
    finally:
        mariadb.execute("DROP USER `p5_ed_ref`@`localhost`")
    assert stored[1] == ref
    ok = cli_login(mariadb, "p5_ed", password)
    assert ok.returncode == 0 and "p5_ed@localhost" in ok.stdout, ok.stderr
    assert cli_login(mariadb, "p5_ed", password + "x").returncode != 0
    assert not accounts.run(name="p5_ed", password=password, plugin="ed25519")["changed"]
    # plugin auto keeps ed25519; switching to native is a password change.
    assert not accounts.run(name="p5_ed", password=password)["changed"]
    switched = accounts.run(name="p5_ed", password=password, plugin="mysql_native_password")
    assert switched["password_changed"], switched
    login(mariadb, "p5_ed", password.encode("utf-8")).close()


def test_plaintext_never_reaches_server_logs(accounts: Accounts, mariadb: MariaDB, general_log) -> None:
    first, second = "Plain-Text-Canary-7Q!", "Second-Canary-Value-8R!"
    assert accounts.run(name="p5_log", password=first, privileges="app", database="p5db")["created"]
    assert accounts.run(name="p5_log", password=first, privileges="app", database="p5db")["changed"] is False
    assert accounts.run(name="p5_log", password=second, privileges="app", database="p5db")["password_changed"]
    log = general_log.read_text(encoding="utf-8", errors="replace")
    assert "CREATE USER `p5_log`@`localhost` IDENTIFIED VIA mysql_native_password USING '*" in log
    assert first not in log and second not in log
    # Read as bytes: other tests' events on this shared server hold raw binary column values (a backup
    # dumped in the binary character set, loaded with the mariadb client), which are no UTF-8.
    conn = mariadb.connect(use_unicode=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            cur.execute("SHOW BINLOG EVENTS IN %s", (cur.fetchone()[0].decode(),))
            events = b"\n".join(bytes(row[5]) for row in cur.fetchall())
    finally:
        conn.close()
    assert b"p5_log" in events and first.encode() not in events and second.encode() not in events


def test_injection_is_refused_or_harmless(accounts: Accounts, mariadb: MariaDB) -> None:
    for args, needle in (
        ({"name": "x'@'%' IDENTIFIED BY 'x"}, "contains characters other than"),
        ({"name": "p5_inj", "host": "localhost` IDENTIFIED BY `x"}, "is not a host name"),
        ({"name": "p5_inj", "privileges": {"p5db.*": ["SELECT ON *.* TO root; --"]}}, "is not a privilege name"),
        ({"name": "p5_inj", "privileges": {"p5db.* TO x; --": ["SELECT"]}}, "is not of the form"),
    ):
        result = accounts.run(password=STRONG, **args)
        assert result.failed and needle in result["msg"], result
    mariadb.execute("CREATE DATABASE IF NOT EXISTS p5_keep")
    evil = "p5`.* TO `root`@`%`; DROP DATABASE p5_keep; --"
    result = accounts.run(name="p5_inj", password=STRONG, privileges="app", database=evil)
    assert result["created"], result
    assert mariadb.execute("SHOW DATABASES LIKE 'p5\\_keep'"), "the injected DROP DATABASE ran"
    assert len(accounts.grants("p5_inj")) == 2
    assert not accounts.exists("root", "%")
    mariadb.execute("DROP DATABASE p5_keep")


def test_hosts_list_limits_and_removal(accounts: Accounts) -> None:
    args = {"name": "p5_multi", "hosts": ["localhost", "10.0.%"], "password": STRONG}
    result = accounts.run(require_ssl=True, max_user_connections=7, privileges="app", database="p5db", **args)
    assert result["created"] and set(result["privileges"]) == {"p5_multi@localhost", "p5_multi@10.0.%"}, result
    row = accounts.server.execute("SELECT ssl_type, max_user_connections FROM mysql.user WHERE User = 'p5_multi'")
    assert row == [("ANY", 7), ("ANY", 7)]
    same = accounts.run(require_ssl=True, max_user_connections=7, privileges="app", database="p5db", **args)
    assert not same["changed"], same
    # The test server has no TLS: REQUIRE SSL really keeps a plain connection out.
    with pytest.raises(pymysql.err.OperationalError) as info:
        login(accounts.server, "p5_multi", STRONG)
    assert info.value.args[0] == 1045
    relaxed = accounts.run(require_ssl=False, **args)
    assert relaxed["statements"] == [
        "ALTER USER `p5_multi`@`10.0.%` REQUIRE NONE",
        "ALTER USER `p5_multi`@`localhost` REQUIRE NONE",
    ] or relaxed["statements"] == [
        "ALTER USER `p5_multi`@`localhost` REQUIRE NONE",
        "ALTER USER `p5_multi`@`10.0.%` REQUIRE NONE",
    ], relaxed
    conflict = accounts.run(host="db", **args)
    assert conflict.failed and "mutually exclusive" in conflict["msg"]
    gone = accounts.run(state="absent", name="p5_multi", hosts=["localhost", "10.0.%"], check=True)
    assert gone["changed"] and accounts.exists("p5_multi")
    gone = accounts.run(state="absent", name="p5_multi", hosts=["localhost", "10.0.%"])
    assert gone["removed"] and not accounts.exists("p5_multi") and not accounts.exists("p5_multi", "10.0.%")
    assert not accounts.run(state="absent", name="p5_multi", hosts=["localhost", "10.0.%"])["changed"]


def test_mariadb_refuses_rotate_and_mysql_plugins_clearly(accounts: Accounts) -> None:
    assert accounts.run(name="p5_rot", password=STRONG)["created"]
    result = accounts.run(name="p5_rot", password=OTHER, rotate="retain_current")
    assert result.failed and "needs dual password support (MySQL 8.0.14 or later)" in result["msg"], result
    result = accounts.run(name="p5_rot2", password=STRONG, plugin="caching_sha2_password")
    assert result.failed and "caching_sha2_password is MySQL's" in result["msg"], result


def test_connection_failure_is_clear(accounts: Accounts, mariadb: MariaDB) -> None:
    result = accounts.run(name="p5_conn", password=STRONG, login_password="wrong-Password-1")
    assert result.failed and "cannot connect to MySQL as root@socket" in result["msg"], result
    assert "Traceback" not in result.stderr


def test_privileges_through_roles_routines_proxies_and_columns_are_revoked(
    accounts: Accounts, mariadb: MariaDB, app_database: str
) -> None:
    args = {"name": "p5_role", "password": STRONG, "privileges": "app", "database": app_database}
    account = "`p5_role`@`localhost`"
    assert accounts.run(**args)["created"]
    mariadb.execute("CREATE ROLE IF NOT EXISTS p5_dba")
    try:
        mariadb.execute("GRANT ALL PRIVILEGES ON *.* TO p5_dba")
        mariadb.execute(f"GRANT p5_dba TO {account}")
        mariadb.execute(f"SET DEFAULT ROLE p5_dba FOR {account}")
        mariadb.execute(f"GRANT UPDATE (`value`) ON `{app_database}`.`cache` TO {account}")
        mariadb.execute(f"CREATE PROCEDURE `{app_database}`.p5_proc() SQL SECURITY DEFINER SELECT 1")
        mariadb.execute(f"GRANT EXECUTE ON PROCEDURE `{app_database}`.`p5_proc` TO {account}")
        mariadb.execute(f"GRANT PROXY ON `root`@`localhost` TO {account}")
        conn = login(mariadb, "p5_role", STRONG, app_database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT CURRENT_ROLE()")
                assert cur.fetchone()[0] == "p5_dba", "the role is active at login: ALL PRIVILEGES ON *.*"
        finally:
            conn.close()

        result = accounts.run(diff=True, **args)
        assert result["changed"] and not result.failed, result
        revoked = result["revoked"]["p5_role@localhost"]
        assert revoked["roles"] == ["p5_dba"] and revoked["default role"] == ["p5_dba"], revoked
        assert revoked["PROXY"] == ["root@localhost"]
        assert revoked[f"PROCEDURE {app_database}.p5_proc"] == ["EXECUTE"]
        assert revoked[f"{app_database}.cache"] == ["UPDATE (`value`)"]
        assert f"REVOKE `p5_dba` FROM {account}" in result["statements"]
        assert f"SET DEFAULT ROLE NONE FOR {account}" in result["statements"]
        assert result["diff"]["before"]["p5_role@localhost"]["roles"] == ["p5_dba"]
        assert "roles" not in result["diff"]["after"]["p5_role@localhost"]
        esc = app_database.replace("_", "\\_")
        assert accounts.grants("p5_role")[1:] == [f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{esc}`.* TO {account}"], (
            accounts.grants("p5_role")
        )

        conn = login(mariadb, "p5_role", STRONG, app_database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT CURRENT_ROLE()")
                assert cur.fetchone()[0] is None
            denied(conn, "DROP TABLE cache")
            denied(conn, "SELECT User FROM mysql.user")
        finally:
            conn.close()
        again = accounts.run(**args)
        assert not again["changed"] and again["statements"] == [], again
    finally:
        mariadb.execute(f"DROP PROCEDURE IF EXISTS `{app_database}`.p5_proc")
        mariadb.execute("DROP ROLE IF EXISTS p5_dba")


def test_host_names_are_matched_in_lower_case(accounts: Accounts) -> None:
    args = {"name": "p5_case", "host": "App1.Example.COM", "password": STRONG}
    accounts.touched.add(("p5_case", "app1.example.com"))
    first = accounts.run(**args)
    assert first["created"] and not first.failed, first
    assert first["statements"][0].startswith("CREATE USER `p5_case`@`app1.example.com` ")
    assert accounts.exists("p5_case", "app1.example.com")
    second = accounts.run(**args)
    assert not second.failed and not second["changed"], second
    assert list(second["privileges"]) == ["p5_case@app1.example.com"]
    same = accounts.run(name="p5_case", hosts=["app1.example.com", "APP1.EXAMPLE.COM"], password=STRONG)
    assert not same.failed and not same["changed"] and list(same["privileges"]) == ["p5_case@app1.example.com"]
    gone = accounts.run(name="p5_case", host="App1.Example.COM", state="absent")
    assert gone["removed"] and gone["statements"] == ["DROP USER `p5_case`@`app1.example.com`"], gone
    assert not accounts.exists("p5_case", "app1.example.com")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"privileges": "migrate", "database": "*"}, "database '*' refused"),
        ({"privileges": "app", "database": "mysql"}, "matches the system schema mysql"),
        ({"privileges": {"%.*": ["ALL"]}}, "the database '%' matches the system schema mysql"),
        ({"privileges": {"_ysql.*": ["UPDATE"]}}, "the database '_ysql' matches the system schema mysql"),
        ({"privileges": {"m%.*": ["SELECT"]}}, "the database 'm%' matches the system schema mysql"),
        ({"privileges": {"mysql.global_priv": ["UPDATE"]}}, "matches the system schema mysql"),
    ],
)
def test_levels_reaching_the_system_schemas_are_global(accounts: Accounts, args: dict, needle: str) -> None:
    result = accounts.run(name="p5_sys", password=STRONG, **args)
    assert result.failed and needle in result["msg"] and "allow_global_privileges=true" in result["msg"], result
    assert not accounts.exists("p5_sys")


def test_system_schema_level_with_allow_global_privileges(accounts: Accounts, mariadb: MariaDB) -> None:
    result = accounts.run(name="p5_sys", password=STRONG, privileges={"%.*": ["SELECT"]}, allow_global_privileges=True)
    assert result["created"], result
    conn = login(mariadb, "p5_sys", STRONG)
    try:
        allowed(conn, "SELECT COUNT(*) FROM mysql.db")
        denied(conn, "UPDATE mysql.global_priv SET Priv = Priv WHERE User = 'p5_sys'")
    finally:
        conn.close()


def test_failure_part_way_reports_what_was_applied(accounts: Accounts, app_database: str) -> None:
    result = accounts.run(name="p5_part", password=STRONG, privileges={f"{app_database}.nosuch": ["SELECT"]})
    assert result.failed and "statement failed: GRANT SELECT ON" in result["msg"], result
    assert "the statements before it were applied" in result["msg"]
    assert result["changed"] and result["created"] and result["password_changed"], result
    assert result["statements"] == [
        "CREATE USER `p5_part`@`localhost` IDENTIFIED VIA mysql_native_password USING '<redacted>'"
    ]
    assert accounts.exists("p5_part")
    assert STRONG not in str(result)


@pytest.mark.parametrize("password", [STRONG + "\n", STRONG + " ", " " + STRONG, STRONG + "\r\n", STRONG + "\t"])
def test_password_with_edge_whitespace_refused(accounts: Accounts, password: str) -> None:
    """``echo ... | ansible-vault encrypt_string`` keeps a line break: the account would get it, and the app
    (whose .env line ends there) could never log in. Refused before connecting, the password never echoed."""
    result = accounts.run(name="p5_ws", password=password, privileges="app", database="p5db")
    assert result.failed and "starts or ends with white space" in result["msg"], result
    assert STRONG not in result["msg"] and STRONG not in result.stderr
    assert not accounts.exists("p5_ws")


def test_removal_of_a_definer_is_refused(accounts: Accounts, mariadb: MariaDB) -> None:
    """Dropping the account a trigger, view, routine or event runs as breaks the app on MariaDB
    (``The user specified as a definer ('p5_def'@'%') does not exist``, error 1449, on every INSERT)."""
    args = {"name": "p5_def", "hosts": ["localhost", "%"], "password": STRONG}
    assert accounts.run(**args)["created"]
    mariadb.execute("CREATE DATABASE IF NOT EXISTS p5_defdb")
    try:
        mariadb.execute("CREATE TABLE p5_defdb.t (id INT PRIMARY KEY, n INT)")
        mariadb.execute("GRANT SELECT, UPDATE, TRIGGER ON p5_defdb.* TO `p5_def`@`%`")
        mariadb.execute(
            "CREATE DEFINER = `p5_def`@`%` TRIGGER p5_defdb.t_bi BEFORE INSERT ON p5_defdb.t FOR EACH ROW SET NEW.n = 1"
        )
        mariadb.execute(
            "CREATE DEFINER = `p5_def`@`%` SQL SECURITY DEFINER VIEW p5_defdb.v AS SELECT id FROM p5_defdb.t"
        )
        for check in (True, False):
            refused = accounts.run(state="absent", name="p5_def", hosts=["localhost", "%"], check=check)
            assert refused.failed and not refused["changed"], refused
            assert "p5_def@%" in refused["msg"] and "DEFINER" in refused["msg"], refused
            assert "TRIGGER p5_defdb.t_bi" in refused["msg"] and "VIEW p5_defdb.v" in refused["msg"], refused
            assert accounts.exists("p5_def", "%") and accounts.exists("p5_def", "localhost")
        mariadb.execute("INSERT INTO p5_defdb.t (id) VALUES (1)")
        # The localhost account defines nothing: it may go.
        assert accounts.run(state="absent", name="p5_def", host="localhost")["removed"]
        mariadb.execute("DROP TRIGGER p5_defdb.t_bi")
        mariadb.execute("DROP VIEW p5_defdb.v")
        assert accounts.run(state="absent", name="p5_def", host="%")["removed"]
    finally:
        mariadb.execute("DROP DATABASE IF EXISTS p5_defdb")

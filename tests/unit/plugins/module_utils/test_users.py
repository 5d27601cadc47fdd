"""Grant parsing, presets and plans against MariaDB answers recorded here and MySQL 8.0/8.4 transcripts."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _users as u
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import ServerInfo
from ansible_collections.mutuapix.ops.plugins.module_utils._password_policy import caching_sha2_hash

MARIADB = ServerInfo("10.11.19-MariaDB-0+deb12u1-log")
MARIADB_104 = ServerInfo("10.4.34-MariaDB")
MYSQL80 = ServerInfo("8.0.39")
MYSQL8017 = ServerInfo("8.0.17")
MYSQL84 = ServerInfo("8.4.3")

# SHOW GRANTS recorded on MariaDB 10.11.19 (this repository's test server).
MARIADB_GRANTS = [
    "GRANT `r1` TO `b`@`localhost`",
    "GRANT BINLOG MONITOR ON *.* TO `b`@`localhost` IDENTIFIED BY PASSWORD "
    "'*14E65567ABDB5135D0CFD9A70B3032C179A49EE7' REQUIRE SSL WITH GRANT OPTION MAX_USER_CONNECTIONS 5",
    "GRANT SELECT, INSERT ON `my\\_db`.* TO `b`@`localhost`",
    "GRANT ALL PRIVILEGES ON `x`.* TO `b`@`localhost`",
    "GRANT SELECT (`User`, `Host`) ON `mysql`.`db` TO `b`@`localhost`",
    "GRANT SELECT ON `mysql`.`proc` TO `b`@`localhost`",
    "GRANT EXECUTE ON PROCEDURE `x`.`p` TO `b`@`localhost`",
]
MARIADB_ED25519 = [
    "GRANT USAGE ON *.* TO `e`@`localhost` IDENTIFIED VIA ed25519 USING 'yi26JQzcLYrVvTgU8hzx5TSex2oNMEWp/OCol7IaAHY'",
]
# MySQL 8.0/8.4 answers are transcribed in the servers' documented output format (no MySQL
# server runs here): static privileges joined by ", ", dynamic privileges on their own line
# joined by ",", a PROXY line for root, roles as `GRANT `role`@`%` TO ...`.
MYSQL80_BACKUP = [
    "GRANT PROCESS, REPLICATION CLIENT ON *.* TO `backup`@`localhost`",
    "GRANT BACKUP_ADMIN,SHOW_ROUTINE ON *.* TO `backup`@`localhost`",
    "GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON `mutuapix`.* TO `backup`@`localhost`",
]
MYSQL80_ROOT = [
    "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, SHUTDOWN, PROCESS, FILE, REFERENCES, INDEX, "
    "ALTER, SHOW DATABASES, SUPER, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, "
    "REPLICATION CLIENT, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER, "
    "CREATE TABLESPACE, CREATE ROLE, DROP ROLE ON *.* TO `root`@`localhost` WITH GRANT OPTION",
    "GRANT APPLICATION_PASSWORD_ADMIN,AUDIT_ABORT_EXEMPT,AUDIT_ADMIN,AUTHENTICATION_POLICY_ADMIN,BACKUP_ADMIN,"
    "BINLOG_ADMIN,BINLOG_ENCRYPTION_ADMIN,CLONE_ADMIN,CONNECTION_ADMIN,SHOW_ROUTINE,SYSTEM_USER,"
    "XA_RECOVER_ADMIN ON *.* TO `root`@`localhost` WITH GRANT OPTION",
    "GRANT PROXY ON ``@`` TO `root`@`localhost` WITH GRANT OPTION",
]
MYSQL84_APP = [
    "GRANT USAGE ON *.* TO `app`@`%`",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON `mutuapix`.* TO `app`@`%`",
    "GRANT `app_role`@`%` TO `app`@`%`",
    "GRANT EXECUTE, ALTER ROUTINE ON PROCEDURE `mutuapix`.`p` TO `app`@`%`",
]
# MySQL 5.7 quoted with single quotes.
MYSQL57 = ["GRANT USAGE ON *.* TO 'app'@'%'", "GRANT SELECT ON `shop`.* TO 'app'@'%'"]


def test_parse_mariadb_recorded() -> None:
    grants = u.parse_show_grants(MARIADB_GRANTS, MARIADB)
    assert grants.to_dict() == {
        "*.*": ["BINLOG MONITOR", "GRANT OPTION"],
        "my\\_db.*": ["INSERT", "SELECT"],
        "mysql.db": ["SELECT (`Host`, `User`)"],
        "mysql.proc": ["SELECT"],
        "x.*": ["ALL PRIVILEGES"],
    }
    assert grants.roles == ["r1"]
    assert grants.routines == ["PROCEDURE `x`.`p`"]
    # The password hash MariaDB prints on the USAGE line is never kept anywhere.
    assert "14E65567" not in repr(grants)


def test_parse_mariadb_usage_only() -> None:
    grants = u.parse_show_grants(MARIADB_ED25519, MARIADB)
    assert grants.to_dict() == {}
    assert "yi26" not in repr(grants)


def test_parse_mysql80_dynamic_privileges() -> None:
    grants = u.parse_show_grants(MYSQL80_BACKUP, MYSQL80)
    assert grants.to_dict() == {
        "*.*": ["BACKUP_ADMIN", "PROCESS", "REPLICATION CLIENT", "SHOW_ROUTINE"],
        "mutuapix.*": ["EVENT", "LOCK TABLES", "SELECT", "SHOW VIEW", "TRIGGER"],
    }


def test_parse_mysql80_root_and_proxy() -> None:
    grants = u.parse_show_grants(MYSQL80_ROOT, MYSQL80)
    level = u.Level("*", "*")
    assert level in grants.grant_option
    assert {"SUPER", "SHOW_ROUTINE", "SYSTEM_USER", "DROP ROLE"} <= grants.privileges[level]
    assert grants.proxies == 1


def test_parse_mysql84_roles_routines_and_57_quotes() -> None:
    grants = u.parse_show_grants(MYSQL84_APP, MYSQL84)
    assert grants.to_dict() == {"mutuapix.*": ["DELETE", "INSERT", "SELECT", "UPDATE"]}
    assert grants.roles == ["app_role@%"]
    assert grants.routines == ["PROCEDURE `mutuapix`.`p`"]
    assert u.parse_show_grants(MYSQL57, ServerInfo("5.7.44-log")).to_dict() == {"shop.*": ["SELECT"]}


def test_parse_names_with_backticks_and_dots() -> None:
    line = "GRANT SELECT ON `we``ird.db`.`t TO x` TO `a`@`%`"
    assert u.parse_show_grants([line]).to_dict() == {"we`ird.db.t TO x": ["SELECT"]}


def test_mariadb_synonyms_normalised() -> None:
    assert u.normalise_privilege("replication client", MARIADB) == "BINLOG MONITOR"
    assert u.normalise_privilege("replication client", MARIADB_104) == "REPLICATION CLIENT"
    assert u.normalise_privilege("replication client", MYSQL80) == "REPLICATION CLIENT"
    assert u.normalise_privilege("all", MYSQL80) == "ALL PRIVILEGES"
    assert u.normalise_privilege("  lock   tables ") == "LOCK TABLES"


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("db.*", u.Level("db", "*")),
        ("*.*", u.Level("*", "*")),
        ("`my.db`.`t`", u.Level("my.db", "t")),
        ("app\\_prod.*", u.Level("app\\_prod", "*")),
        ("shop-1.orders", u.Level("shop-1", "orders")),
    ],
)
def test_parse_level(text: str, level: u.Level) -> None:
    assert u.parse_level(text) == level


@pytest.mark.parametrize("text", ["db", "a.b.c", "*.t", "db.* TO x; --", "db.t'", ".*", "db."])
def test_parse_level_refuses(text: str) -> None:
    with pytest.raises(u.AccountError):
        u.parse_level(text)


def test_level_sql_quotes_everything() -> None:
    assert u.Level("a`b", "*").sql() == "`a``b`.*"
    assert u.Level("*", "*").sql() == "*.*"
    assert u.account_sql("app", "10.0.%") == "`app`@`10.0.%`"


@pytest.mark.parametrize("name", ["app", "mutuapix_app", "a.b-c", "x" * 80])
def test_valid_names(name: str) -> None:
    assert u.validate_user_name(name, MARIADB) == name


@pytest.mark.parametrize("name", ["", "x'@'%", "a b", "a`b", "root;--", "ü", "x" * 81])
def test_invalid_names(name: str) -> None:
    with pytest.raises(u.AccountError):
        u.validate_user_name(name, MARIADB)


def test_mysql_name_limit_is_32() -> None:
    u.validate_user_name("x" * 32, MYSQL80)
    with pytest.raises(u.AccountError, match="longer than 32"):
        u.validate_user_name("x" * 33, MYSQL80)


@pytest.mark.parametrize("host", ["localhost", "%", "10.0.%", "10.0.0.0/255.255.255.0", "::1", "db-1.example.com"])
def test_valid_hosts(host: str) -> None:
    assert u.validate_host(host) == host


@pytest.mark.parametrize("host", ["", "a b", "h'ost", "h`ost", "localhost;DROP", "x" * 256])
def test_invalid_hosts(host: str) -> None:
    with pytest.raises(u.AccountError):
        u.validate_host(host)


def test_escape_db_pattern() -> None:
    assert u.escape_db_pattern("app_prod") == "app\\_prod"
    assert u.escape_db_pattern("50%off") == "50\\%off"


def test_presets_mariadb() -> None:
    db = u.Level("app\\_prod", "*")
    app, _warnings = u.preset_privileges("app", "app_prod", MARIADB)
    assert app == {db: {"SELECT", "INSERT", "UPDATE", "DELETE"}}
    migrate, _warnings = u.preset_privileges("migrate", "app_prod", MARIADB)
    assert migrate[db] >= {"CREATE", "ALTER", "DROP", "INDEX", "TRIGGER", "EVENT", "CREATE TEMPORARY TABLES"}
    assert "GRANT OPTION" not in migrate[db] and len(migrate) == 1
    backup, warnings = u.preset_privileges("backup", "app_prod", MARIADB)
    assert backup == {
        db: {"SELECT", "SHOW VIEW", "TRIGGER", "EVENT", "LOCK TABLES"},
        u.Level("mysql", "proc"): {"SELECT"},
    }
    assert warnings == []
    with_binlog, _warnings = u.preset_privileges("backup", "app_prod", MARIADB, binlog_privilege=True)
    assert with_binlog[u.Level("*", "*")] == {"BINLOG MONITOR"}
    old, _warnings = u.preset_privileges("backup", "app_prod", MARIADB_104, binlog_privilege=True)
    assert old[u.Level("*", "*")] == {"REPLICATION CLIENT"}
    with pytest.raises(u.AccountError, match="unknown privileges preset"):
        u.preset_privileges("admin", "app_prod", MARIADB)


def test_backup_preset_mysql_versions() -> None:
    new, warnings = u.preset_privileges("backup", "shop", MYSQL84, binlog_privilege=True)
    assert new[u.Level("*", "*")] == {"SHOW_ROUTINE", "REPLICATION CLIENT"} and warnings == []
    assert u.Level("mysql", "proc") not in new
    old, warnings = u.preset_privileges("backup", "shop", MYSQL8017)
    assert old[u.Level("*", "*")] == {"SELECT"} and "8.0.20" in warnings[0]


def test_explicit_mapping_rules() -> None:
    wanted = u.explicit_privileges({"shop.*": "select, insert", "shop.orders": ["UPDATE"]}, MARIADB, False)
    assert wanted == {u.Level("shop", "*"): {"SELECT", "INSERT"}, u.Level("shop", "orders"): {"UPDATE"}}
    for mapping, needle in (
        ({"*.*": ["SELECT"]}, "global privileges"),
        ({"shop.*": ["SELECT", "GRANT OPTION"]}, "GRANT OPTION"),
        ({"shop.*": ["FILE"]}, "global privileges; refused"),
        ({"shop.*": ["SELECT; DROP"]}, "is not a privilege name"),
        ({"shop.*": ["SELECT (id)"]}, "column privileges cannot be requested"),
        ({"shop.*": []}, "are empty"),
    ):
        with pytest.raises(u.AccountError, match=needle.replace("(", r"\(")):
            u.explicit_privileges(mapping, MARIADB, False)
    allowed = u.explicit_privileges({"*.*": ["PROCESS", "GRANT OPTION"]}, MARIADB, True)
    assert allowed == {u.Level("*", "*"): {"PROCESS", "GRANT OPTION"}}


def _desired(**kw: Any) -> u.Desired:
    base: dict[str, Any] = {
        "user": "app",
        "host": "localhost",
        "password": "Xk7#pQ2v!Lm9@wZr",
        "plugin": "mysql_native_password",
        "update_password": "always",
        "privileges": {u.Level("shop", "*"): {"SELECT"}},
    }
    base.update(kw)
    return u.Desired(**base)


def test_plan_create_mariadb_sends_hash_only() -> None:
    plan = u.plan_account(MARIADB, u.Account("app", "localhost"), _desired(require_ssl=True, max_user_connections=5))
    create = plan.statements[0]
    assert create.sql.startswith("CREATE USER `app`@`localhost` IDENTIFIED VIA mysql_native_password USING '*")
    assert create.sql.endswith(" REQUIRE SSL WITH MAX_USER_CONNECTIONS 5")
    assert create.redacted == (
        "CREATE USER `app`@`localhost` IDENTIFIED VIA mysql_native_password USING '<redacted>' "
        "REQUIRE SSL WITH MAX_USER_CONNECTIONS 5"
    )
    assert "Xk7#" not in create.sql and create.params == ()
    assert plan.statements[1].sql == "GRANT SELECT ON `shop`.* TO `app`@`localhost`"
    assert plan.created and plan.password_changed and plan.secrets == [create.sql.split("'")[1]]


def test_plan_create_mysql_uses_with_as() -> None:
    plan = u.plan_account(MYSQL84, u.Account("app", "%"), _desired(host="%", plugin="caching_sha2_password"))
    sql = plan.statements[0].sql
    assert sql.startswith("CREATE USER `app`@`%` IDENTIFIED WITH caching_sha2_password AS '$A$005$")
    assert plan.statements[0].redacted.endswith("AS '<redacted>'")


def _existing(server: ServerInfo, plugin: str, auth: bytes, grants: list[str], **kw: Any) -> u.Account:
    account = u.Account("app", "localhost", exists=True, plugin=plugin, auth_string=auth, **kw)
    account.grants = u.parse_show_grants(grants, server)
    return account


def test_plan_unchanged_caching_sha2_account_is_empty() -> None:
    stored = caching_sha2_hash("Xk7#pQ2v!Lm9@wZr").encode()
    current = _existing(MYSQL80, "caching_sha2_password", stored, ["GRANT SELECT ON `shop`.* TO `app`@`localhost`"])
    plan = u.plan_account(MYSQL80, current, _desired(plugin="caching_sha2_password"))
    assert plan.statements == [] and not plan.password_changed
    changed = u.plan_account(MYSQL80, current, _desired(plugin="caching_sha2_password", password="Other-Pw-99#xyzA"))
    assert changed.password_changed and changed.statements[0].sql.startswith(
        "ALTER USER `app`@`localhost` IDENTIFIED WITH"
    )
    on_create = u.plan_account(
        MYSQL80,
        current,
        _desired(plugin="caching_sha2_password", password="Other-Pw-99#xyzA", update_password="on_create"),
    )
    assert on_create.statements == []


def test_plan_plugin_switch_changes_password() -> None:
    current = _existing(MARIADB, "mysql_native_password", b"*14E65567ABDB5135D0CFD9A70B3032C179A49EE7", [])
    plan = u.plan_account(MARIADB, current, _desired(password="secret", plugin="ed25519", privileges=None))
    assert [s.redacted for s in plan.statements] == [
        "ALTER USER `app`@`localhost` IDENTIFIED VIA ed25519 USING '<redacted>'"
    ]


def test_plan_exact_grants_from_mysql80_backup_to_app() -> None:
    current = _existing(
        MYSQL80, "caching_sha2_password", caching_sha2_hash("Xk7#pQ2v!Lm9@wZr").encode(), MYSQL80_BACKUP
    )
    wanted = {u.Level("mutuapix", "*"): {"SELECT", "INSERT", "UPDATE", "DELETE"}}
    plan = u.plan_account(MYSQL80, current, _desired(plugin="caching_sha2_password", privileges=wanted))
    assert [s.sql for s in plan.statements] == [
        "REVOKE BACKUP_ADMIN, PROCESS, REPLICATION CLIENT, SHOW_ROUTINE ON *.* FROM `app`@`localhost`",
        "REVOKE EVENT, LOCK TABLES, SHOW VIEW, TRIGGER ON `mutuapix`.* FROM `app`@`localhost`",
        "GRANT DELETE, INSERT, UPDATE ON `mutuapix`.* TO `app`@`localhost`",
    ]
    assert plan.revoked["*.*"] == ["BACKUP_ADMIN", "PROCESS", "REPLICATION CLIENT", "SHOW_ROUTINE"]
    assert plan.granted == {"mutuapix.*": ["DELETE", "INSERT", "UPDATE"]}
    assert plan.final_privileges == {"mutuapix.*": ["DELETE", "INSERT", "SELECT", "UPDATE"]}


def test_plan_all_privileges_and_grant_option_revoked_separately() -> None:
    current = _existing(MARIADB, "mysql_native_password", b"", MARIADB_GRANTS)
    wanted = {u.Level("x", "*"): {"SELECT"}}
    plan = u.plan_account(MARIADB, current, _desired(password=None, privileges=wanted))
    sqls = [s.sql for s in plan.statements]
    assert "REVOKE BINLOG MONITOR ON *.* FROM `app`@`localhost`" in sqls
    assert "REVOKE GRANT OPTION ON *.* FROM `app`@`localhost`" in sqls
    assert "REVOKE SELECT (`Host`, `User`) ON `mysql`.`db` FROM `app`@`localhost`" in sqls
    assert sqls[-2:] == [
        "REVOKE ALL PRIVILEGES ON `x`.* FROM `app`@`localhost`",
        "GRANT SELECT ON `x`.* TO `app`@`localhost`",
    ]
    assert not any("GRANT OPTION" in s and "ALL PRIVILEGES" in s for s in sqls)


def test_plan_grant_option_when_allowed() -> None:
    current = _existing(MARIADB, "mysql_native_password", b"", ["GRANT SELECT ON `x`.* TO `app`@`localhost`"])
    plan = u.plan_account(
        MARIADB, current, _desired(password=None, privileges={u.Level("x", "*"): {"SELECT", "GRANT OPTION"}})
    )
    assert [s.sql for s in plan.statements] == ["GRANT USAGE ON `x`.* TO `app`@`localhost` WITH GRANT OPTION"]


def test_plan_limits_only_when_different() -> None:
    current = _existing(MARIADB, "mysql_native_password", b"", [], ssl_type="ANY", max_user_connections=5)
    same = u.plan_account(
        MARIADB, current, _desired(password=None, privileges=None, require_ssl=True, max_user_connections=5)
    )
    assert same.statements == []
    other = u.plan_account(
        MARIADB, current, _desired(password=None, privileges=None, require_ssl=False, max_user_connections=0)
    )
    assert [s.sql for s in other.statements] == [
        "ALTER USER `app`@`localhost` REQUIRE NONE WITH MAX_USER_CONNECTIONS 0"
    ]


def test_plan_rotate_mysql_retains_and_discards() -> None:
    stored = caching_sha2_hash("Old-Password-99#x").encode()
    current = _existing(MYSQL80, "caching_sha2_password", stored, [])
    current.host = "%"
    plan = u.plan_account(
        MYSQL80, current, _desired(host="%", plugin="caching_sha2_password", privileges=None, rotate="retain_current")
    )
    (stmt,) = plan.statements
    # a bound parameter: the host's % is escaped for PyMySQL's formatting
    assert stmt.sql == "ALTER USER `app`@`%%` IDENTIFIED BY %s RETAIN CURRENT PASSWORD"
    assert stmt.params == ("Xk7#pQ2v!Lm9@wZr",)
    assert stmt.redacted == "ALTER USER `app`@`%` IDENTIFIED BY '<redacted>' RETAIN CURRENT PASSWORD"
    current.has_secondary_password = True
    current.auth_string = caching_sha2_hash("Xk7#pQ2v!Lm9@wZr").encode()
    discard = u.plan_account(
        MYSQL80, current, _desired(host="%", plugin="caching_sha2_password", privileges=None, rotate="discard_old")
    )
    assert [s.sql for s in discard.statements] == ["ALTER USER `app`@`%` DISCARD OLD PASSWORD"]


@pytest.mark.parametrize("server", [MARIADB, ServerInfo("8.0.13")])
def test_rotate_refused_without_dual_passwords(server: ServerInfo) -> None:
    current = _existing(server, "mysql_native_password", b"", [])
    with pytest.raises(u.AccountError, match="dual password support"):
        u.plan_account(server, current, _desired(rotate="retain_current", privileges=None))


def test_plan_removal() -> None:
    current = _existing(MARIADB, "mysql_native_password", b"", MARIADB_GRANTS)
    plan = u.plan_removal(current)
    assert [s.sql for s in plan.statements] == ["DROP USER `app`@`localhost`"] and plan.removed
    assert u.plan_removal(u.Account("app", "localhost")).statements == []


def test_create_without_password_refused() -> None:
    with pytest.raises(u.AccountError, match="password is required to create app@localhost"):
        u.plan_account(MARIADB, u.Account("app", "localhost"), _desired(password=None))


@pytest.mark.parametrize(
    ("plugin", "server", "available", "needle"),
    [
        ("ed25519", MYSQL80, True, "only on MariaDB"),
        ("caching_sha2_password", MARIADB, True, "MySQL's"),
        ("mysql_native_password", MYSQL84, False, "disabled by default on MySQL 8.4"),
        ("ed25519", MARIADB, False, "INSTALL SONAME 'auth_ed25519'"),
    ],
)
def test_plugin_support(plugin: str, server: ServerInfo, available: bool, needle: str) -> None:
    with pytest.raises(u.AccountError, match=needle):
        u.check_plugin_supported(plugin, server, available)


def test_plugin_support_ok() -> None:
    u.check_plugin_supported("mysql_native_password", MYSQL80, True)
    u.check_plugin_supported("ed25519", MARIADB, True)


class FakeCursor:
    """Replays server answers (transcribed in MySQL's format) to the variable queries (no server involved)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.row: Any = None

    def execute(self, query: str, args: Any = None) -> None:
        answer = self.answers.get(query)
        if isinstance(answer, Exception):
            raise answer
        self.row = answer

    def fetchone(self) -> Any:
        return self.row


def test_server_default_plugin_from_server_answers() -> None:
    import pymysql

    assert u.server_default_plugin(FakeCursor({}), MARIADB) == "mysql_native_password"
    # MySQL 8.0.34: default_authentication_plugin exists (deprecated).
    cur = FakeCursor({"SELECT @@default_authentication_plugin": ("caching_sha2_password",)})
    assert u.server_default_plugin(cur, MYSQL80) == "caching_sha2_password"
    # MySQL 8.4: the variable is gone; authentication_policy is "*,," meaning the built-in default.
    unknown = pymysql.err.OperationalError(1193, "Unknown system variable 'default_authentication_plugin'")
    cur = FakeCursor({"SELECT @@default_authentication_plugin": unknown, "SELECT @@authentication_policy": ("*,,",)})
    assert u.server_default_plugin(cur, MYSQL84) == "caching_sha2_password"
    cur = FakeCursor({"SELECT @@default_authentication_plugin": ("mysql_native_password",)})
    assert u.server_default_plugin(cur, MYSQL80) == "mysql_native_password"


def test_resolve_plugin() -> None:
    existing = u.Account("a", "h", exists=True, plugin="ed25519")
    assert u.resolve_plugin("auto", existing, "mysql_native_password") == "ed25519"
    socket_auth = u.Account("a", "h", exists=True, plugin="unix_socket")
    assert u.resolve_plugin("auto", socket_auth, "mysql_native_password") == "mysql_native_password"
    assert u.resolve_plugin("ed25519", socket_auth, "mysql_native_password") == "ed25519"


def test_redact() -> None:
    assert u.redact("x secret y *HASH", ["secret", "*HASH", ""]) == "x <redacted> y <redacted>"


# SHOW PRIVILEGES recorded on MariaDB 10.11.19, and MySQL 8.0's transcribed (static + dynamic excerpt).
MARIADB_SHOW_PRIVILEGES = [
    "Alter", "Alter routine", "Create", "Create routine", "Create temporary tables", "Create view",
    "Create user", "Delete", "Delete history", "Drop", "Event", "Execute", "File", "Grant option", "Index",
    "Insert", "Lock tables", "Process", "Proxy", "References", "Reload", "Binlog admin", "Binlog monitor",
    "Binlog replay", "Replication master admin", "Replication slave admin", "Slave monitor",
    "Replication slave", "Select", "Show databases", "Show view", "Shutdown", "Super", "Trigger",
    "Create tablespace", "Update", "Set user", "Federated admin", "Connection admin", "Read_only admin", "Usage",
]  # fmt: skip
MYSQL80_SHOW_PRIVILEGES = [
    "Alter", "Alter routine", "Create", "Create role", "Create routine", "Create tablespace",
    "Create temporary tables", "Create user", "Create view", "Delete", "Drop", "Drop role", "Event",
    "Execute", "File", "Grant option", "Index", "Insert", "Lock tables", "Process", "Proxy", "References",
    "Reload", "Replication client", "Replication slave", "Select", "Show databases", "Show view",
    "Shutdown", "Super", "Trigger", "Update", "Usage", "BACKUP_ADMIN", "SHOW_ROUTINE", "SYSTEM_USER",
]  # fmt: skip


class ListCursor:
    def __init__(self, rows: list[str]) -> None:
        self.rows = [(r, "Server Admin", "comment") for r in rows]

    def execute(self, query: str, args: Any = None) -> None:
        assert query == "SHOW PRIVILEGES"

    def fetchall(self) -> list[tuple[str, str, str]]:
        return self.rows


def test_presets_only_use_privileges_the_servers_know() -> None:
    for server, rows in ((MARIADB, MARIADB_SHOW_PRIVILEGES), (MYSQL80, MYSQL80_SHOW_PRIVILEGES)):
        known = u.server_privileges(ListCursor(rows), server)
        for preset in u.PRESETS:
            wanted, _warnings = u.preset_privileges(preset, "shop", server, binlog_privilege=True)
            u.check_privileges_known(wanted, known)


def test_unknown_privilege_refused_before_any_change() -> None:
    known = u.server_privileges(ListCursor(MARIADB_SHOW_PRIVILEGES), MARIADB)
    assert "BINLOG MONITOR" in known and "DELETE HISTORY" in known
    with pytest.raises(u.AccountError, match="FOO BAR on 'shop.\\*': not a privilege of this server"):
        u.check_privileges_known({u.Level("shop", "*"): {"SELECT", "FOO BAR"}}, known)
    mysql = u.server_privileges(ListCursor(MYSQL80_SHOW_PRIVILEGES), MYSQL80)
    with pytest.raises(u.AccountError, match="SHOW_ROUTINE"):
        u.check_privileges_known({u.Level("*", "*"): {"SHOW_ROUTINE"}}, known)
    u.check_privileges_known({u.Level("*", "*"): {"SHOW_ROUTINE", "REPLICATION CLIENT"}}, mysql)


class RecordedCursor:
    """Answers the secure-installation queries with rows shaped like a MySQL 8.0 server's (no server here)."""

    ANSWERS = {
        "SELECT User, Host FROM mysql.user WHERE User = '' ORDER BY Host": [("", "%"), ("", "localhost")],
        "SELECT User, Host FROM mysql.user WHERE User = 'root' ORDER BY Host": [
            ("root", "%"),
            ("root", "127.0.0.1"),
            ("root", "db1.example.com"),
            ("root", "localhost"),
        ],
        "SELECT CURRENT_USER()": [("root@localhost",)],
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test'": [("test",)],
        "SELECT User, Host, Db, Grant_priv FROM mysql.db WHERE Db IN (%s, %s) ORDER BY User, Host, Db": [
            ("", "%", "test", "N"),
            ("dev", "localhost", "test\\_%", "N"),
        ],
        # No account defines a trigger, view, routine or event.
        **{query: [] for query in u.DEFINER_QUERIES},
    }

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = {**self.ANSWERS, **{self.QUERIES[k]: v for k, v in answers.items()}}
        self.rows: list[Any] = []

    QUERIES = {
        "root": "SELECT User, Host FROM mysql.user WHERE User = 'root' ORDER BY Host",
        "current": "SELECT CURRENT_USER()",
        "db": "SELECT User, Host, Db, Grant_priv FROM mysql.db WHERE Db IN (%s, %s) ORDER BY User, Host, Db",
    }

    def execute(self, query: str, args: Any = None) -> None:
        self.rows = list(self.answers[query])

    def fetchall(self) -> list[Any]:
        return self.rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None


class MariaDBRecordedCursor(RecordedCursor):
    """The same queries as a MariaDB 10.11 server gets them (roles, whose Host is '', left out)."""

    def execute(self, query: str, args: Any = None) -> None:
        super().execute(query.replace(" AND Host <> ''", ""), args)


def test_secure_installation_plan() -> None:
    plan = u.plan_secure_installation(RecordedCursor(), True, True, True, ["localhost", "127.0.0.1", "::1"], MYSQL80)
    assert [s.sql for s in plan.statements] == [
        "DROP USER ``@`%`",
        "DROP USER ``@`localhost`",
        "DROP USER `root`@`%`",
        "DROP USER `root`@`db1.example.com`",
        "DROP DATABASE `test`",
        "REVOKE ALL PRIVILEGES ON `test\\_%`.* FROM `dev`@`localhost`",
    ]
    assert plan.removed_users == ["@%", "@localhost", "root@%", "root@db1.example.com"]
    assert plan.revoked == {"dev@localhost": ["test\\_%.*"]}
    assert plan.warnings == []
    nothing = u.plan_secure_installation(RecordedCursor(), False, False, False, [], MYSQL80)
    assert nothing.statements == []
    with pytest.raises(u.AccountError, match="is not a host name"):
        u.plan_secure_installation(RecordedCursor(), False, False, True, ["bad host"], MYSQL80)


def test_secure_installation_root_hosts_case_insensitive() -> None:
    cursor = MariaDBRecordedCursor(root=[("root", "db1"), ("root", "localhost")])
    plan = u.plan_secure_installation(cursor, False, False, True, ["localhost", "DB1"], MARIADB)
    assert plan.statements == [], "root@db1 is the root_hosts entry DB1: the server stores host names lower case"


def test_secure_installation_spares_the_session_account() -> None:
    cursor = RecordedCursor(current=[("root@%",)])
    plan = u.plan_secure_installation(cursor, False, False, True, ["localhost"], MYSQL80)
    assert plan.removed_users == ["root@127.0.0.1", "root@db1.example.com"]
    assert "root@% was not dropped: it is the account this task is logged in as" in plan.warnings[0]


def test_secure_installation_roles_and_grant_option_mariadb() -> None:
    """A stock mariadb-install-db (10.11) grants test and test\\_% to the PUBLIC role, Host ''."""
    cursor = MariaDBRecordedCursor(
        db=[
            ("PUBLIC", "", "test", "N"),
            ("PUBLIC", "", "test\\_%", "N"),
            ("dev", "localhost", "test", "Y"),
            ("qa_role", "", "test\\_%", "Y"),
        ]
    )
    plan = u.plan_secure_installation(cursor, False, True, False, [], MARIADB)
    assert [s.sql for s in plan.statements] == [
        "DROP DATABASE `test`",
        "REVOKE ALL PRIVILEGES ON `test`.* FROM PUBLIC",
        "REVOKE ALL PRIVILEGES ON `test\\_%`.* FROM PUBLIC",
        "REVOKE ALL PRIVILEGES ON `test`.* FROM `dev`@`localhost`",
        "REVOKE GRANT OPTION ON `test`.* FROM `dev`@`localhost`",
        "REVOKE ALL PRIVILEGES ON `test\\_%`.* FROM `qa_role`",
        "REVOKE GRANT OPTION ON `test\\_%`.* FROM `qa_role`",
    ]
    assert plan.revoked == {"PUBLIC": ["test.*", "test\\_%.*"], "dev@localhost": ["test.*"], "qa_role": ["test\\_%.*"]}
    # A failure at the fourth statement: the three before it are what the result reports.
    partial = plan.applied(3)
    assert partial.dropped_databases == ["test"] and partial.revoked == {"PUBLIC": ["test.*", "test\\_%.*"]}


def test_rotate_with_plugin_change_warns() -> None:
    current = _existing(MYSQL80, "mysql_native_password", b"*14E65567ABDB5135D0CFD9A70B3032C179A49EE7", [])
    plan = u.plan_account(
        MYSQL80, current, _desired(plugin="caching_sha2_password", privileges=None, rotate="retain_current")
    )
    assert "RETAIN" not in plan.statements[0].sql and "old password stops working now" in plan.warnings[0]


# SHOW GRANTS recorded on MariaDB 10.11.19: a role with a default role, a column, a routine and a PROXY grant.
MARIADB_ROLE_GRANTS = [
    "GRANT `dba` TO `u5`@`localhost`",
    "GRANT `r2` TO `u5`@`localhost` WITH ADMIN OPTION",
    "GRANT USAGE ON *.* TO `u5`@`localhost` IDENTIFIED BY PASSWORD '*B69027D44F6E5EDC07F1AEAD1477967B16F28227'",
    "GRANT UPDATE (`b`) ON `d1`.`t` TO `u5`@`localhost`",
    "GRANT EXECUTE ON PROCEDURE `d1`.`p` TO `u5`@`localhost`",
    "GRANT PROXY ON `root`@`localhost` TO `u5`@`localhost`",
    "SET DEFAULT ROLE `dba` FOR `u5`@`localhost`",
]


def test_parse_roles_default_role_routines_and_proxies() -> None:
    grants = u.parse_show_grants(MARIADB_ROLE_GRANTS, MARIADB)
    assert grants.roles == ["dba", "r2"] and grants.role_sql == ["`dba`", "`r2`"]
    assert grants.default_roles == ["dba"]
    assert grants.routine_privileges == {"PROCEDURE `d1`.`p`": {"EXECUTE"}}
    assert grants.proxied == ["root@localhost"] and grants.proxies == 1
    assert grants.to_dict() == {"d1.t": ["UPDATE (`b`)"]}
    mysql = u.parse_show_grants(MYSQL84_APP, MYSQL84)
    assert mysql.role_sql == ["`app_role`@`%`"]
    assert mysql.routine_privileges == {"PROCEDURE `mutuapix`.`p`": {"EXECUTE", "ALTER ROUTINE"}}


def test_plan_revokes_roles_routines_proxies_and_columns() -> None:
    current = _existing(MARIADB, "mysql_native_password", b"", MARIADB_ROLE_GRANTS)
    wanted = {u.Level("d1", "*"): {"SELECT"}}
    plan = u.plan_account(MARIADB, current, _desired(password=None, privileges=wanted))
    assert [s.sql for s in plan.statements] == [
        "REVOKE `dba` FROM `app`@`localhost`",
        "REVOKE `r2` FROM `app`@`localhost`",
        "SET DEFAULT ROLE NONE FOR `app`@`localhost`",
        "REVOKE PROXY ON `root`@`localhost` FROM `app`@`localhost`",
        "REVOKE EXECUTE ON PROCEDURE `d1`.`p` FROM `app`@`localhost`",
        "GRANT SELECT ON `d1`.* TO `app`@`localhost`",
        "REVOKE UPDATE (`b`) ON `d1`.`t` FROM `app`@`localhost`",
    ]
    assert plan.revoked == {
        "roles": ["dba", "r2"],
        "default role": ["dba"],
        "PROXY": ["root@localhost"],
        "PROCEDURE d1.p": ["EXECUTE"],
        "d1.t": ["UPDATE (`b`)"],
    }
    # Grants left alone (privileges omitted): nothing about roles either.
    assert u.plan_account(MARIADB, current, _desired(password=None, privileges=None)).statements == []
    # MySQL: roles are accounts, the default role is cleared with ALTER USER.
    mysql = _existing(MYSQL84, "caching_sha2_password", b"", MYSQL84_APP)
    mysql.grants.default_roles = ["app_role@%"]
    sqls = [s.sql for s in u.plan_account(MYSQL84, mysql, _desired(password=None, privileges=None)).statements]
    assert sqls == []
    wanted = {u.Level("mutuapix", "*"): {"SELECT", "INSERT", "UPDATE", "DELETE"}}
    sqls = [s.sql for s in u.plan_account(MYSQL84, mysql, _desired(password=None, privileges=wanted)).statements]
    assert sqls == [
        "REVOKE `app_role`@`%` FROM `app`@`localhost`",
        "ALTER USER `app`@`localhost` DEFAULT ROLE NONE",
        "REVOKE ALTER ROUTINE, EXECUTE ON PROCEDURE `mutuapix`.`p` FROM `app`@`localhost`",
    ]


def test_diff_shows_roles_going() -> None:
    current = _existing(MARIADB, "mysql_native_password", b"", MARIADB_ROLE_GRANTS)
    before = u.snapshot(current)
    assert before["roles"] == ["dba", "r2"] and before["default_role"] == ["dba"]
    assert before["routine_grants"] == {"PROCEDURE `d1`.`p`": ["EXECUTE"]} and before["proxy_grants"] == [
        "root@localhost"
    ]
    desired = _desired(password=None, privileges={u.Level("d1", "*"): {"SELECT"}})
    after = u.after_snapshot(before, desired, u.plan_account(MARIADB, current, desired))
    assert not set(u.OTHER_GRANT_KEYS) & set(after)


@pytest.mark.parametrize(
    ("pattern", "schemas"),
    [
        ("%", ["mysql", "sys", "performance_schema", "information_schema"]),
        ("m%", ["mysql"]),
        ("_ysql", ["mysql"]),
        ("MySQL", ["mysql"]),
        ("s_s", ["sys"]),
        ("mysq\\l", ["mysql"]),
        ("my\\_sql", []),
        ("mutuapix\\_prod", []),
        ("\\%", []),
        ("x%", []),
        ("mysql\\", []),
    ],
)
def test_system_schemas_matched(pattern: str, schemas: list[str]) -> None:
    assert u.system_schemas_matched(pattern) == schemas


@pytest.mark.parametrize(
    "mapping", [{"%.*": ["ALL"]}, {"m%.*": ["SELECT"]}, {"_ysql.*": ["UPDATE"]}, {"mysql.global_priv": ["UPDATE"]}]
)
def test_mapping_reaching_system_schemas_is_global(mapping: dict[str, list[str]]) -> None:
    with pytest.raises(u.AccountError, match="matches the system schema mysql, .*allow_global_privileges=true"):
        u.explicit_privileges(mapping, MARIADB, False)
    assert u.explicit_privileges(mapping, MARIADB, True)


@pytest.mark.parametrize(("database", "needle"), [("*", "database '\\*' refused"), ("mysql", "system schema mysql")])
def test_preset_database_star_or_system_schema_refused(database: str, needle: str) -> None:
    params = {"privileges": "migrate", "database": database}
    with pytest.raises(u.AccountError, match=needle):
        u.desired_privileges(params, MARIADB)
    # A name with wildcard characters is escaped, so it only means itself.
    wanted, _warnings = u.desired_privileges({"privileges": "app", "database": "%"}, MARIADB)
    assert wanted == {u.Level("\\%", "*"): set(u.PRESET_APP)}


def test_hosts_are_lowercased() -> None:
    assert u.normalise_host("App1.Example.COM") == "app1.example.com"
    assert u.normalise_host("FE80::1") == "fe80::1"
    with pytest.raises(u.AccountError):
        u.normalise_host("a b")


def test_statements_record_their_effects_as_they_run() -> None:
    plan = u.plan_account(MARIADB, u.Account("app", "localhost"), _desired())
    result: dict[str, Any] = {"changed": False, "created": False, "password_changed": False, "statements": []}
    u.record_statement(result, plan.statements[0])
    assert result["changed"] and result["created"] and result["password_changed"]
    assert result["statements"] == [plan.statements[0].redacted]


def test_mysql_migrate_preset_shown_as_all_privileges_is_unchanged() -> None:
    """MySQL 8 prints its 18 database privileges, the migrate preset, as ALL PRIVILEGES
    (``DB_ACLS`` in sql/auth/auth_acls.h): re-running the preset must change nothing."""
    stored = caching_sha2_hash("Xk7#pQ2v!Lm9@wZr").encode()
    shown = ["GRANT USAGE ON *.* TO `app`@`localhost`", "GRANT ALL PRIVILEGES ON `shop`.* TO `app`@`localhost`"]
    current = _existing(MYSQL80, "caching_sha2_password", stored, shown)
    wanted, _warnings = u.preset_privileges("migrate", "shop", MYSQL80)
    plan = u.plan_account(MYSQL80, current, _desired(plugin="caching_sha2_password", privileges=wanted))
    assert plan.statements == [] and plan.revoked == {} and plan.granted == {}
    # MariaDB 10.11 has DELETE HISTORY besides: there the preset is not everything, ALL goes.
    current = _existing(MARIADB, "mysql_native_password", b"", shown)
    wanted, _warnings = u.preset_privileges("migrate", "shop", MARIADB)
    plan = u.plan_account(MARIADB, current, _desired(password=None, privileges=wanted))
    assert plan.statements[0].sql == "REVOKE ALL PRIVILEGES ON `shop`.* FROM `app`@`localhost`"


def test_table_level_all_privileges_mysql() -> None:
    table_privs = {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "REFERENCES", "INDEX", "ALTER"}
    table_privs |= {"CREATE VIEW", "SHOW VIEW", "TRIGGER"}
    shown = ["GRANT ALL PRIVILEGES ON `shop`.`t` TO `app`@`localhost`"]
    current = _existing(MYSQL80, "caching_sha2_password", b"", shown)
    wanted = {u.Level("shop", "t"): set(table_privs)}
    assert u.plan_account(MYSQL80, current, _desired(password=None, privileges=wanted)).statements == []
    # Asking for ALL PRIVILEGES and holding every privilege by name: nothing to do either.
    current = _existing(MYSQL80, "caching_sha2_password", b"", [f"GRANT {', '.join(table_privs)} ON `shop`.`t` TO x"])
    wanted = {u.Level("shop", "t"): {"ALL PRIVILEGES"}}
    assert u.plan_account(MYSQL80, current, _desired(password=None, privileges=wanted)).statements == []

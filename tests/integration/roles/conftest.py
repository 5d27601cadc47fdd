"""Fixtures for the roles and playbooks: a stand-in Laravel app on the private MariaDB, an S3 endpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config

from tests.integration.restore.helpers import table_checksums
from tests.support import datagen, fake_laravel
from tests.support.mariadb import MariaDB
from tests.support.runner import MODULE_PYTHON, ROOT, run_module, run_playbook
from tests.support.s3server import S3Server

PLAYBOOKS = ROOT / "playbooks"
S3_KEY_ID = "roles-test-key-id"
S3_APP_KEY = "roles-test-app-key-secret-0123456789"  # a test endpoint's key; must never show in output
GOOD = {"2026_11_28_000001_add_phone": fake_laravel.GOOD_MIGRATION}  # release r1's migrations


def write_client_cnf(server: MariaDB, path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f'[client]\nuser=root\npassword="{server.ROOT_PASSWORD}"\nsocket={server.socket}\n')
        # For the tests' own `mariadb` commands: MariaDB 11.4+ clients (Debian 13) demand TLS even over
        # a socket, which the test server does not offer. The modules read it too (as config_file):
        # over a socket they take no TLS either way.
        handle.write("[client-mariadb]\nskip-ssl\n")
    return path


def write_inventory(path: Path, groups: dict[str, dict[str, dict[str, Any]]]) -> Path:
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON},
            "children": {group: {"hosts": hosts} for group, hosts in groups.items()},
        }
    }
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


class App:
    """A Capistrano-style deploy root for the fake Laravel app, wired to one database."""

    def __init__(self, server: MariaDB, database: str, base: Path, existing: bool = False) -> None:
        self.server = server
        self.database = database
        self.base = base
        self.root = base / "app"
        self.predeploy = base / "predeploy"
        self.archives = base / "archives"
        if existing:  # a copy of a deploy root this class made (deployed_r1)
            self.cnf = base / "client.cnf"
            self.inventory = base / "inventory.yml"
            return
        self.cnf = write_client_cnf(server, base / "client.cnf")
        (self.root / "shared" / "storage").mkdir(parents=True)
        fake_laravel.write_env(self.root / "shared" / ".env", database, server.socket, "root", server.ROOT_PASSWORD)
        self.inventory = write_inventory(
            base / "inventory.yml",
            {
                "app": {
                    "web1": {
                        "rollback_deploy_root": str(self.root),
                        "rollback_database": database,
                        "rollback_backup_dir": str(self.predeploy),
                        "rollback_config_file": str(self.cnf),
                        "rollback_build_commands": ["php artisan config:cache", "php artisan route:cache"],
                    }
                }
            },
        )

    def release(self, release_id: str, migrations: dict[str, str] | None = None) -> Path:
        return fake_laravel.build_release(self.archives, release_id, migrations)

    def deploy(
        self, release_id: str, env: dict[str, str] | None = None, args: list[str] | None = None, **extra: Any
    ) -> subprocess.CompletedProcess[str]:
        extra_vars = {
            "rollback_release_id": release_id,
            "rollback_release_archive": str(self.archives / f"{release_id}.tar.gz"),
            **extra,
        }
        return run_playbook(PLAYBOOKS / "deploy.yml", self.inventory, extra_vars, args=args, env=env)

    def rollback(self, args: list[str] | None = None, **extra: Any) -> subprocess.CompletedProcess[str]:
        return run_playbook(PLAYBOOKS / "rollback.yml", self.inventory, extra, args=args)

    @property
    def current(self) -> str:
        return Path(os.readlink(self.root / "current")).name

    @property
    def in_maintenance(self) -> bool:
        return (self.root / "shared" / "storage" / "framework" / "down").exists()

    def artisan_log(self) -> list[tuple[str, str]]:
        """(release id, command) of every artisan call, oldest first."""
        log = self.root / "shared" / "storage" / "logs" / "artisan.log"
        if not log.exists():
            return []
        calls = []
        for line in log.read_text().splitlines():
            _stamp, path, command = line.split(" ", 2)
            calls.append((Path(path).name, command))
        return calls

    def schema(self) -> dict[str, str]:
        """SHOW CREATE of every table and view (AUTO_INCREMENT counters left out)."""
        conn = self.server.connect(self.database)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW FULL TABLES")
                result = {}
                for name, _kind in cur.fetchall():
                    cur.execute(f"SHOW CREATE TABLE `{name}`")
                    result[name] = re.sub(r" AUTO_INCREMENT=\d+", "", cur.fetchone()[1])
                return result
        finally:
            conn.close()

    def snapshot_manifest(self, dest: Path) -> dict[str, Any]:
        """A fresh backup's manifest: exact rows and data digests of the database as it is now."""
        result = run_module(
            "mysql_backup", {"database": self.database, "dest": str(dest), "config_file": str(self.cnf)}
        )
        assert not result.failed, result
        return json.loads(Path(result["manifest_path"]).read_text())

    def predeploy_manifest(self, release_id: str) -> dict[str, Any]:
        [manifest] = self.predeploy.glob(f"{self.database}-pre-deploy-{release_id}-*.manifest.json")
        return json.loads(manifest.read_text())


def table_digests(manifest: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {
        name: (entry["rows"], entry["data_digest"])
        for name, entry in manifest["tables"].items()
        if entry.get("kind", "table") == "table"
    }


class DeployedR1:
    """One real deploy of release r1 (GOOD migrations) per pytest worker, to start tests from.

    Most deploy tests begin by deploying r1 and only then test what they are about; that first deploy
    was a quarter of the suite's time. The tests marked ``deployed_r1`` start instead from a copy of
    this one: the deploy root (symbolic links, modes and times kept) at the same path, and the
    database dumped right after the deploy and loaded again under the same name. The path and the
    name are this worker's own, and a worker runs one test at a time.
    """

    def __init__(self, server: MariaDB, base: Path) -> None:
        self.server = server
        self.base = base / "app-on-r1"
        self.pristine = base / "app-on-r1.pristine"
        self.dump = base / "app-on-r1.sql"
        self.database = "rl_r1_" + uuid.uuid4().hex[:8]
        datagen.create_database(server, self.database, 400_000)
        self.base.mkdir()
        app = App(server, self.database, self.base)
        app.release("r1", GOOD)
        deployed = app.deploy("r1")
        assert deployed.returncode == 0, deployed.stdout[-3000:]
        dump = [*server.client_args(program="mariadb-dump"), "--hex-blob", "--routines", "--events", "--triggers"]
        with self.dump.open("wb") as out:
            subprocess.run([*dump, self.database], stdout=out, check=True, timeout=120)
        self.deployed = (app.schema(), table_checksums(server, self.database))
        shutil.copytree(self.base, self.pristine, symlinks=True)

    def restore(self) -> App:
        """The deploy root and the database as r1's deploy left them (checked: schema and table checksums)."""
        if self.base.exists():
            shutil.rmtree(self.base)  # fails naming what it cannot remove (a test's immutable file, say)
        shutil.copytree(self.pristine, self.base, symlinks=True)
        self.server.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        self.server.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        with self.dump.open("rb") as source:
            subprocess.run(self.server.client_args(self.database), stdin=source, check=True, timeout=120)
        app = App(self.server, self.database, self.base, existing=True)
        assert (app.schema(), table_checksums(self.server, self.database)) == self.deployed, "r1's copy differs"
        return app


@pytest.fixture(scope="session")
def deployed_r1(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> DeployedR1:
    return DeployedR1(mariadb, tmp_path_factory.mktemp("deployed"))


@pytest.fixture
def app(mariadb: MariaDB, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[App]:
    """The stand-in app on a fresh database; on r1 already for a test marked ``deployed_r1``."""
    if request.node.get_closest_marker("deployed_r1"):
        snapshot: DeployedR1 = request.getfixturevalue("deployed_r1")
        database = snapshot.database
        made = snapshot.restore()
    else:
        database = "rl_" + uuid.uuid4().hex[:10]
        datagen.create_database(mariadb, database, 400_000)
        made = App(mariadb, database, tmp_path)
    try:
        yield made
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS `{database}`")
        for (name,) in mariadb.execute("SHOW DATABASES LIKE %s", (f"{database}%",)):
            mariadb.execute(f"DROP DATABASE IF EXISTS `{name}`")


class S3:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_APP_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = "roles-" + uuid.uuid4().hex[:12]
        self.client.create_bucket(Bucket=name)
        self.client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def keys(self, bucket: str) -> list[str]:
        return sorted(obj["Key"] for obj in self.client.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1, stopped at the end of the session."""
    with S3Server() as server:
        yield S3(server.url)


@pytest.fixture
def backup_db(mariadb: MariaDB) -> Iterator[str]:
    database = "bk_" + uuid.uuid4().hex[:10]
    datagen.create_database(mariadb, database, 300_000)
    try:
        yield database
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS `{database}`")

"""A logical backup (pg_dump) restored into a *new* PostgreSQL cluster
(issue 16 §4). The log's tx_ids come from the old cluster and are ahead of
the new one's transaction counter: the server refuses to start, `paca events
renumber` rewrites them keeping the log's order, and the restored server
serves the same data, verifies, and orders new writes after the old ones."""

import os
import shutil
import subprocess
import tempfile
import urllib.parse

import requests

from conftest import ADMIN_DB_URL, PACA_BIN, PacaServer, _make_server, _teardown_server, ok, psql
from test_10_embedded import EMBEDDED_START_TIMEOUT, _stop_stray_postgres
from test_2_support import P, create_task, patch_task, statuses_of


def _burn_xids_past(target: int) -> None:
    """Make sure the shared cluster's transaction counter is past `target`,
    so what is written next is ahead of a brand-new cluster (CI may run this
    on a young cluster)."""
    current = int(psql("SELECT pg_current_xact_id()").strip())
    if current < target:
        script = "".join("SELECT pg_current_xact_id();\n" for _ in range(target - current))
        subprocess.run(["psql", ADMIN_DB_URL, "-qAt"], input=script, capture_output=True, text=True,
                       timeout=300, check=True)


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([PACA_BIN, *args], env=env, capture_output=True, text=True, timeout=300)


def test_pg_dump_into_a_new_cluster_renumber_and_serve(tmp_path):
    _burn_xids_past(20_000)
    source, source_db = _make_server("dump-src")
    data_dir = tempfile.mkdtemp(prefix="paca-restore-", dir="/tmp")
    os.chmod(data_dir, 0o755)  # the postgres OS user must reach the new cluster
    # The new cluster: an embedded one (initdb in data_dir), kept running by
    # a server on its own `paca` database.
    host = PacaServer("new-cluster", None, data_dir)
    restored = None
    try:
        source.start()
        adm = source.admin()
        pid = ok(adm.post("/projects", json={"name": "Before the dump"}), 201)["id"]
        tasks = [create_task(adm, pid, f"Dumped {i}") for i in range(3)]
        done = statuses_of(adm, pid)["Done"]
        patch_task(adm, pid, tasks[0]["id"], {"status_id": done["id"]})
        routes = ["/projects", P(pid), P(pid, "/tasks"), P(pid, f"/tasks/{tasks[0]['id']}"),
                  P(pid, f"/tasks/{tasks[0]['id']}/activities"), P(pid, "/members")]
        before = {r: ok(adm.get(r)) for r in routes}
        source.stop()
        dump = tmp_path / "paca.dump"
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), source.database_url], check=True, timeout=300)

        host.start(timeout=EMBEDDED_START_TIMEOUT)
        socket_dir = os.path.join(data_dir, "pg")
        new_admin = f"postgresql://postgres@localhost/postgres?host={urllib.parse.quote(socket_dir, safe='')}"
        psql('CREATE DATABASE "restored"', new_admin)
        url = new_admin.replace("/postgres?", "/restored?")
        res = subprocess.run(["pg_restore", "--no-owner", "-d", url, str(dump)], capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        newest = int(psql("SELECT max(tx_id)::text FROM events", url).strip())
        counter = int(psql("SELECT pg_current_xact_id()", url).strip())
        assert newest > counter, (newest, counter)

        # As restored, the server refuses (new events would sort first) and says what to do.
        restored = PacaServer("restored", url, tempfile.mkdtemp(prefix="paca-data-restored-"),
                              admin_password=source.admin_password, jwt_secret=source.jwt_secret)
        try:
            restored.start(timeout=30)
            raise AssertionError("the server started on a log ahead of its cluster")
        except AssertionError as refused:
            assert "paca events renumber" in str(refused), str(refused)

        order = "SELECT string_agg(global_position::text, ',' ORDER BY tx_id, global_position) FROM events"
        order_before = psql(order, url)
        res = _cli(url, "events", "renumber")
        assert res.returncode == 0, res.stdout + res.stderr
        assert psql(order, url) == order_before, "renumbering changed the log's order"
        assert int(psql("SELECT max(tx_id)::text FROM events", url).strip()) < counter

        restored.start()
        adm2 = restored.admin()
        for route, body in before.items():
            assert ok(adm2.get(route)) == body, route
        for check in (("projections", "verify"), ("events", "verify")):
            res = _cli(url, *check)
            assert res.returncode == 0, res.stdout + res.stderr
        # New writes come after the old ones in the log's order and are read back.
        t = create_task(adm2, pid, "After the restore")
        assert t["task_number"] == 4, t
        last = psql("SELECT payload->>'title' FROM events ORDER BY tx_id DESC, global_position DESC LIMIT 1",
                    url).strip()
        assert last == "After the restore", last
        assert any(x["id"] == t["id"] for x in ok(adm2.get(P(pid, "/tasks")))["items"])
        # A second renumber while a server runs is refused (the log is in use).
        res = _cli(url, "events", "renumber")
        assert res.returncode != 0 and "stop every server" in res.stderr, res.stdout + res.stderr
    finally:
        if restored is not None:
            _teardown_server(restored, None)
        _teardown_server(source, source_db)
        host.close()
        _stop_stray_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)

"""Fault tests (issue 16 §3), bounded and on loopback: the server killed with
SIGKILL under a mixed write load loses nothing it acknowledged and records
nothing it refused; PostgreSQL restarted under load makes requests fail fast
with 503 and the server recovers, subscriptions included, without a
restart."""

import glob
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse

import requests

from conftest import PACA_BIN, PacaServer, _make_server, _teardown_server, ok, psql
from test_2_support import P, add_member, blocks, create_task


def _writer(base: str, token: str, pid: str, stop: threading.Event, log: list, seed: int) -> None:
    """Creates tasks, renames its own, comments; logs (kind, key, value, outcome)."""
    rnd = random.Random(seed)
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    mine: list[str] = []
    n = 0
    while not stop.is_set():
        n += 1
        kind = rnd.choice(["create", "create", "rename", "comment"]) if mine else "create"
        value = f"w{seed}-{n}-{rnd.randrange(10**9)}"
        # The task a rename or comment is for is known before the request: if
        # the answer is lost, that task may or may not have the new value.
        key = None if kind == "create" else rnd.choice(mine)
        try:
            if kind == "create":
                r = s.post(f"{base}/api/v1/projects/{pid}/tasks", json={"title": value}, timeout=10)
                key = r.json()["data"]["id"] if r.status_code == 201 else None
                if key:
                    mine.append(key)
                log.append(("create", key, value, r.status_code))
            elif kind == "rename":
                r = s.patch(f"{base}/api/v1/projects/{pid}/tasks/{key}", json={"title": value}, timeout=10)
                log.append(("rename", key, value, r.status_code))
            else:
                r = s.post(f"{base}/api/v1/projects/{pid}/tasks/{key}/activities/comments",
                           json={"content": blocks(value)}, timeout=10)
                log.append(("comment", key, value, r.status_code))
        except (requests.RequestException, ValueError, KeyError):
            log.append((kind, key, value, None))  # outcome unknown: the server died mid-request
            return


def test_kill_9_under_a_mixed_write_load_loses_nothing_acknowledged():
    srv, dbname = _make_server("kill9")
    try:
        srv.start()
        adm = srv.admin()
        pid = ok(adm.post("/projects", json={"name": "Kill nine"}), 201)["id"]
        token = adm.access_token
        log: list = []
        for trial in range(10):
            stop = threading.Event()
            threads = [threading.Thread(target=_writer, args=(srv.base, token, pid, stop, log, trial * 10 + w))
                       for w in range(4)]
            for t in threads:
                t.start()
            time.sleep(random.uniform(0.3, 1.2))
            srv.proc.kill()  # SIGKILL, mid-load
            srv.proc.wait(timeout=10)
            stop.set()
            for t in threads:
                t.join(timeout=15)
            srv.start()
            token = srv.admin().access_token

        acked = [e for e in log if e[3] is not None and 200 <= e[3] < 300]
        refused = [e for e in log if e[3] is not None and e[3] >= 300]
        assert len(acked) > 40, f"too little load to mean anything: {len(acked)} acknowledged writes"
        adm = srv.admin()
        tasks = {}
        # Every acknowledged creation is there.
        for kind, key, value, _ in acked:
            if kind == "create":
                r = adm.get(P(pid, f"/tasks/{key}"))
                assert r.status_code == 200, f"acknowledged task {value} ({key}) is gone: {r.text}"
                tasks[key] = r.json()["data"]
        # A task's title is its last acknowledged one, or a later attempt whose
        # answer was lost with the server.
        attempts: dict[str, list] = {}
        for kind, key, value, status in log:
            if kind in ("create", "rename") and key:
                attempts.setdefault(key, []).append((value, status))
        for key, tries in attempts.items():
            last_ok = max(i for i, (_, st) in enumerate(tries) if st is not None and 200 <= st < 300)
            allowed = {v for v, _ in tries[last_ok:]}
            assert tasks[key]["title"] in allowed, (key, tasks[key]["title"], tries)
        # Every acknowledged comment is in its task's activity.
        for kind, key, value, _ in acked:
            if kind == "comment":
                feed = ok(adm.get(P(pid, f"/tasks/{key}/activities")))
                assert value in str(feed), f"acknowledged comment {value} is gone"
        # Nothing refused with an answer left an event behind.
        for kind, key, value, status in refused:
            n = psql(f"SELECT count(*) FROM events WHERE payload::text LIKE '%{value}%'", srv.database_url)
            assert n.strip() == "0", (kind, value, status)
        env = {**os.environ, "DATABASE_URL": srv.database_url}
        res = subprocess.run([PACA_BIN, "projections", "verify"], env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        _teardown_server(srv, dbname)


# --------------------------------------------------------------------------- PostgreSQL restart
def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"{name} not installed"
    return found[-1]


def _as_postgres(cmd: list) -> list:
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


class Cluster:
    """A private PostgreSQL cluster (Unix socket only) this test may restart."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="paca-pgfault-", dir="/tmp")
        os.chmod(self.dir, 0o777)
        self.data = os.path.join(self.dir, "data")
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust",
                                     "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
        self.url = (f"postgresql://postgres@localhost/postgres?host={urllib.parse.quote(self.dir, safe='')}")

    def pg_ctl(self, *args: str) -> None:
        opts = f"-c listen_addresses='' -c unix_socket_directories='{self.dir}' -c max_connections=60"
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", self.data, "-o", opts, "-w", "-t", "60", *args]),
                       check=True, capture_output=True, timeout=120)

    def start(self):
        self.pg_ctl("start", "-l", os.path.join(self.dir, "log"))

    def stop(self):
        self.pg_ctl("stop", "-m", "fast")

    def close(self):
        try:
            self.pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def test_postgresql_restart_under_load_fails_fast_and_recovers():
    cluster = Cluster()
    srv = None
    try:
        cluster.start()
        srv = PacaServer("pgfault", cluster.url, tempfile.mkdtemp(prefix="paca-data-pgfault-"))
        srv.start()
        adm = srv.admin()
        pid = ok(adm.post("/projects", json={"name": "Restarted"}), 201)["id"]
        from conftest import create_user
        bob = create_user(srv, adm, prefix="bob")
        add_member(adm, pid, bob.id)
        task = create_task(adm, pid, "Survives")

        stop = threading.Event()
        results: list = []  # (started, elapsed, status, error_code)
        token = adm.access_token

        def load():
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {token}"
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = s.post(f"{srv.base}/api/v1/projects/{pid}/tasks", json={"title": "under load"}, timeout=30)
                    code = r.json().get("error_code") if r.status_code >= 400 else None
                    results.append((t0, time.monotonic() - t0, r.status_code, code, r.headers.get("Retry-After")))
                except requests.RequestException as e:
                    results.append((t0, time.monotonic() - t0, None, repr(e), None))
                time.sleep(0.05)

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        down_at = time.monotonic()
        cluster.stop()
        time.sleep(8.0)
        cluster.start()
        up_at = time.monotonic()
        # Recovers without a restart of the server.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(st == 201 and t0 > up_at for t0, _, st, _, _ in results):
                break
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(timeout=40)
        assert srv.proc.poll() is None, "the server died with PostgreSQL"
        during = [r for r in results if down_at + 0.5 < r[0] < up_at - 0.5]
        assert during, "no request was made while PostgreSQL was down"
        for t0, elapsed, status, code, retry in during:
            assert status == 503 and code == "DATABASE_UNAVAILABLE", (status, code)
            assert retry, "a 503 says when to retry"
            assert elapsed < 7.0, f"a request hung {elapsed:.1f}s while PostgreSQL was down"
        assert any(st == 201 and t0 > up_at for t0, _, st, _, _ in results), "no write succeeded after the restart"
        assert all(st != 500 for _, _, st, _, _ in results), [r for r in results if r[2] == 500][:3]

        # Subscriptions resumed from their checkpoints: a mention notifies.
        ok(adm.post(P(pid, f"/tasks/{task['id']}/activities/comments"),
                    json={"content": blocks(f"after the restart @{bob.username}")}), 201)
        deadline = time.monotonic() + 20
        while True:
            items = ok(bob.client.get("/users/me/notifications"))
            items = items.get("items", items) if isinstance(items, dict) else items
            if any("mention" in str(n.get("type", "")) for n in items):
                break
            assert time.monotonic() < deadline, "notifications did not resume after the restart"
            time.sleep(0.3)
        env = {**os.environ, "DATABASE_URL": cluster.url}
        res = subprocess.run([PACA_BIN, "projections", "verify"], env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        if srv is not None:
            _teardown_server(srv, None)
        cluster.close()

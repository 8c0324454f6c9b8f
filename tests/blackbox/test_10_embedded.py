"""Embedded mode: no DATABASE_URL, the server runs its own PostgreSQL in PACA_DATA_DIR."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import PacaServer, ok

EMBEDDED_START_TIMEOUT = 120  # first start runs initdb


def _postmasters(data_dir):
    """(pid file, pid) of every PostgreSQL whose postmaster.pid lives under data_dir and is alive."""
    out = []
    for pidfile in glob.glob(os.path.join(data_dir, "**", "postmaster.pid"), recursive=True):
        try:
            with open(pidfile) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"postgres" in cmd:
            out.append((pidfile, pid))
    return out


def _stop_stray_postgres(data_dir):
    for pidfile, pid in _postmasters(data_dir):
        pgdata = os.path.dirname(pidfile)
        pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if pg_ctl:
            cmd = [pg_ctl[-1], "-D", pgdata, "stop", "-m", "immediate"]
            if os.geteuid() == 0:
                cmd = ["runuser", "-u", "postgres", "--"] + cmd
            subprocess.run(cmd, capture_output=True, timeout=30)
        try:
            os.kill(pid, 0)
            os.kill(pid, signal.SIGQUIT)
        except OSError:
            pass


@pytest.fixture
def embedded_server():
    data_dir = tempfile.mkdtemp(prefix="paca-emb-", dir="/tmp")
    os.chmod(data_dir, 0o755)  # the postgres OS user must be able to traverse it
    srv = PacaServer("embedded", None, data_dir)
    try:
        yield srv
    finally:
        try:
            if srv.proc is not None and srv.proc.poll() is None:
                srv.stop()
        finally:
            srv.close()
            _stop_stray_postgres(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)
            shutil.rmtree(srv.log_dir, ignore_errors=True)


def test_embedded_mode_start_login_create_restart(embedded_server):
    srv = embedded_server
    data_dir = srv.data_dir
    assert "DATABASE_URL" not in srv.env()

    srv.start(timeout=EMBEDDED_START_TIMEOUT)
    r = requests.get(srv.url("/api/healthz"), timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}

    admin = srv.login("admin", srv.admin_password)
    me = admin.me()
    assert me["username"] == "admin" and me["role"] == "SUPER_ADMIN"
    p = ok(admin.post("/projects", json={"name": "Embedded Project", "description": "in the data dir"}), 201)
    assert p["task_id_prefix"] == "EP"

    srv.stop()  # asserts exit within 10 s of SIGTERM
    # the embedded PostgreSQL goes down with the server
    deadline = time.monotonic() + 10
    while _postmasters(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postmasters(data_dir), "embedded PostgreSQL still running after the server exited"

    srv.start(timeout=EMBEDDED_START_TIMEOUT)
    admin = srv.login("admin", srv.admin_password)
    assert ok(admin.get(f"/projects/{p['id']}")) == p
    listed = ok(admin.get("/projects"))
    assert [x["id"] for x in listed["items"]] == [p["id"]] and listed["total"] == 1
    assert admin.me()["id"] == me["id"]
    srv.stop()

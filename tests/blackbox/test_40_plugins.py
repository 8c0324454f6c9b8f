"""WASM plugins (seed pages 07, 13, 14, 20; PLUGIN-ABI.md): install from a
directory, routes behind their middleware, every host function, a subscribed
event after a REST change, hostile plugins contained, catalog install and
upgrade with sha256 checks (a bad checksum keeps the old version serving),
uninstall.

The plugins are real WASI reactor modules written in C (tests/plugins/),
built by scripts/test.sh (tests/plugins/build.sh) into target/test-plugins.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import ROOT, _make_server, _teardown_server, create_user, describe, err, ok, unique

PLUGINS = Path(os.environ.get("PACA_TEST_PLUGINS") or ROOT / "target" / "test-plugins")
PROBE = "com.test.probe"
HOSTILE = "com.test.hostile"


def built(name: str) -> Path:
    path = PLUGINS / name
    assert (path / "backend.wasm").is_file(), f"{path} missing: run tests/plugins/build.sh (scripts/test.sh does)"
    return path


def wait_for(fn, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def install_dir(server, path: Path) -> None:
    res = server.cli("plugins", "install", str(path))
    assert res.returncode == 0, f"paca plugins install failed:\n{res.stdout}\n{res.stderr}"


def plugin_get(client, name, sub, **kw):
    return client.get(f"/plugins/{name}/{sub}", **kw)


def wait_loaded(server, name):
    c = server.client()
    wait_for(lambda: plugin_get(c, name, "ping").status_code == 200 or
             plugin_get(c, name, "steal").status_code == 200, what=f"{name} to load")


def events_of(server, event_type: str) -> list[dict]:
    res = server.cli("events", "tail", "--json", "--type", event_type, "-n", "50")
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def psrv():
    """A server for the plugin tests: small CPU and memory limits, a config key."""
    srv, dbname = _make_server(
        "plugins",
        extra_env={
            "PLUGINS_CPU_BUDGET": "300000000",
            "PLUGINS_MEMORY_PAGES": "256",
            "PLUGINS_CALL_TIMEOUT": "5s",
            "PACA_PLUGIN_CONFIG_GREETING": "hello",
        },
    )
    try:
        srv.start()
        install_dir(srv, built("probe"))
        install_dir(srv, built("hostile"))
        wait_loaded(srv, PROBE)
        wait_loaded(srv, HOSTILE)
        yield srv
    finally:
        _teardown_server(srv, dbname)


@pytest.fixture(scope="module")
def padmin(psrv):
    return psrv.admin()


@pytest.fixture(scope="module")
def project(padmin):
    p = ok(padmin.post("/projects", json={"name": unique("Plug "), "description": "plugins"}), 201)
    task = ok(padmin.post(f"/projects/{p['id']}/tasks", json={"title": "Probe me"}), 201)
    return p, task


# --------------------------------------------------------------------------- install and routes
def test_installed_plugin_is_listed_and_served(psrv, padmin):
    plugins = ok(psrv.client().get("/plugins"))["plugins"]
    probe = next(p for p in plugins if p["name"] == PROBE)
    assert probe["version"] == "1.0.0" and probe["enabled"] is True
    assert probe["manifest"]["id"] == PROBE and probe["manifest"]["backend"]["eventSubscriptions"] == ["task.created"]
    assert probe["id"] and probe["installed_at"] and probe["updated_at"]
    # A public route, served by the guest with its own response headers.
    r = plugin_get(psrv.client(), PROBE, "ping")
    assert r.status_code == 200 and r.json() == {"pong": True, "version": "1.0.0"}, describe(r)
    assert r.headers.get("X-Plugin") == "yes"
    # The frontend bundle is served under /plugins/<name>/…, nothing outside it.
    r = requests.get(psrv.base + f"/plugins/{PROBE}/assets/remoteEntry.js", timeout=10)
    assert r.status_code == 200 and "export default" in r.text
    assert "javascript" in r.headers["Content-Type"]
    for bad in [f"/plugins/{PROBE}/%2e%2e/%2e%2e/plugin.json", f"/plugins/{PROBE}/backend.wasm",
                "/plugins/..%2Fbackend/x", f"/plugins/{PROBE}/assets/%2e%2e%2f%2e%2e%2fplugin.json"]:
        r = requests.get(psrv.base + bad, timeout=10)
        assert r.status_code == 404, bad + describe(r)
    # The lifecycle is in the log, attributed to the CLI.
    installed = [e for e in events_of(psrv, "plugin.installed") if e["payload"]["name"] == PROBE]
    assert installed and installed[0]["payload"]["source"] == "directory"


def test_routes_run_their_middleware(psrv, padmin, project):
    p, _ = project
    anon = psrv.client()
    err(plugin_get(anon, PROBE, "whoami"), 401, "AUTH_MISSING_TOKEN")
    err(plugin_get(psrv.client(Authorization="Bearer nope"), PROBE, "whoami"), 401)
    r = plugin_get(padmin, PROBE, "whoami", headers={"X-Custom": "v1"})
    assert r.status_code == 200, describe(r)
    body = r.json()
    assert body["identity"]["user_id"] == padmin.me()["id"]
    headers = {k.lower(): v for k, v in body["headers"].items()}
    assert headers.get("x-custom") == "v1"
    # Credentials never reach the plugin.
    assert "cookie" not in headers and "authorization" not in headers
    assert body["method"] == "GET"
    # Default chain on a :projectId route: projects.read on that project.
    err(anon.get(f"/plugins/{PROBE}/projects/{p['id']}/public-info"), 401)
    r = padmin.get(f"/plugins/{PROBE}/projects/{p['id']}/public-info")
    assert r.status_code == 200 and r.json()["name"] == p["name"], describe(r)
    # A route the manifest does not declare: 404 without entering the guest.
    err(padmin.get(f"/plugins/{HOSTILE}/secret"), 404, "PLUGIN_ROUTE_NOT_FOUND")
    err(padmin.post(f"/plugins/{PROBE}/ping"), 404, "PLUGIN_ROUTE_NOT_FOUND")
    err(padmin.get("/plugins/com.nobody.here/ping"), 404, "PLUGIN_NOT_FOUND")


def test_every_host_function(psrv, padmin, project):
    p, task = project
    user = create_user(psrv, padmin)
    outsider = create_user(psrv, padmin)
    roles = {r["role_name"]: r for r in ok(padmin.get(f"/projects/{p['id']}/roles"))}
    ok(padmin.post(f"/projects/{p['id']}/members", json={"user_id": user.id, "project_role_id": roles["Viewer"]["id"]}), 201)
    url = f"/plugins/{PROBE}/projects/{p['id']}/exercise"
    # requirePermissions (project scope): a non-member is refused before the guest runs.
    err(outsider.client.post(url, json={"task_id": task["id"]}), 403, "FORBIDDEN")
    r = user.client.post(url, json={"task_id": task["id"]})
    assert r.status_code == 200, describe(r)
    x = r.json()
    assert x["identity"]["project_id"] == p["id"] and x["identity"]["user_id"] == user.id
    assert x["identity"]["caller_id"] and x["identity"]["caller_role"] == "Viewer"
    assert x["body"] == {"task_id": task["id"]}
    assert x["project"]["id"] == p["id"] and x["project"]["task_id_prefix"] == p["task_id_prefix"]
    assert [t["id"] for t in x["tasks"]] == [task["id"]]
    assert x["task"]["title"] == "Probe me" and x["task"]["project_id"] == p["id"]
    assert {m["username"] for m in x["members"]} >= {user.username}
    assert x["can_read_tasks"] == 1 and x["can_delete_users"] == 0
    assert x["config"] == "hello" and x["config_not_allowed"] == ""
    assert x["settings"]["brand_name"]
    assert (x["storage_set"], x["storage_get"], x["storage_delete"], x["storage_after_delete"]) == (1, "v1", 1, "")
    assert (x["cache_set"], x["cache_get"], x["cache_delete"], x["cache_after_delete"]) == (1, "cached", 1, "")
    assert x["db_exec_error"] == "" and x["db_exec_rows"] == 1
    assert x["db_query2"]["columns"] == ["body", "n"] and x["db_query2"]["rows"][0][0] == "from probe"
    assert x["db_query"] == {"columns": ["one"], "rows": [[1]]}
    assert "no_such_table" in x["db_error"]
    assert x["event_subscribe"] == 1 and x["event_emit"] == 1
    assert x["event_emit_core_topic"] == 0, "a plugin must not forge core events"
    assert x["activity_record"] == 1 and x["initialised"] == 1
    # Its effects are events attributed to the plugin and the calling user.
    emitted = events_of(psrv, "probe.exercised")
    assert emitted, "event_emit appended nothing"
    md = emitted[-1]["metadata"]
    assert md["actor"]["kind"] == "plugin" and md["actor"]["user_id"] == user.id
    assert md["actor"]["member_id"] == x["identity"]["caller_id"] and md["extra"]["plugin"] == PROBE
    assert emitted[-1]["project_id"] == p["id"]
    activity = events_of(psrv, "plugin.activity_recorded")[-1]
    assert activity["payload"]["task_id"] == task["id"] and activity["payload"]["content"] == {"text": "hi"}
    assert activity["metadata"]["actor"]["kind"] == "plugin"
    # ...and an entry on the task's activity feed, by the calling user.
    feed = ok(padmin.get(f"/projects/{p['id']}/tasks/{task['id']}/activities"))
    items = feed["items"] if isinstance(feed, dict) else feed
    entry = [a for a in items if a.get("id") == activity["event_id"]]
    assert entry, items
    assert entry[0]["activity_type"] == "probe.note", entry
    assert not events_of(psrv, "task.deleted"), "the forged core topic reached the log"
    # The plugin's stdout/log lines go to the server log under its name.
    assert "warn line" in psrv.log_tail(400) and PROBE in psrv.log_tail(400)


def test_subscribed_event_arrives_after_a_rest_change(psrv, padmin, project):
    p, _ = project
    task = ok(padmin.post(f"/projects/{p['id']}/tasks", json={"title": unique("Event ")}), 201)

    def delivered():
        r = plugin_get(psrv.client(), PROBE, "events")
        assert r.status_code == 200, describe(r)
        rows = r.json().get("rows") or []
        return [row for row in rows if row[0] == "task.created" and row[1].get("task_id") == task["id"]]

    rows = wait_for(delivered, what="task.created delivered to HandleEvent")
    assert rows[0][1]["project_id"] == p["id"] and rows[0][1]["title"] == task["title"]
    # The delivery is a checkpointed subscription with visible lag.
    res = psrv.cli("projections", "status")
    assert res.returncode == 0 and f"plugin:{PROBE}" in res.stdout, res.stdout + res.stderr


# --------------------------------------------------------------------------- hostile plugins
def test_hostile_plugin_is_contained(psrv, padmin):
    c = psrv.client()
    # An endless loop is stopped by the CPU budget while other requests are served.
    with ThreadPoolExecutor(max_workers=1) as pool:
        loop = pool.submit(plugin_get, c, HOSTILE, "loop", timeout=30)
        started = time.monotonic()
        while not loop.done() and time.monotonic() - started < 20:
            r = plugin_get(c, PROBE, "ping", timeout=5)
            assert r.status_code == 200, describe(r)
            assert requests.get(psrv.url("/api/healthz"), timeout=5).status_code == 200
            time.sleep(0.1)
        body = err(loop.result(), 500, "PLUGIN_EXECUTION_ERROR")
        assert "CPU budget" in body["error"]
    # A memory bomb hits the cap (256 pages = 16 MiB) inside the guest.
    r = plugin_get(c, HOSTILE, "bomb", timeout=30)
    assert r.status_code == 200, describe(r)
    assert r.json()["allocated_mib"] < 16
    # SQL outside its own schema is refused by PostgreSQL.
    for route, needle in [("steal", "does not exist"), ("steal-rm", "permission denied"),
                          ("steal-secrets", "permission denied"), ("drop", "must be owner"),
                          ("escalate", "permission denied")]:
        r = plugin_get(c, HOSTILE, route)
        assert r.status_code == 200, describe(r)
        out = r.json()
        assert out["result"] is None and needle in out["error"], f"{route}: {out}"
    # The probe's schema survived the DROP attempt.
    assert plugin_get(c, PROBE, "events").status_code == 200
    # fetch to private addresses or hosts off the allowlist is refused.
    for route, needle in [("fetch-local", "not allowed"), ("fetch-metadata", "not allowed"),
                          ("fetch-other", "allowedOutboundDomains")]:
        out = plugin_get(c, HOSTILE, route).json()
        assert out["status"] == 0 and needle in out["error"], f"{route}: {out}"
    assert requests.get(psrv.url("/api/healthz"), timeout=5).status_code == 200


def test_admin_routes_need_admin(psrv, padmin):
    user = create_user(psrv, padmin)
    err(user.client.post("/admin/plugins", json={"name": "com.x", "version": "1.0.0", "manifest": {"id": "com.x"}}),
        403, "FORBIDDEN")
    err(user.client.delete(f"/admin/plugins/{PROBE}"), 403, "FORBIDDEN")
    err(psrv.client().patch(f"/admin/plugins/{PROBE}", json={"enabled": False}), 401)
    err(padmin.post("/admin/plugins", json={"name": "bad name", "version": "1.0.0", "manifest": {"id": "bad name"}}),
        400, "BAD_REQUEST")
    err(padmin.post("/admin/plugins", json={"name": PROBE, "version": "1.0.0", "manifest": {"id": PROBE}}),
        409, "PLUGIN_NAME_TAKEN")


def test_extension_settings(psrv, padmin):
    body = {"plugin_id": PROBE, "extension_point": "task.detail.section", "settings": {"hidden": True, "order": 5}}
    data = ok(padmin.patch("/admin/plugin-extension-settings", json=body))
    assert data["extension_point"] == "task.detail.section" and data["settings"] == {"hidden": True, "order": 5}
    probe = next(p for p in ok(psrv.client().get("/plugins"))["plugins"] if p["name"] == PROBE)
    assert probe["extension_settings"][0]["settings"]["hidden"] is True
    assert probe["extension_settings"][0]["plugin_id"] == probe["id"]
    err(padmin.patch("/admin/plugin-extension-settings", json={**body, "extension_point": "nowhere"}), 400, "BAD_REQUEST")
    err(padmin.patch("/admin/plugin-extension-settings", json={**body, "plugin_id": "com.not.installed"}),
        404, "PLUGIN_NOT_FOUND")
    assert events_of(psrv, "plugin.extension_settings_updated")


def test_disable_enable_and_uninstall(psrv, padmin):
    c = psrv.client()
    ok(padmin.patch(f"/admin/plugins/{HOSTILE}", json={"enabled": False}))
    err(plugin_get(c, HOSTILE, "steal"), 404, "PLUGIN_NOT_FOUND")
    ok(padmin.patch(f"/admin/plugins/{HOSTILE}", json={"enabled": True}))
    wait_for(lambda: plugin_get(c, HOSTILE, "steal").status_code == 200, what="re-enabled plugin")
    ok(padmin.delete(f"/admin/plugins/{HOSTILE}"))
    err(plugin_get(c, HOSTILE, "steal"), 404, "PLUGIN_NOT_FOUND")
    assert HOSTILE not in {p["name"] for p in ok(c.get("/plugins"))["plugins"]}
    err(padmin.delete(f"/admin/plugins/{HOSTILE}"), 404, "PLUGIN_NOT_FOUND")
    types = [e["event_type"] for e in events_of(psrv, "plugin.uninstalled")]
    assert types == ["plugin.uninstalled"]


# --------------------------------------------------------------------------- catalog
def tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def artifacts(src: Path) -> dict[str, bytes]:
    migrations = {f"migrations/{f.name}": f.read_bytes() for f in sorted((src / "migrations").glob("*.sql"))}
    frontend = {str(f.relative_to(src)): f.read_bytes() for f in (src / "frontend").rglob("*") if f.is_file()}
    return {
        "manifest": tar_gz({"plugin.json": (src / "plugin.json").read_bytes()}),
        "backend": tar_gz({"backend/backend.wasm": (src / "backend.wasm").read_bytes()}),
        "migrations": tar_gz(migrations),
        "frontend": tar_gz(frontend),
    }


class Catalog:
    """A loopback HTTPS stand-in for the marketplace (test CA trusted only
    through the server's test-only settings)."""

    def __init__(self, tmp: Path):
        self.files: dict[str, bytes] = {}
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp / "ca.key",
                        "-out", tmp / "ca.pem", "-days", "2", "-subj", "/CN=paca-test-ca"],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp / "leaf.key",
                        "-out", tmp / "leaf.csr", "-subj", "/CN=localhost"], check=True, capture_output=True)
        (tmp / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                 "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        subprocess.run(["openssl", "x509", "-req", "-in", tmp / "leaf.csr", "-CA", tmp / "ca.pem", "-CAkey",
                        tmp / "ca.key", "-CAcreateserial", "-out", tmp / "leaf.pem", "-days", "2",
                        "-extfile", tmp / "ext"], check=True, capture_output=True)
        self.ca = tmp / "ca.pem"
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "leaf.pem", tmp / "leaf.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def publish(self, version: str, src: Path, corrupt: str | None = None):
        arts = artifacts(src)
        entry = {"name": PROBE, "display_name": "Probe", "description": "test", "version": version, "artifacts": {}}
        for kind, data in arts.items():
            path = f"/{version}/{kind}.tar.gz"
            self.files[path] = data
            entry["artifacts"][f"{kind}_tar_gz_url"] = self.url(path)
            digest = hashlib.sha256(data).hexdigest()
            entry["artifacts"][f"{kind}_tar_gz_sha256"] = ("0" * 64) if kind == corrupt else digest
        self.files["/catalog.json"] = json.dumps({"schema_version": 1, "source": "test", "plugins": [entry]}).encode()
        self.files["/hello"] = b"hello from the stand-in"


@pytest.fixture(scope="module")
def catalog():
    tmp = Path(tempfile.mkdtemp(prefix="paca-catalog-"))
    cat = Catalog(tmp)
    yield cat
    cat.httpd.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def csrv(catalog):
    srv, dbname = _make_server(
        "catalog",
        extra_env={
            "PLUGINS_MARKETPLACE_CATALOG_URL": catalog.url("/catalog.json"),
            # TEST-ONLY settings: allow the loopback TLS stand-in.
            "PACA_TEST_FETCH_ALLOW_LOOPBACK": "1",
            "PACA_TEST_FETCH_CA_FILE": str(catalog.ca),
        },
    )
    try:
        srv.start()
        yield srv
    finally:
        _teardown_server(srv, dbname)


def test_catalog_install_and_upgrade_with_checksums(csrv, catalog):
    admin = csrv.admin()
    c = csrv.client()
    catalog.publish("1.0.0", built("probe"))
    listed = ok(admin.get("/admin/plugins/marketplace"))["plugins"]
    assert [p["name"] for p in listed] == [PROBE] and listed[0]["version"] == "1.0.0"
    err(admin.post("/admin/plugins/marketplace/install", json={"name": "com.not.listed"}), 404, "PLUGIN_NOT_FOUND")
    data = ok(admin.post("/admin/plugins/marketplace/install", json={"name": PROBE}), 201)
    assert data["name"] == PROBE and data["version"] == "1.0.0" and data["enabled"] is True
    assert plugin_get(c, PROBE, "ping").json()["version"] == "1.0.0"
    err(admin.post("/admin/plugins/marketplace/install", json={"name": PROBE}), 409, "PLUGIN_NAME_TAKEN")
    err(admin.post(f"/admin/plugins/{PROBE}/upgrade"), 409, "PLUGIN_ALREADY_UP_TO_DATE")

    # fetch through the plugin reaches the allowlisted stand-in (test-only loopback).
    r = admin.post(f"/plugins/{PROBE}/fetch", json={"url": catalog.url("/hello")})
    out = r.json()
    assert out["status"] == 200 and out["body"] == "hello from the stand-in", describe(r)

    # 1.1.0 with a wrong sha256 for its backend: refused, 1.0.0 keeps serving.
    catalog.publish("1.1.0", built("probe-1.1.0"), corrupt="backend")
    body = err(admin.post(f"/admin/plugins/{PROBE}/upgrade"), 400, "BAD_REQUEST")
    assert "checksum mismatch" in body["error"]
    assert plugin_get(c, PROBE, "ping").json()["version"] == "1.0.0"
    assert ok(c.get("/plugins"))["plugins"][0]["version"] == "1.0.0"
    assert not [e for e in events_of(csrv, "plugin.upgraded")]

    # A downgrade is refused; the correct 1.1.0 switches.
    catalog.publish("0.9.0", built("probe"))
    err(admin.post(f"/admin/plugins/{PROBE}/upgrade"), 400, "PLUGIN_DOWNGRADE_NOT_ALLOWED")
    catalog.publish("1.1.0", built("probe-1.1.0"))
    data = ok(admin.post(f"/admin/plugins/{PROBE}/upgrade"))
    assert data["version"] == "1.1.0"
    assert plugin_get(c, PROBE, "ping").json()["version"] == "1.1.0"
    upgraded = events_of(csrv, "plugin.upgraded")
    assert upgraded[-1]["payload"]["old_version"] == "1.0.0" and upgraded[-1]["payload"]["source"] == "catalog"

    # Uninstall: gone from the list and the proxy; the event is in the log.
    ok(admin.delete(f"/admin/plugins/{PROBE}"))
    err(plugin_get(c, PROBE, "ping"), 404, "PLUGIN_NOT_FOUND")
    assert ok(c.get("/plugins"))["plugins"] == []
    assert requests.get(csrv.base + f"/plugins/{PROBE}/assets/remoteEntry.js", timeout=10).status_code == 404

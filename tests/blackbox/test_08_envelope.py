"""Response envelope and X-Request-ID."""

import requests

from conftest import describe, err, no_content, ok


def test_health_is_minimal_and_public(server):
    r = requests.get(server.url("/api/healthz"), timeout=10)
    assert r.status_code == 200, describe(r)
    assert r.json() == {"status": "ok"}
    assert "application/json" in r.headers.get("Content-Type", "")


def test_success_envelope_has_request_id_matching_header(admin):
    r = admin.get("/users/me")
    ok(r)
    body = r.json()
    rid = r.headers.get("X-Request-ID")
    assert rid, r.headers
    assert body.get("request_id") == rid
    assert "application/json" in r.headers.get("Content-Type", "")
    # generated ids differ per request
    r2 = admin.get("/users/me")
    assert r2.headers.get("X-Request-ID") and r2.headers["X-Request-ID"] != rid


def test_given_request_id_is_echoed(server, admin):
    rid = "bb-req-0123456789"
    r = admin.get("/users/me", headers={"X-Request-ID": rid})
    ok(r)
    assert r.headers.get("X-Request-ID") == rid and r.json()["request_id"] == rid
    # on errors too
    r = server.client().get("/users/me", headers={"X-Request-ID": rid + "-err"})
    body = err(r, 401, "AUTH_MISSING_TOKEN")
    assert r.headers.get("X-Request-ID") == rid + "-err" and body.get("request_id") == rid + "-err"
    # and on the login route
    r = server.client().post("/auth/login", json={"username": "admin", "password": server.admin_password},
                             headers={"X-Request-ID": rid + "-login"})
    ok(r)
    assert r.headers.get("X-Request-ID") == rid + "-login" and r.json()["request_id"] == rid + "-login"


def test_error_envelope_shape(server):
    r = server.client().get("/projects")
    body = err(r, 401, "AUTH_MISSING_TOKEN")
    assert set(body) >= {"success", "error_code", "error", "request_id"}
    assert "data" not in body
    assert body["request_id"] == r.headers.get("X-Request-ID")


def test_no_content_has_empty_body_and_request_id(server, admin):
    key = ok(admin.post("/users/me/api-keys", json={"name": "to-delete"}), 201)
    server.secrets.add(key["key"])
    r = admin.delete(f"/users/me/api-keys/{key['id']}", headers={"X-Request-ID": "bb-204"})
    no_content(r)
    assert r.headers.get("X-Request-ID") == "bb-204"


def test_created_returns_201_envelope(admin):
    r = admin.post("/projects", json={"name": "Envelope Check"})
    data = ok(r, 201)
    assert r.json()["request_id"] == r.headers.get("X-Request-ID")
    assert data["name"] == "Envelope Check"


def test_version_is_public_and_matches_the_binary(server):
    import subprocess

    from conftest import PACA_BIN

    r = requests.get(server.base + "/api/v1/version", timeout=10)
    data = ok(r)
    binary = subprocess.run([PACA_BIN, "--version"], capture_output=True, text=True, timeout=30).stdout.split()
    assert binary[0] == "paca" and data["version"] == binary[1], (data, binary)
    assert isinstance(data["read_model_version"], int) and data["read_model_version"] >= 1
    assert isinstance(data["database_migration"], int) and data["database_migration"] > 20261122000000

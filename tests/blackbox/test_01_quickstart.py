"""Page 03 (Quickstart), step by step, as a new user would do it."""

import requests

from conftest import api_key_client, describe, is_uuid, ok, set_cookies


def test_quickstart_end_to_end(server):
    # Verify health endpoints: minimal {"status":"ok"}, no envelope, no auth.
    r = requests.get(server.url("/api/healthz"), timeout=10)
    assert r.status_code == 200, describe(r)
    assert r.json() == {"status": "ok"}, describe(r)

    # Log in as admin (curl -c cookies.txt ...): cookies set, no token in the body.
    c = server.client()
    r = c.post("/auth/login", json={"username": "admin", "password": server.admin_password},
               headers={"Content-Type": "application/json"})
    assert ok(r) == {"message": "logged in"}
    cookies = set_cookies(r)
    assert "access_token" in cookies and "refresh_token" in cookies, r.headers
    assert c.access_token and c.refresh_token
    assert c.access_token not in r.text and c.refresh_token not in r.text

    # Create a project (curl -b cookies.txt ...)
    r = c.post("/projects", json={"name": "My First Project", "description": "Quickstart project"})
    project = ok(r, 201)
    assert is_uuid(project["id"]), describe(r)
    assert project["name"] == "My First Project"
    assert project["description"] == "Quickstart project"
    assert project["task_id_prefix"] == "MFP"
    assert project["is_public"] is False
    assert project["settings"] == {}
    assert isinstance(project["created_at"], str) and project["created_at"]
    me = c.me()
    assert project["created_by"] == me["id"]

    # Generate an API key with the session cookies.
    r = c.post("/users/me/api-keys", json={"name": "Quickstart CLI key"})
    key = ok(r, 201)
    for field in ("id", "name", "key_prefix", "key", "last_used_at", "expires_at", "created_at"):
        assert field in key, f"missing {field}" + describe(r)
    assert key["name"] == "Quickstart CLI key"
    assert key["key"].startswith("paca_")
    assert key["key_prefix"] and key["key"].startswith(key["key_prefix"])
    assert len(key["key_prefix"]) < len(key["key"])
    assert key["last_used_at"] is None and key["expires_at"] is None
    server.secrets.add(key["key"])

    # The raw key is returned only on creation.
    r = c.get("/users/me/api-keys")
    listed = ok(r)
    assert isinstance(listed, list)
    entry = next(k for k in listed if k["id"] == key["id"])
    assert "key" not in entry and entry["key_prefix"] == key["key_prefix"]
    assert key["key"] not in r.text

    # Verify API key authentication: X-API-Key and Authorization: ApiKey.
    for style in ("x-api-key", "apikey"):
        kc = api_key_client(server, key["key"], style)
        r = kc.get("/users/me")
        u = ok(r)
        assert u["username"] == "admin", describe(r)
        assert u["role"] == "SUPER_ADMIN", describe(r)
        assert isinstance(u["full_name"], str)
        assert u["id"] == me["id"]

        r = kc.get("/projects")
        page = ok(r)
        assert any(p["id"] == project["id"] for p in page["items"]), describe(r)

    # Re-check health (optional step): still public.
    r = requests.get(server.url("/api/healthz"), timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_quickstart_reference_table_api_key_can_create_project(server, admin):
    """Quick reference: "Create project | Cookie, Bearer JWT, or API key + projects.create"."""
    key = ok(admin.post("/users/me/api-keys", json={"name": "creator key"}), 201)["key"]
    server.secrets.add(key)
    kc = api_key_client(server, key, "apikey")
    p = ok(kc.post("/projects", json={"name": "Created With Key"}), 201)
    assert p["name"] == "Created With Key" and p["task_id_prefix"] == "CWK"
    assert p["created_by"] == admin.me()["id"]
    # and through Bearer JWT
    bc = server.client(Authorization=f"Bearer {admin.access_token}")
    p2 = ok(bc.post("/projects", json={"name": "Created With Bearer"}), 201)
    assert p2["task_id_prefix"] == "CWB"

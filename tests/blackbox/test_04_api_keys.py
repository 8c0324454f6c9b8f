"""API keys: creation, listing, use, revocation, expiry, validation, JWT-only routes."""

import time
from datetime import datetime, timedelta, timezone

from conftest import api_key_client, err, is_uuid, no_content, ok


def mint(server, client, name="k", **extra):
    data = ok(client.post("/users/me/api-keys", json={"name": name, **extra}), 201)
    server.secrets.add(data["key"])
    return data


def test_create_list_delete(server, make_user):
    u = make_user(prefix="keys")
    assert ok(u.client.get("/users/me/api-keys")) == []
    k1 = mint(server, u.client, "first")
    k2 = mint(server, u.client, "second")
    assert is_uuid(k1["id"]) and k1["id"] != k2["id"]
    assert k1["key"] != k2["key"]
    assert k1["key"].startswith("paca_") and k1["key"].startswith(k1["key_prefix"])

    r = u.client.get("/users/me/api-keys")
    listed = ok(r)
    assert isinstance(listed, list)
    assert {k["id"] for k in listed} == {k1["id"], k2["id"]}
    for k in listed:
        assert set(k) >= {"id", "name", "key_prefix", "last_used_at", "expires_at", "created_at"}, k
        assert "key" not in k
    assert k1["key"] not in r.text and k2["key"] not in r.text

    no_content(u.client.delete(f"/users/me/api-keys/{k1['id']}"))
    assert [k["id"] for k in ok(u.client.get("/users/me/api-keys"))] == [k2["id"]]


def test_revoked_key_is_401_api_key_revoked(server, admin):
    k = mint(server, admin, "to-revoke")
    kc = api_key_client(server, k["key"])
    assert ok(kc.get("/users/me"))["username"] == "admin"
    no_content(admin.delete(f"/users/me/api-keys/{k['id']}"))
    err(kc.get("/users/me"), 401, "API_KEY_REVOKED")
    err(api_key_client(server, k["key"], "apikey").get("/projects"), 401, "API_KEY_REVOKED")


def test_expired_key_is_401_api_key_expired(server, admin):
    expires = (datetime.now(timezone.utc) + timedelta(seconds=3)).replace(microsecond=0)
    k = mint(server, admin, "short-lived", expires_at=expires.isoformat().replace("+00:00", "Z"))
    assert k["expires_at"] is not None
    kc = api_key_client(server, k["key"])
    assert ok(kc.get("/users/me"))["username"] == "admin"
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 1.5)
    err(kc.get("/users/me"), 401, "API_KEY_EXPIRED")


def test_key_name_validation(server, admin):
    err(admin.post("/users/me/api-keys", json={"name": ""}), 400, "API_KEY_NAME_INVALID")
    err(admin.post("/users/me/api-keys", json={"name": "x" * 101}), 400, "API_KEY_NAME_TOO_LONG")
    k = mint(server, admin, "y" * 100)
    assert k["name"] == "y" * 100


def test_key_routes_reject_api_key_auth(server, admin):
    k = mint(server, admin, "cannot-manage-keys")
    other = mint(server, admin, "victim")
    for style in ("x-api-key", "apikey"):
        kc = api_key_client(server, k["key"], style)
        err(kc.get("/users/me/api-keys"), 403, "FORBIDDEN")
        err(kc.post("/users/me/api-keys", json={"name": "minted-by-key"}), 403, "FORBIDDEN")
        err(kc.delete(f"/users/me/api-keys/{other['id']}"), 403, "FORBIDDEN")
    names = [x["name"] for x in ok(admin.get("/users/me/api-keys"))]
    assert "minted-by-key" not in names and "victim" in names
    # the key still works for ordinary routes
    assert ok(api_key_client(server, k["key"]).get("/users/me"))["username"] == "admin"


def test_key_acts_as_its_owner(server, make_user):
    u = make_user(prefix="owner")
    k = mint(server, u.client, "mine")
    me = ok(api_key_client(server, k["key"]).get("/users/me"))
    assert me["id"] == u.id and me["role"] == "USER"
    # a USER's key gets no admin powers
    err(api_key_client(server, k["key"]).get("/admin/global-roles"), 403, "FORBIDDEN")
    err(api_key_client(server, k["key"]).delete(f"/admin/users/{u.id}"), 403, "FORBIDDEN")


def test_cannot_delete_someone_elses_key(server, admin, make_user):
    u = make_user(prefix="thief")
    k = mint(server, admin, "admins")
    # /users/me/api-keys/{id} is scoped to the caller: another user's key is not one of theirs
    err(u.client.delete(f"/users/me/api-keys/{k['id']}"), 404, "API_KEY_NOT_FOUND")
    assert ok(api_key_client(server, k["key"]).get("/users/me"))["username"] == "admin"


def test_last_used_at_is_recorded(server, make_user):
    u = make_user(prefix="lastused")
    k = mint(server, u.client, "tracked")
    ok(api_key_client(server, k["key"]).get("/users/me"))
    deadline = time.monotonic() + 5
    while True:
        entry = next(x for x in ok(u.client.get("/users/me/api-keys")) if x["id"] == k["id"])
        if entry["last_used_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert entry["last_used_at"] is not None, entry

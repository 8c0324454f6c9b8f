"""Login, cookies, refresh rotation and reuse detection, logout, rate limiting,
credential sources."""

import base64
import hashlib
import hmac

import requests

from conftest import (
    api_key_client,
    bearer,
    cookie_attrs,
    describe,
    err,
    new_password,
    no_content,
    ok,
    set_cookies,
    unique,
)


def refresh_with(server, token):
    """POST /auth/refresh presenting exactly this refresh token."""
    return requests.post(server.url("/auth/refresh"), headers={"Cookie": f"refresh_token={token}"}, timeout=30)


# --------------------------------------------------------------------------- login
def test_login_sets_httponly_cookies_with_paths_and_samesite(server):
    c = server.client()
    r = c.post("/auth/login", json={"username": "admin", "password": server.admin_password})
    assert ok(r) == {"message": "logged in"}
    cookies = set_cookies(r)
    assert set(cookies) >= {"access_token", "refresh_token"}, r.headers

    access, a = cookie_attrs(cookies["access_token"])
    assert access, cookies["access_token"]
    assert "httponly" in a, cookies["access_token"]
    assert a.get("path") == "/", cookies["access_token"]
    assert a.get("samesite", "").lower() == "lax", cookies["access_token"]

    refresh, rf = cookie_attrs(cookies["refresh_token"])
    assert refresh, cookies["refresh_token"]
    assert "httponly" in rf, cookies["refresh_token"]
    assert rf.get("path") == "/api/v1/auth/refresh", cookies["refresh_token"]
    assert rf.get("samesite", "").lower() == "strict", cookies["refresh_token"]

    # tokens never in the body
    assert access not in r.text and refresh not in r.text
    # the cookie authenticates
    assert c.me()["username"] == "admin"


def test_login_remember_me_extends_refresh_cookie_lifetime(server):
    def refresh_lifetime(remember):
        r = server.client().post("/auth/login", json={"username": "admin", "password": server.admin_password,
                                                      "remember_me": remember})
        ok(r)
        _, attrs = cookie_attrs(set_cookies(r)["refresh_token"])
        return int(attrs.get("max-age", "0") or 0), attrs

    long_, la = refresh_lifetime(True)
    short, sa = refresh_lifetime(False)
    assert long_ > short, f"remember_me=true {la} vs false {sa}"
    assert long_ >= 6 * 24 * 3600, f"remember_me=true refresh cookie should last ~7 days: {la}"


def test_login_wrong_password_is_401(server):
    err(server.client().post("/auth/login", json={"username": "admin", "password": "definitely-wrong"}),
        401, "AUTH_INVALID_CREDENTIALS")


def test_login_unknown_user_is_401(server):
    err(server.client().post("/auth/login", json={"username": unique("ghost"), "password": "whatever-123"}),
        401, "AUTH_INVALID_CREDENTIALS")


def test_login_short_password_is_400(server):
    err(server.client().post("/auth/login", json={"username": "admin", "password": "short"}), 400, "BAD_REQUEST")


def test_login_missing_username_is_400(server):
    err(server.client().post("/auth/login", json={"password": server.admin_password}), 400, "BAD_REQUEST")


def test_login_empty_username_is_400(server):
    err(server.client().post("/auth/login", json={"username": "", "password": server.admin_password}),
        400, "BAD_REQUEST")


def test_login_malformed_json_is_400(server):
    r = server.client().post("/auth/login", data='{"username": "admin", "password": ',
                             headers={"Content-Type": "application/json"})
    err(r, 400, "BAD_REQUEST")


def test_login_ignores_unknown_fields(server):
    r = server.client().post("/auth/login", json={"username": "admin", "password": server.admin_password,
                                                  "captcha": "xyz", "extra": {"a": 1}})
    assert ok(r) == {"message": "logged in"}


# --------------------------------------------------------------------------- rate limit
def test_login_rate_limited_after_10_failures_per_minute(server, make_user):
    u = make_user(change_password=False, prefix="rl")
    c = server.client()
    for i in range(10):
        r = c.post("/auth/login", json={"username": u.username, "password": f"wrong-password-{i}"})
        err(r, 401, "AUTH_INVALID_CREDENTIALS")
    # the 11th attempt within the minute is over the limit
    err(c.post("/auth/login", json={"username": u.username, "password": "wrong-password-x"}), 429,
        "TOO_MANY_REQUESTS")
    # another username from the same IP is not affected
    ok(server.client().post("/auth/login", json={"username": "admin", "password": server.admin_password}))


def test_login_rate_limit_ignores_successful_logins(server, make_user):
    u = make_user(change_password=False, prefix="rlok")
    c = server.client()
    for i in range(9):
        err(c.post("/auth/login", json={"username": u.username, "password": f"wrong-password-{i}"}),
            401, "AUTH_INVALID_CREDENTIALS")
    for _ in range(4):
        ok(c.post("/auth/login", json={"username": u.username, "password": u.password}))
    # 10th failure within the minute: still a plain 401, successes did not count
    err(c.post("/auth/login", json={"username": u.username, "password": "wrong-password-last"}),
        401, "AUTH_INVALID_CREDENTIALS")


# --------------------------------------------------------------------------- refresh
def test_refresh_rotates_tokens(server):
    c = server.admin()
    old_refresh = c.refresh_token
    r = c.post("/auth/refresh")
    assert ok(r) == {"message": "token refreshed"}
    cookies = set_cookies(r)
    assert "access_token" in cookies and "refresh_token" in cookies, r.headers
    new_refresh, attrs = cookie_attrs(cookies["refresh_token"])
    assert new_refresh and new_refresh != old_refresh
    assert attrs.get("path") == "/api/v1/auth/refresh"
    assert new_refresh not in r.text
    # the new access cookie works
    assert c.me()["username"] == "admin"
    # and the new refresh token can be used again
    assert ok(c.post("/auth/refresh")) == {"message": "token refreshed"}


def test_refresh_without_cookie_is_401(server):
    err(server.client().post("/auth/refresh"), 401, "AUTH_MISSING_TOKEN")


def test_refresh_with_garbage_cookie_is_401(server):
    r = refresh_with(server, "not-a-real-refresh-token")
    err(r, 401)


def test_refresh_token_reuse_revokes_family(server):
    c = server.admin()
    first = c.refresh_token
    ok(c.post("/auth/refresh"))
    second = c.refresh_token
    assert second and second != first
    # presenting the already-rotated token: rejected ...
    err(refresh_with(server, first), 401, "AUTH_TOKEN_INVALID")
    # ... and the whole family is revoked: the newest token of that login stops working too
    err(refresh_with(server, second), 401)
    err(c.post("/auth/refresh"), 401)


def test_refresh_reuse_does_not_affect_other_logins(server):
    victim = server.admin()
    other = server.admin()
    first = victim.refresh_token
    ok(victim.post("/auth/refresh"))
    err(refresh_with(server, first), 401, "AUTH_TOKEN_INVALID")
    # a separate login is a separate family
    assert ok(other.post("/auth/refresh")) == {"message": "token refreshed"}


# --------------------------------------------------------------------------- logout
def test_logout_clears_cookies_and_revokes_refresh(server):
    c = server.admin()
    refresh = c.refresh_token
    r = c.post("/auth/logout")
    assert ok(r) == {"message": "logged out"}
    cookies = set_cookies(r)
    for name in ("access_token", "refresh_token"):
        assert name in cookies, f"logout must clear {name}: {r.headers}"
        value, attrs = cookie_attrs(cookies[name])
        cleared = value == "" or attrs.get("max-age") in ("0", "-1") or "1970" in attrs.get("expires", "")
        assert cleared, f"{name} not cleared: {cookies[name]}"
    # the jar dropped the cookies, so the session is anonymous again
    err(c.get("/users/me"), 401, "AUTH_MISSING_TOKEN")
    # the refresh token of that session no longer works
    err(refresh_with(server, refresh), 401)


def test_logout_requires_authentication(server):
    err(server.client().post("/auth/logout"), 401, "AUTH_MISSING_TOKEN")


# --------------------------------------------------------------------------- credential sources
def test_no_credentials_is_401_missing_token(server):
    for path in ("/users/me", "/projects", "/admin/users", "/users/me/api-keys"):
        err(server.client().get(path), 401, "AUTH_MISSING_TOKEN")


def test_bearer_jwt_authenticates(server, admin):
    c = bearer(server, admin.access_token)
    me = ok(c.get("/users/me"))
    assert me["username"] == "admin"
    # JWT-only routes accept Bearer too
    assert isinstance(ok(c.get("/users/me/api-keys")), list)


def test_garbage_bearer_is_401_token_invalid(server):
    err(bearer(server, "not.a.jwt").get("/users/me"), 401, "AUTH_TOKEN_INVALID")


def test_jwt_signed_with_other_secret_is_rejected(server, admin):
    header, payload, _sig = admin.access_token.split(".")
    sig = hmac.new(b"some-other-secret", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}." + base64.urlsafe_b64encode(sig).decode().rstrip("=")
    err(bearer(server, forged).get("/users/me"), 401, "AUTH_TOKEN_INVALID")


def test_api_key_sent_as_bearer_is_401_token_invalid(server, admin):
    key = ok(admin.post("/users/me/api-keys", json={"name": "as-bearer"}), 201)["key"]
    server.secrets.add(key)
    err(bearer(server, key).get("/users/me"), 401, "AUTH_TOKEN_INVALID")
    # the same key is fine through the proper headers
    assert ok(api_key_client(server, key).get("/users/me"))["username"] == "admin"


def test_unknown_api_key_is_401(server):
    bogus = "paca_" + "0" * 40
    err(api_key_client(server, bogus, "x-api-key").get("/users/me"), 401, "AUTH_TOKEN_INVALID")
    err(api_key_client(server, bogus, "apikey").get("/users/me"), 401, "AUTH_TOKEN_INVALID")


def test_credential_order_cookie_then_bearer_then_apikey(server, admin, make_user):
    bob = make_user(prefix="order")
    bob_key = ok(bob.client.post("/users/me/api-keys", json={"name": "bob"}), 201)["key"]
    admin_key = ok(admin.post("/users/me/api-keys", json={"name": "admin-order"}), 201)["key"]
    server.secrets.update({bob_key, admin_key})

    # cookie (admin) wins over Bearer (bob)
    r = admin.get("/users/me", headers={"Authorization": f"Bearer {bob.client.access_token}"})
    assert ok(r)["username"] == "admin", describe(r)
    # cookie (admin) wins over X-API-Key (bob)
    r = admin.get("/users/me", headers={"X-API-Key": bob_key})
    assert ok(r)["username"] == "admin", describe(r)
    # Bearer (bob) wins over X-API-Key (admin)
    r = server.client().get("/users/me", headers={"Authorization": f"Bearer {bob.client.access_token}",
                                                  "X-API-Key": admin_key})
    assert ok(r)["username"] == bob.username, describe(r)
    # Authorization: ApiKey (bob) wins over X-API-Key (admin)
    r = server.client().get("/users/me", headers={"Authorization": f"ApiKey {bob_key}", "X-API-Key": admin_key})
    assert ok(r)["username"] == bob.username, describe(r)
    # X-API-Key alone
    r = server.client().get("/users/me", headers={"X-API-Key": admin_key})
    assert ok(r)["username"] == "admin", describe(r)


def test_password_change_revokes_refresh_tokens(server, make_user):
    u = make_user(prefix="pwrev")
    other_session = server.login(u.username, u.password)
    refresh_a = u.client.refresh_token
    refresh_b = other_session.refresh_token
    newer = new_password()
    server.secrets.add(newer)
    no_content(u.client.patch("/users/me/password", json={"current_password": u.password, "new_password": newer}))
    err(refresh_with(server, refresh_a), 401)
    err(refresh_with(server, refresh_b), 401)
    err(server.client().post("/auth/login", json={"username": u.username, "password": u.password}),
        401, "AUTH_INVALID_CREDENTIALS")
    c = server.login(u.username, newer)
    assert c.me()["username"] == u.username


def test_client_address_behind_a_trusted_proxy():
    """Behind the gateway every request comes from its address; with
    PACA_TRUSTED_PROXIES the login limits count the client the proxy names
    (X-Real-IP, else the right-most untrusted X-Forwarded-For entry), and a
    client that is not a trusted proxy cannot choose its address."""
    import requests as rq

    from conftest import _make_server, _teardown_server

    def login(srv, password, **headers):
        return rq.post(srv.url("/auth/login"), json={"username": "admin", "password": password},
                       headers=headers, timeout=10)

    trusted, db1 = _make_server("proxied", extra_env={"PACA_TRUSTED_PROXIES": "127.0.0.1/32, ::1",
                                                      "PACA_LOGIN_MAX_FAILURES": "3"})
    direct, db2 = _make_server("direct", extra_env={"PACA_LOGIN_MAX_FAILURES": "3"})
    try:
        trusted.start()
        for _ in range(3):
            assert login(trusted, "wrong-password", **{"X-Real-IP": "10.1.1.1"}).status_code == 401
        locked = login(trusted, trusted.admin_password, **{"X-Real-IP": "10.1.1.1"})
        assert locked.status_code == 429 and locked.json()["error_code"] == "TOO_MANY_REQUESTS"
        # Another client of the same gateway is not locked out.
        assert login(trusted, trusted.admin_password, **{"X-Real-IP": "10.2.2.2"}).status_code == 200
        # X-Forwarded-For: the right-most entry counts; what the client prepended does not.
        for spoof in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
            r = login(trusted, "wrong-password", **{"X-Forwarded-For": f"{spoof}, 10.3.3.3"})
            assert r.status_code == 401
        r = login(trusted, trusted.admin_password, **{"X-Forwarded-For": "9.9.9.9, 10.3.3.3"})
        assert r.status_code == 429, r.text

        direct.start()
        # Not a trusted proxy: the headers are ignored, the peer is the client.
        for i in range(3):
            assert login(direct, "wrong-password", **{"X-Real-IP": f"10.0.0.{i}"}).status_code == 401
        r = login(direct, direct.admin_password, **{"X-Real-IP": "10.0.0.99"})
        assert r.status_code == 429, r.text
    finally:
        _teardown_server(trusted, db1)
        _teardown_server(direct, db2)

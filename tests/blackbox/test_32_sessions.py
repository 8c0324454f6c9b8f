"""Issue 7 §3: revocable sessions and login limits.

- An access JWT stops working (401) within about a second once its session is
  revoked: logout, refresh-token reuse (the whole family), the user's own password
  change, an admin password reset, the user's deletion. Other sessions live on.
- `POST /auth/logout` is for sessions: with an API key it is refused (400 or 401 with
  a message saying so), and the key keeps working.
- A per-IP ceiling on failed logins (`PACA_LOGIN_MAX_FAILURES_PER_IP`) stops a spray
  of many usernames with one wrong password each; every 429 carries `Retry-After`.
"""

import re
import secrets

import pytest
import requests

from conftest import _make_server, _teardown_server, api_key_client, bearer, create_user, err, new_password, \
    no_content, ok, unique
from test_3_support import assert_error_envelope, poll_status

REVOKED_WITHIN = 2.0  # seconds; the issue asks for "within a second on every node"


def refresh_with(server, token):
    return requests.post(server.url("/auth/refresh"), headers={"Cookie": f"refresh_token={token}"}, timeout=30)


def assert_revoked(server, token: str, what: str):
    """The access JWT gets 401 AUTH_TOKEN_INVALID, as a Bearer token and as the cookie."""
    r = poll_status(lambda: bearer(server, token).get("/users/me"), 401, timeout=REVOKED_WITHIN)
    assert r.status_code == 401, f"{what}: the old access JWT still works after {REVOKED_WITHIN}s " \
                                 f"(status {r.status_code} {r.text[:200]})"
    err(r, 401, "AUTH_TOKEN_INVALID")
    r = requests.get(server.url("/users/me"), headers={"Cookie": f"access_token={token}"}, timeout=30)
    err(r, 401, "AUTH_TOKEN_INVALID")


def still_works(server, token: str, what: str):
    r = bearer(server, token).get("/users/me")
    assert r.status_code == 200, f"{what}: an unrelated session was revoked too ({r.status_code} {r.text[:200]})"


@pytest.fixture(scope="module")
def srv(module_server):
    return module_server


@pytest.fixture(scope="module")
def admin32(srv):
    return srv.admin()


def test_logout_revokes_the_access_jwt(srv):
    other = srv.admin()
    c = srv.admin()
    token = c.access_token
    assert ok(bearer(srv, token).get("/users/me"))["username"] == "admin"
    assert ok(c.post("/auth/logout")) == {"message": "logged out"}
    assert_revoked(srv, token, "after logout")
    still_works(srv, other.access_token, "logout")


def test_refresh_token_reuse_revokes_every_access_jwt_of_the_family(srv):
    other = srv.admin()
    c = srv.admin()
    first_access, first_refresh = c.access_token, c.refresh_token
    ok(c.post("/auth/refresh"))
    second_access = c.access_token
    assert ok(bearer(srv, second_access).get("/users/me"))["username"] == "admin"
    err(refresh_with(srv, first_refresh), 401, "AUTH_TOKEN_INVALID")  # reuse: the family is revoked
    assert_revoked(srv, second_access, "after refresh-token reuse (newest access token)")
    assert_revoked(srv, first_access, "after refresh-token reuse (first access token)")
    still_works(srv, other.access_token, "refresh-token reuse")


def test_own_password_change_revokes_every_session(srv, admin32):
    u = create_user(srv, admin32, prefix="pwjwt")
    second = srv.login(u.username, u.password)
    tokens = [u.client.access_token, second.access_token]
    newer = new_password()
    srv.secrets.add(newer)
    no_content(u.client.patch("/users/me/password", json={"current_password": u.password, "new_password": newer}))
    for i, t in enumerate(tokens):
        assert_revoked(srv, t, f"after PATCH /users/me/password (session {i + 1})")
    # a session started afterwards is not caught by the revocation
    fresh = srv.login(u.username, newer)
    assert fresh.me()["username"] == u.username
    still_works(srv, admin32.access_token, "someone else's password change")


def test_admin_password_reset_revokes_the_users_sessions(srv, admin32):
    u = create_user(srv, admin32, prefix="resetjwt")
    token = u.client.access_token
    reset = new_password()
    srv.secrets.add(reset)
    no_content(admin32.patch(f"/admin/users/{u.id}/password", json={"new_password": reset}))
    assert_revoked(srv, token, "after an admin password reset")
    still_works(srv, admin32.access_token, "an admin password reset")


def test_user_deletion_revokes_the_users_sessions(srv, admin32):
    u = create_user(srv, admin32, prefix="deljwt")
    token = u.client.access_token
    no_content(admin32.delete(f"/admin/users/{u.id}"))
    assert_revoked(srv, token, "after the user was deleted")
    still_works(srv, admin32.access_token, "another user's deletion")


def test_logout_with_an_api_key_is_refused(srv, admin32):
    key = ok(admin32.post("/users/me/api-keys", json={"name": "not a session"}), 201)["key"]
    srv.secrets.add(key)
    for style in ("x-api-key", "apikey"):
        r = api_key_client(srv, key, style).post("/auth/logout")
        assert r.status_code == 400, f"logout with an API key ({style}) must be refused with 400, got " \
            f"{r.status_code} {r.text[:200]}"
        body = assert_error_envelope(r)
        assert body["error_code"] == "BAD_REQUEST", body
        assert re.search(r"session|api.?key", body["error"], re.I), \
            f"the message must say logout is for sessions: {body['error']!r}"
        # nothing was revoked: the key still works
        assert ok(api_key_client(srv, key, style).get("/users/me"))["username"] == "admin"


# --------------------------------------------------------------------------- login limits
@pytest.fixture
def limited_server(request):
    env = getattr(request, "param", {})
    srv, dbname = _make_server("limits", extra_env=env)
    try:
        srv.start()
        yield srv
    finally:
        _teardown_server(srv, dbname)


def assert_retry_after(r):
    err(r, 429, "TOO_MANY_REQUESTS")
    ra = r.headers.get("Retry-After")
    assert ra is not None, f"a 429 must carry Retry-After: {dict(r.headers)}"
    assert ra.strip().isdigit() and 1 <= int(ra) <= 3600, f"Retry-After must be delay-seconds, got {ra!r}"


@pytest.mark.parametrize("limited_server", [{"PACA_LOGIN_MAX_FAILURES_PER_IP": "5",
                                             "PACA_LOGIN_MAX_FAILURES": "10"}], indirect=True)
def test_per_ip_ceiling_stops_a_username_spray(limited_server):
    srv = limited_server
    spray = [unique("spray") for _ in range(9)]
    for name in spray[:5]:
        err(requests.post(srv.url("/auth/login"), json={"username": name, "password": "wrong-password-1"},
                          timeout=30), 401, "AUTH_INVALID_CREDENTIALS")
    for name in spray[5:]:
        assert_retry_after(requests.post(srv.url("/auth/login"),
                                         json={"username": name, "password": "wrong-password-1"}, timeout=30))


@pytest.mark.parametrize("limited_server", [{"PACA_LOGIN_MAX_FAILURES": "3",
                                             "PACA_LOGIN_MAX_FAILURES_PER_IP": "1000"}], indirect=True)
def test_per_user_limit_429_carries_retry_after(limited_server):
    srv = limited_server
    name = "admin"
    for i in range(3):
        err(requests.post(srv.url("/auth/login"), json={"username": name, "password": f"wrong-password-{i}"},
                          timeout=30), 401, "AUTH_INVALID_CREDENTIALS")
    assert_retry_after(requests.post(srv.url("/auth/login"),
                                     json={"username": name, "password": "wrong-password-x"}, timeout=30))
    # another username from the same IP is not affected by the per-user limit
    err(requests.post(srv.url("/auth/login"), json={"username": "someone-" + secrets.token_hex(3),
                                                    "password": "wrong-password-1"}, timeout=30),
        401, "AUTH_INVALID_CREDENTIALS")

"""Issue 7 §3 / CONTRACT-NOTES §1: CORS.

`CORS_ORIGINS` is a comma-separated allow-list; empty means `*`. A preflight
`OPTIONS` answers 204 with Allow-Methods `GET, POST, PATCH, DELETE, OPTIONS` and
Allow-Headers `Authorization, Content-Type, X-Request-ID`. Credentials
(`Access-Control-Allow-Credentials: true`, the origin echoed) only for listed
origins; with `*` never.
"""

import uuid

import pytest
import requests

from conftest import _make_server, _teardown_server, describe, ok

LISTED = "http://app.example.test"
LISTED_2 = "https://other.example.test:8443"
UNLISTED = "http://evil.example.test"
METHODS = {"GET", "POST", "PATCH", "DELETE", "OPTIONS"}
HEADERS = {"authorization", "content-type", "x-request-id"}


@pytest.fixture(scope="module")
def open_cors():
    srv, dbname = _make_server("cors-open", extra_env={"CORS_ORIGINS": ""})
    try:
        srv.start()
        yield srv
    finally:
        _teardown_server(srv, dbname)


@pytest.fixture(scope="module")
def listed_cors():
    srv, dbname = _make_server("cors-listed", extra_env={"CORS_ORIGINS": f"{LISTED},{LISTED_2}"})
    try:
        srv.start()
        yield srv
    finally:
        _teardown_server(srv, dbname)


def preflight(srv, path, origin, method="POST", headers="content-type,x-request-id,authorization"):
    return requests.options(srv.base + path, timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})


def split(value):
    return {v.strip().lower() for v in (value or "").split(",") if v.strip()}


def assert_allows(r, origin_header, credentials):
    where = f"{r.request.method} {r.request.url} -> {r.status_code} {dict(r.headers)}"
    assert r.status_code == 204, "a preflight answers 204: " + where
    assert r.content == b"", "a 204 preflight has no body: " + where
    assert r.headers.get("Access-Control-Allow-Origin") == origin_header, where
    assert {m.lower() for m in METHODS} <= split(r.headers.get("Access-Control-Allow-Methods")), where
    assert HEADERS <= split(r.headers.get("Access-Control-Allow-Headers")), where
    if credentials:
        assert r.headers.get("Access-Control-Allow-Credentials") == "true", where
        assert "origin" in split(r.headers.get("Vary")), "an echoed origin needs Vary: Origin: " + where
    else:
        assert r.headers.get("Access-Control-Allow-Credentials") != "true", \
            "credentials are never allowed with Allow-Origin *: " + where


PATHS = ["/api/v1/projects", "/api/v1/auth/login", f"/api/v1/projects/{uuid.uuid4()}/tasks/{uuid.uuid4()}",
         "/api/v1/users/me"]


# --------------------------------------------------------------------------- CORS_ORIGINS empty: *
@pytest.mark.parametrize("path", PATHS)
def test_open_preflight_is_204_with_star(open_cors, path):
    assert_allows(preflight(open_cors, path, UNLISTED), "*", credentials=False)


def test_open_actual_requests_carry_star(open_cors):
    admin = open_cors.admin()
    r = admin.get("/users/me", headers={"Origin": UNLISTED})
    ok(r)
    assert r.headers.get("Access-Control-Allow-Origin") == "*", dict(r.headers)
    assert r.headers.get("Access-Control-Allow-Credentials") != "true", dict(r.headers)
    # errors are readable cross-origin too
    r = requests.get(open_cors.url("/projects"), headers={"Origin": UNLISTED}, timeout=30)
    assert r.status_code == 401
    assert r.headers.get("Access-Control-Allow-Origin") == "*", dict(r.headers)


# --------------------------------------------------------------------------- an allow-list
@pytest.mark.parametrize("origin", [LISTED, LISTED_2])
@pytest.mark.parametrize("path", PATHS)
def test_listed_origin_preflight_gets_credentials(listed_cors, path, origin):
    assert_allows(preflight(listed_cors, path, origin, method="PATCH"), origin, credentials=True)


@pytest.mark.parametrize("path", PATHS[:2])
def test_unlisted_origin_preflight_gets_no_cors_headers(listed_cors, path):
    r = preflight(listed_cors, path, UNLISTED)
    assert r.status_code == 204, "preflight from an unlisted origin" + describe(r)
    assert "Access-Control-Allow-Origin" not in r.headers, dict(r.headers)
    assert "Access-Control-Allow-Credentials" not in r.headers, dict(r.headers)


def test_listed_origin_actual_request_with_credentials(listed_cors):
    admin = listed_cors.admin()
    for origin in (LISTED, LISTED_2):
        r = admin.get("/users/me", headers={"Origin": origin})
        ok(r)
        assert r.headers.get("Access-Control-Allow-Origin") == origin, dict(r.headers)
        assert r.headers.get("Access-Control-Allow-Credentials") == "true", dict(r.headers)
        assert "origin" in split(r.headers.get("Vary")), dict(r.headers)
    # login from the web app's origin: the cookies come with the CORS headers
    r = requests.post(listed_cors.url("/auth/login"), headers={"Origin": LISTED}, timeout=30,
                      json={"username": "admin", "password": listed_cors.admin_password})
    ok(r)
    assert r.headers.get("Access-Control-Allow-Origin") == LISTED, dict(r.headers)
    assert r.headers.get("Access-Control-Allow-Credentials") == "true", dict(r.headers)


def test_unlisted_origin_actual_request_gets_no_cors_headers(listed_cors):
    admin = listed_cors.admin()
    r = admin.get("/users/me", headers={"Origin": UNLISTED})
    assert ok(r)["username"] == "admin"  # CORS is the browser's to enforce: the server answers as usual
    assert "Access-Control-Allow-Origin" not in r.headers, dict(r.headers)
    assert "Access-Control-Allow-Credentials" not in r.headers, dict(r.headers)

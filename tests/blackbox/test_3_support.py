"""Shared helpers for the issue-7 black-box tests (test_3*.py): poisoned values, the
route fuzz, sessions, CORS and the client contract.

This module holds no tests; the test_3x files import from it."""

from __future__ import annotations

import base64
import json
import subprocess
import time

import requests

from conftest import PacaServer, describe, psql

# The error code for a value the domain refuses (NUL in a string, a date outside
# years 1-9999, a non-finite number, ...). The issue names it; the seeds have no
# narrower code for these cases.
VALIDATION_ERROR = "VALIDATION_ERROR"

# Dates and timestamps that PostgreSQL cannot store or that chrono and PostgreSQL
# read differently (year 0, negative years, five-digit years).
POISONED_TIMESTAMPS = [
    "0000-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
]
POISONED_DATES = ["0000-01-01", "+10000-01-01", "-0001-01-01", "-9999-01-01"]

# Sub-microsecond precision: PostgreSQL keeps microseconds; the value must be
# normalised before it enters an event.
SUB_MICRO = "2026-01-01T00:00:00.000000999Z"


# ----------------------------------------------------------------- envelopes
def assert_error_envelope(resp: requests.Response, where: str = "") -> dict:
    """Any response with status >= 400: JSON content type and the seeds' envelope."""
    ctx = (f" [{where}]" if where else "") + describe(resp)
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.startswith("application/json"), f"error response must be application/json, got {ctype!r}" + ctx
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError("error response body is not JSON" + ctx)
    assert isinstance(body, dict), "error body must be an object" + ctx
    assert body.get("success") is False, "error envelope needs success:false" + ctx
    assert isinstance(body.get("error_code"), str) and body["error_code"], "error envelope needs error_code" + ctx
    assert isinstance(body.get("error"), str) and body["error"], "error envelope needs a message" + ctx
    assert isinstance(body.get("request_id"), str) and body["request_id"], "error envelope needs request_id" + ctx
    return body


def assert_sane(resp: requests.Response, where: str = "") -> None:
    """No 5xx; every error carries the envelope."""
    assert resp.status_code < 500, f"server error{' [' + where + ']' if where else ''}" + describe(resp)
    if resp.status_code >= 400:
        assert_error_envelope(resp, where)


def validation_error(resp: requests.Response, field: str | None = None, where: str = "") -> dict:
    """400 VALIDATION_ERROR whose message names `field`."""
    ctx = (f" [{where}]" if where else "") + describe(resp)
    assert resp.status_code == 400, f"expected 400 {VALIDATION_ERROR}" + ctx
    body = assert_error_envelope(resp, where)
    assert body["error_code"] == VALIDATION_ERROR, f"expected error_code {VALIDATION_ERROR}" + ctx
    if field is not None:
        assert field.lower() in body["error"].lower(), f"the message must name the field {field!r}" + ctx
    return body


# ----------------------------------------------------------------- the event log
def event_count(srv: PacaServer) -> int:
    return int(psql("SELECT count(*) FROM events", srv.database_url).strip())


def events_of(srv: PacaServer, where: str) -> list[dict]:
    """Rows of `events` matching a SQL condition, oldest first."""
    out = psql(
        "SELECT coalesce(json_agg(json_build_object('global_position', global_position, 'stream_id', stream_id,"
        " 'stream_type', stream_type, 'version', version, 'event_type', event_type, 'payload', payload)"
        f" ORDER BY global_position), '[]'::json) FROM events WHERE {where}",
        srv.database_url,
    )
    return json.loads(out)


def cli_ok(srv: PacaServer, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    res = srv.cli(*args, timeout=timeout)
    assert res.returncode == 0, (
        f"`paca {' '.join(args)}` exited {res.returncode}\n--- stdout ---\n{res.stdout[-3000:]}"
        f"\n--- stderr ---\n{res.stderr[-3000:]}"
    )
    return res


def verify_ok(srv: PacaServer) -> None:
    cli_ok(srv, "projections", "verify")


def rebuild_ok(srv: PacaServer) -> None:
    cli_ok(srv, "projections", "rebuild")


def force_startup_rebuild(srv: PacaServer) -> None:
    """Make the stored read-model fingerprint differ from the code's, as an upgrade
    that changes the read models does: the next `paca serve` rebuilds on start."""
    psql("UPDATE projection_state SET fingerprint = 'stale-by-test'", srv.database_url)


def body_of(resp: requests.Response):
    body = resp.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return body


# ----------------------------------------------------------------- cursors / misc
def encode_cursor(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def poll_status(fn, want: int, timeout: float = 2.0, interval: float = 0.1) -> requests.Response:
    """Call fn() until it answers `want` or `timeout` seconds pass; return the last response."""
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r.status_code == want or time.monotonic() >= deadline:
            return r
        time.sleep(interval)


__all__ = [n for n in dir() if not n.startswith("_")]

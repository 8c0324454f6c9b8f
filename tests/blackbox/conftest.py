"""Black-box test harness for the real `paca` server binary.

Every test talks HTTP to `$PACA_BIN serve` (default `target/debug/paca`) started as a
subprocess on a free loopback port, against a fresh PostgreSQL database created for
the fixture (dropped at teardown). The server's stdout/stderr go to a log file whose
tail is attached to the report of any failing test.

Environment:
  PACA_BIN           server binary (default <repo>/target/debug/paca)
  TEST_DATABASE_URL  / DATABASE_URL: an admin connection used to CREATE/DROP the
                     per-fixture databases (default postgres://postgres@127.0.0.1:5432/postgres)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PACA_BIN = os.environ.get("PACA_BIN") or str(ROOT / "target" / "debug" / "paca")
if not os.path.isabs(PACA_BIN):
    PACA_BIN = str((ROOT / PACA_BIN).resolve())
ADMIN_DB_URL = (
    os.environ.get("TEST_DATABASE_URL")
    or os.environ.get("DATABASE_URL")
    or "postgres://postgres@127.0.0.1:5432/postgres"
)
HTTP_TIMEOUT = 30
START_TIMEOUT = 60
STOP_TIMEOUT = 10

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Servers whose logs are attached to failing test reports.
_ACTIVE_SERVERS: list["PacaServer"] = []
# Where the log of a server that panicked, or ran under a failing test, is
# kept after teardown (the rest are deleted with their temp dirs).
KEPT_LOGS = Path(os.environ.get("PACA_TEST_LOGS") or ROOT / "target" / "blackbox-logs")


# --------------------------------------------------------------------------- helpers
def unique(prefix: str = "x") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def new_password() -> str:
    # >= 8 chars, recognisable if it ever leaks into a log
    return "Pw-" + secrets.token_urlsafe(12)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_url_for(dbname: str) -> str:
    parts = urllib.parse.urlsplit(ADMIN_DB_URL)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def psql(sql: str, url: str = ADMIN_DB_URL) -> str:
    res = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0:
        raise RuntimeError(f"psql {sql!r} failed: {res.stderr}")
    return res.stdout


def create_database() -> tuple[str, str]:
    name = "paca_bb_" + secrets.token_hex(6)
    psql(f'CREATE DATABASE "{name}"')
    return name, db_url_for(name)


def drop_database(name: str) -> None:
    try:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as e:  # pragma: no cover - best effort cleanup
        print(f"warning: could not drop database {name}: {e}")


def describe(resp: requests.Response) -> str:
    req = resp.request
    body = req.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return (
        f"\n  request:  {req.method} {req.url} body={body!r}"
        f"\n  response: {resp.status_code} {resp.text[:800]!r}"
    )


def ok(resp: requests.Response, status: int = 200):
    """Assert a success envelope with `status` and return its `data`."""
    assert resp.status_code == status, f"expected HTTP {status}" + describe(resp)
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError("response is not JSON" + describe(resp))
    assert isinstance(body, dict) and body.get("success") is True, "expected success envelope" + describe(resp)
    assert "data" in body, "success envelope without data" + describe(resp)
    return body["data"]


def no_content(resp: requests.Response) -> None:
    assert resp.status_code == 204, "expected HTTP 204" + describe(resp)
    assert resp.content == b"", "204 must have an empty body" + describe(resp)


def err(resp: requests.Response, status: int, code: str | None = None) -> dict:
    """Assert an error envelope with `status` (and `error_code` == code)."""
    assert resp.status_code == status, f"expected HTTP {status} {code or ''}" + describe(resp)
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError("error response is not JSON" + describe(resp))
    assert body.get("success") is False, "expected error envelope" + describe(resp)
    assert isinstance(body.get("error"), str) and body["error"], "error envelope needs a message" + describe(resp)
    assert isinstance(body.get("error_code"), str), "error envelope needs error_code" + describe(resp)
    if code is not None:
        assert body["error_code"] == code, f"expected error_code {code}" + describe(resp)
    return body


def set_cookies(resp: requests.Response) -> dict[str, str]:
    """Raw Set-Cookie headers of a response, keyed by cookie name."""
    out = {}
    for raw in resp.raw.headers.getlist("Set-Cookie"):
        name = raw.split("=", 1)[0].strip()
        out[name] = raw
    return out


def cookie_attrs(raw: str) -> tuple[str, dict[str, str]]:
    """Parse a Set-Cookie header into (value, {lower-case attr: value})."""
    parts = [p.strip() for p in raw.split(";")]
    value = parts[0].split("=", 1)[1] if "=" in parts[0] else ""
    attrs = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            attrs[k.strip().lower()] = v.strip()
        elif p:
            attrs[p.lower()] = ""
    return value, attrs


# --------------------------------------------------------------------------- server
class PacaServer:
    """One `paca serve` process (restartable on the same database / data dir)."""

    def __init__(self, name: str, database_url: str | None, data_dir: str, admin_password: str | None = None,
                 jwt_secret: str | None = None, extra_env: dict | None = None):
        self.name = name
        self.database_url = database_url
        self.data_dir = data_dir
        self.admin_username = "admin"
        self.admin_password = admin_password or new_password()
        self.jwt_secret = jwt_secret or secrets.token_hex(32)
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_dir = tempfile.mkdtemp(prefix=f"paca-log-{name}-")
        self.log_path = os.path.join(self.log_dir, "server.log")
        self.starts = 0
        self.last_returncode = None
        # set when a test failed while this server ran: its log is kept
        self.failed = False
        # every secret the tests send to this server (checked against the event log)
        self.secrets: set[str] = {self.admin_password}

    # -- environment -------------------------------------------------------
    def env(self) -> dict:
        env = dict(os.environ)
        for k in ("DATABASE_URL", "PORT", "PACA_DATA_DIR", "JWT_SECRET", "ADMIN_USERNAME", "ADMIN_PASSWORD"):
            env.pop(k, None)
        env.update(
            PORT=str(self.port),
            JWT_SECRET=self.jwt_secret,
            ADMIN_USERNAME=self.admin_username,
            ADMIN_PASSWORD=self.admin_password,
            PACA_DATA_DIR=self.data_dir,
            PACA_BIND="127.0.0.1",  # loopback only (the server's bind-address setting)
            RUST_LOG="info",
            NO_COLOR="1",
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        if path.startswith("/api/"):
            return self.base + path
        return self.base + "/api/v1" + path

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> "PacaServer":
        assert os.path.exists(PACA_BIN), f"server binary not found: {PACA_BIN} (run cargo build)"
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        logf = open(self.log_path, "ab")
        logf.write(f"\n===== start #{self.starts} port {self.port} =====\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(
            [PACA_BIN, "serve"],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=self.log_dir,
            start_new_session=True,
        )
        logf.close()
        if self not in _ACTIVE_SERVERS:
            _ACTIVE_SERVERS.append(self)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"`paca serve` exited early with code {self.proc.returncode}\n--- log ---\n{self.log_tail()}"
                )
            try:
                r = requests.get(self.url("/api/healthz"), timeout=2)
                if r.status_code == 200:
                    return self
                last = f"HTTP {r.status_code} {r.text[:200]}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.2)
        self.kill()
        raise AssertionError(
            f"`paca serve` did not answer GET /api/healthz within {timeout}s (last: {last})\n--- log ---\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the server; assert it exits within `timeout` seconds."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"`paca serve` did not exit within {timeout}s of SIGTERM\n--- log ---\n{self.log_tail()}"
                )
        self.last_returncode = self.proc.returncode
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def restart(self, **env_overrides) -> "PacaServer":
        self.stop()
        if env_overrides:
            for k, v in env_overrides.items():
                if k == "ADMIN_PASSWORD":
                    self.admin_password = v
                    self.secrets.add(v)
                else:
                    self.extra_env[k] = v
        return self.start()

    def log_tail(self, lines: int = 80) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = _ANSI.sub("", f.read().decode("utf-8", "replace")).splitlines()
            return "\n".join(data[-lines:])
        except OSError:
            return "<no log>"

    def panics(self, context: int = 8) -> list[str]:
        """Each panic in the log, with the lines that follow it (the
        location and message; a backtrace when RUST_BACKTRACE is set)."""
        try:
            with open(self.log_path, "rb") as f:
                lines = _ANSI.sub("", f.read().decode("utf-8", "replace")).splitlines()
        except OSError:
            return []
        return ["\n".join(lines[i:i + context]) for i, line in enumerate(lines) if "panicked at" in line]

    def keep_log(self) -> str:
        """Copies the log where it outlives the run (the temp dir does not)."""
        KEPT_LOGS.mkdir(parents=True, exist_ok=True)
        dest = KEPT_LOGS / f"{self.name}-{self.port}-{int(time.time())}.log"
        shutil.copyfile(self.log_path, dest)
        return str(dest)

    def close(self) -> None:
        self.kill()
        if self in _ACTIVE_SERVERS:
            _ACTIVE_SERVERS.remove(self)

    # -- CLI ---------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = self.env()
        env.pop("PORT", None)
        env.pop("RUST_LOG", None)
        return subprocess.run(
            [PACA_BIN, *args], env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, cwd=self.log_dir,
        )

    # -- HTTP --------------------------------------------------------------
    def client(self, **headers) -> "Client":
        return Client(self, headers=headers)

    def login(self, username: str, password: str, remember_me: bool | None = None) -> "Client":
        c = self.client()
        body = {"username": username, "password": password}
        if remember_me is not None:
            body["remember_me"] = remember_me
        r = c.post("/auth/login", json=body)
        data = ok(r)
        assert data == {"message": "logged in"}, describe(r)
        c.last_login = r
        return c

    def admin(self) -> "Client":
        return self.login(self.admin_username, self.admin_password)


class Client:
    """A requests.Session bound to one server (paths are relative to /api/v1)."""

    def __init__(self, server: PacaServer, headers: dict | None = None):
        self.server = server
        self.s = requests.Session()
        if headers:
            self.s.headers.update(headers)
        self.last_login: requests.Response | None = None

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.s.request(method, self.server.url(path), **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    @property
    def access_token(self) -> str | None:
        return self.s.cookies.get("access_token")

    @property
    def refresh_token(self) -> str | None:
        return self.s.cookies.get("refresh_token")

    def me(self) -> dict:
        return ok(self.get("/users/me"))


def bearer(server: PacaServer, token: str) -> Client:
    return server.client(Authorization=f"Bearer {token}")


def api_key_client(server: PacaServer, key: str, style: str = "x-api-key") -> Client:
    if style == "x-api-key":
        return server.client(**{"X-API-Key": key})
    return server.client(Authorization=f"ApiKey {key}")


# --------------------------------------------------------------------------- users
class User:
    def __init__(self, id: str, username: str, password: str, client: Client | None, record: dict):
        self.id = id
        self.username = username
        self.password = password
        self.client = client
        self.record = record


def create_user(server: PacaServer, admin: Client, role: str | None = None, change_password: bool = True,
                prefix: str = "user") -> User:
    """Create a user through the admin API; by default complete the forced password
    change and return a logged-in, fresh client."""
    username = unique(prefix + "_")
    initial = new_password()
    server.secrets.add(initial)
    body = {"username": username, "password": initial, "full_name": f"Test {username}"}
    if role is not None:
        body["role"] = role
    rec = ok(admin.post("/admin/users", json=body), 201)
    if not change_password:
        return User(rec["id"], username, initial, None, rec)
    c = server.login(username, initial)
    final = new_password()
    server.secrets.add(final)
    no_content(c.patch("/users/me/password", json={"current_password": initial, "new_password": final}))
    c = server.login(username, final)
    return User(rec["id"], username, final, c, rec)


# --------------------------------------------------------------------------- fixtures
def _make_server(name: str, **kw) -> tuple[PacaServer, str]:
    dbname, url = create_database()
    data_dir = tempfile.mkdtemp(prefix=f"paca-data-{name}-")
    return PacaServer(name, url, data_dir, **kw), dbname


def _teardown_server(srv: PacaServer, dbname: str | None) -> None:
    panics: list[str] = []
    kept = None
    try:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.stop()  # asserts exit within 10 s of SIGTERM
    finally:
        srv.close()
        if dbname:
            drop_database(dbname)
        panics = srv.panics()
        if srv.failed or panics:
            kept = srv.keep_log()
        shutil.rmtree(srv.data_dir, ignore_errors=True)
        shutil.rmtree(srv.log_dir, ignore_errors=True)
    # A panic is a bug whether or not a test noticed its dropped connection
    # (actix drops the connection of a panicking handler and carries on).
    assert not panics, (
        f"`paca serve` [{srv.name}] panicked {len(panics)} time(s); log kept at {kept}\n\n"
        + "\n\n".join(panics[:5])
    )


@contextmanager
def running_server(name: str, **kw):
    """A started server with its own database and data directory, torn down
    (and checked for panics) on exit. `kw` as for `PacaServer`."""
    srv, dbname = _make_server(name, **kw)
    try:
        srv.start()
        yield srv
    finally:
        _teardown_server(srv, dbname)


@pytest.fixture(scope="session")
def server():
    """The shared server for most tests (one database for the whole session)."""
    with running_server("shared") as srv:
        yield srv


@pytest.fixture(scope="module")
def module_server():
    """A server with its own database for one test module."""
    with running_server("module") as srv:
        yield srv


@pytest.fixture
def restartable_server():
    """A server that the test stops and starts again on the same database."""
    with running_server("restart") as srv:
        yield srv


@pytest.fixture(scope="session")
def admin(server) -> Client:
    return server.admin()


@pytest.fixture(scope="session")
def admin_id(admin) -> str:
    return admin.me()["id"]


@pytest.fixture
def make_user(server, admin):
    def _make(role: str | None = None, change_password: bool = True, prefix: str = "user") -> User:
        return create_user(server, admin, role=role, change_password=change_password, prefix=prefix)

    return _make


@pytest.fixture
def make_project(server, admin):
    def _make(client: Client | None = None, **fields) -> dict:
        body = {"name": fields.pop("name", unique("Project "))}
        body.update(fields)
        return ok((client or admin).post("/projects", json=body), 201)

    return _make


# --------------------------------------------------------------------------- reporting
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in list(_ACTIVE_SERVERS):
            srv.failed = True
            rep.sections.append((f"paca server log [{srv.name}] (tail of {srv.log_path})", srv.log_tail(60)))
            for n, panic in enumerate(srv.panics()[:3]):
                rep.sections.append((f"paca server [{srv.name}] panic {n + 1}", panic))


def is_uuid(v) -> bool:
    try:
        uuid.UUID(str(v))
        return True
    except ValueError:
        return False


def jdump(v) -> str:
    return json.dumps(v, sort_keys=True)

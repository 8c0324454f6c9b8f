"""The first-party GitHub plugin (com.paca.github, seed 002), black box.

The plugin (plugins/github: a C WASI reactor, its migrations and manifest) is
packaged by plugins/github/package.sh into catalog artifacts with SHA256SUMS
(scripts/test.sh does it into target/test-plugins/github-package; this module
runs the script too, which is a no-op when up to date) and installed from a
loopback HTTPS catalog with those checksums. A loopback HTTPS stand-in for
the GitHub API (same test CA) records every call it receives.

Covered: the PAT is stored encrypted (AES-256-GCM, not in plaintext in the
database, decryptable with ENCRYPTION_KEY); repositories are listed through
the token; linking a repository creates the webhook (events push,
pull_request, check_run; callback PUBLIC_URL + /api/v1/plugins/com.paca.github/webhook)
and stores its secret encrypted; a signed pull_request "opened" webhook from
a branch naming a task (<PREFIX>-<n>) links the PR to that task and emits
github.pr_linked; a bad or missing signature is 401 and stores nothing;
manual PR links and branch creation; push webhooks link branches; unlinking
deletes the webhook; deleting a task removes its link rows (task.deleted).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from conftest import ROOT, _make_server, _teardown_server, create_user, describe, err, ok, psql, unique
from test_2_support import add_member
from test_40_plugins import Catalog, events_of, wait_for

GH = "com.paca.github"
SCHEMA = "plugin_data_com_paca_github"
PUBLIC_URL = "https://paca.example.test"
# The server's ENCRYPTION_KEY (read from its data directory by the fixture).
KEY: dict[str, str] = {}
GOOD_TOKEN = "ghp_paca_test_token_0123456789abcdef"
OWNER, REPO = "octo", "hello"
FULL = f"{OWNER}/{REPO}"
HOOK_ID = 4242
SOURCE_SHA = "aa218f56b14c9653891f9e74264a383fa43fefbd"

PLUGINS = Path(os.environ.get("PACA_TEST_PLUGINS") or ROOT / "target" / "test-plugins")
PACKAGE = PLUGINS / "github-package"


# --------------------------------------------------------------------------- the GitHub stand-in
class GitHubStandIn:
    """HTTPS on loopback with the catalog's test certificate; answers the few
    GitHub REST endpoints the plugin calls and records every request."""

    def __init__(self, cert_dir: Path):
        self.calls: list[dict] = []
        self.hooks: dict[int, dict] = {}
        self.refs: dict[str, str] = {"refs/heads/main": SOURCE_SHA}
        self.prs: dict[int, dict] = {}
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                headers = {k.lower(): v for k, v in self.headers.items()}
                call = {"method": self.command, "path": self.path, "headers": headers, "body": body}
                stand_in.calls.append(call)
                status, answer = stand_in.answer(call)
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

            def log_message(self, *a):
                pass

        import ssl

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_dir / "leaf.pem", cert_dir / "leaf.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def repo(self) -> dict:
        return {"id": 99, "name": REPO, "full_name": FULL, "owner": {"login": OWNER}, "private": True,
                "default_branch": "main", "html_url": f"https://github.com/{FULL}", "description": "hi"}

    def pr(self, number: int, head: str, title: str | None = None, state: str = "open") -> dict:
        pr = {"id": 500000 + number, "number": number, "title": title or f"PR {number}", "state": state,
              "html_url": f"https://github.com/{FULL}/pull/{number}", "head": {"ref": head, "sha": SOURCE_SHA},
              "base": {"ref": "main"}, "user": {"login": "octo-dev"}, "merged_at": None, "merged": False}
        self.prs[number] = pr
        return pr

    def answer(self, call: dict) -> tuple[int, object]:
        if call["headers"].get("authorization") != f"Bearer {GOOD_TOKEN}":
            return 401, {"message": "Bad credentials"}
        m, path, body = call["method"], call["path"], call["body"]
        repo = f"/repos/{FULL}"
        if m == "GET" and path == "/user":
            return 200, {"login": "octo", "id": 1}
        if m == "GET" and path.startswith("/user/repos"):
            other = {**self.repo(), "id": 100, "name": "other", "full_name": f"{OWNER}/other", "private": False}
            return 200, [self.repo(), other]
        if m == "GET" and path == repo:
            return 200, self.repo()
        if m == "POST" and path == f"{repo}/hooks":
            hook_id = HOOK_ID + len(self.hooks)
            self.hooks[hook_id] = body
            return 201, {"id": hook_id, "type": "Repository", "name": "web", "active": True,
                         "events": body.get("events"), "config": {"url": body["config"]["url"]}}
        if m == "DELETE" and path.startswith(f"{repo}/hooks/"):
            hook_id = int(path.rsplit("/", 1)[1])
            return (204, None) if self.hooks.pop(hook_id, None) is not None else (404, {"message": "Not Found"})
        if m == "GET" and path.startswith(f"{repo}/pulls/"):
            number = int(path.rsplit("/", 1)[1])
            pr = self.prs.get(number)
            return (200, pr) if pr else (404, {"message": "Not Found"})
        if m == "GET" and path.startswith(f"{repo}/git/ref/"):
            ref = "refs/" + path[len(f"{repo}/git/ref/"):]
            sha = self.refs.get(ref)
            return (200, {"ref": ref, "object": {"sha": sha, "type": "commit"}}) if sha else \
                (404, {"message": "Not Found"})
        if m == "POST" and path == f"{repo}/git/refs":
            if body["ref"] in self.refs:
                return 422, {"message": "Reference already exists"}
            self.refs[body["ref"]] = body["sha"]
            return 201, {"ref": body["ref"], "object": {"sha": body["sha"], "type": "commit"}}
        return 404, {"message": "Not Found"}

    def called(self, method: str, path: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method and c["path"] == path]


# --------------------------------------------------------------------------- helpers
def package() -> Path:
    res = subprocess.run(["bash", str(ROOT / "plugins" / "github" / "package.sh"), str(PACKAGE)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"plugins/github/package.sh failed:\n{res.stdout}\n{res.stderr}"
    return PACKAGE


def publish(catalog: Catalog, pkg: Path) -> dict[str, str]:
    """The packaged artifacts in the catalog, with the checksums of SHA256SUMS
    (checked here against the files)."""
    sums = {}
    for line in (pkg / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name.lstrip("*")] = digest
    version = json.loads((pkg / "plugin.json").read_text())["version"]
    entry = {"name": GH, "display_name": "GitHub", "description": "GitHub integration", "version": version,
             "artifacts": {}}
    for kind in ("manifest", "backend", "migrations"):
        data = (pkg / f"{kind}.tar.gz").read_bytes()
        assert hashlib.sha256(data).hexdigest() == sums[f"{kind}.tar.gz"], f"SHA256SUMS is stale for {kind}"
        path = f"/github/{version}/{kind}.tar.gz"
        catalog.files[path] = data
        entry["artifacts"][f"{kind}_tar_gz_url"] = catalog.url(path)
        entry["artifacts"][f"{kind}_tar_gz_sha256"] = sums[f"{kind}.tar.gz"]
    catalog.files["/catalog.json"] = json.dumps({"schema_version": 1, "source": "test", "plugins": [entry]}).encode()
    return sums


def url(pid: str, sub: str) -> str:
    return f"/plugins/{GH}/projects/{pid}/{sub}"


def q(srv, sql: str) -> str:
    return psql(sql, srv.database_url).strip()


def decrypt(blob_b64: str) -> bytes:
    """The plugin's storage format: base64(nonce(12) || ciphertext || tag(16)),
    AES-256-GCM under ENCRYPTION_KEY with the plugin name as AAD."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = base64.b64decode(blob_b64)
    return AESGCM(bytes.fromhex(KEY["hex"])).decrypt(blob[:12], blob[12:], GH.encode())


def webhook(srv, event: str, payload: dict, secret: str | None, signature: str | None = None):
    raw = json.dumps(payload).encode()  # ensure_ascii: \u escapes in the body
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
               "X-GitHub-Delivery": unique("delivery")}
    if signature is None and secret is not None:
        signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return requests.post(srv.url(f"/api/v1/plugins/{GH}/webhook"), data=raw, headers=headers, timeout=30)


def pr_payload(gh: GitHubStandIn, action: str, number: int, head: str, title: str | None = None) -> dict:
    return {"action": action, "number": number, "pull_request": gh.pr(number, head, title),
            "repository": {"id": 99, "name": REPO, "full_name": FULL, "owner": {"login": OWNER}},
            "sender": {"login": "octo-dev"}}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def catalog():
    tmp = Path(tempfile.mkdtemp(prefix="paca-gh-catalog-"))
    cat = Catalog(tmp)
    cat.tmp = tmp
    yield cat
    cat.httpd.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def github(catalog):
    gh = GitHubStandIn(catalog.tmp)
    yield gh
    gh.httpd.shutdown()


@pytest.fixture(scope="module")
def gsrv(catalog, github):
    pkg = package()
    srv, dbname = _make_server(
        "github",
        extra_env={
            "PLUGINS_MARKETPLACE_CATALOG_URL": catalog.url("/catalog.json"),
            # TEST-ONLY settings: allow the loopback TLS stand-ins.
            "PACA_TEST_FETCH_ALLOW_LOOPBACK": "1",
            "PACA_TEST_FETCH_CA_FILE": str(catalog.ca),
            # No ENCRYPTION_KEY: the plugin gets the key the server generated
            # in its data directory (zero configuration).
            "PACA_PLUGIN_CONFIG_PUBLIC_URL": PUBLIC_URL,
            "PACA_PLUGIN_CONFIG_GITHUB_API_URL": github.url,
            "PLUGINS_CALL_TIMEOUT": "15s",
        },
    )
    try:
        srv.start()
        KEY["hex"] = (Path(srv.data_dir) / "encryption_key").read_text().strip()
        assert len(KEY["hex"]) == 64, "the server generates a 32-byte ENCRYPTION_KEY"
        publish(catalog, pkg)
        data = ok(srv.admin().post("/admin/plugins/marketplace/install", json={"name": GH}), 201)
        assert data["name"] == GH and data["enabled"] is True, data
        yield srv
    finally:
        _teardown_server(srv, dbname)


@pytest.fixture(scope="module")
def world(gsrv):
    admin = gsrv.admin()
    project = ok(admin.post("/projects", json={"name": unique("GitHub "), "description": "github plugin"}), 201)
    pid = project["id"]
    # Created before the repository is linked: found through the backfill.
    early = ok(admin.post(f"/projects/{pid}/tasks", json={"title": "Early task"}), 201)
    c = gsrv.client()
    wait_for(lambda: admin.get(url(pid, "github")).status_code == 200, what=f"{GH} to serve")
    return SimpleNamespace(admin=admin, pid=pid, prefix=project["task_id_prefix"], early=early, anon=c)


# --------------------------------------------------------------------------- tests
def test_installed_from_checksummed_catalog_artifacts(gsrv):
    plugin = next(p for p in ok(gsrv.client().get("/plugins"))["plugins"] if p["name"] == GH)
    assert plugin["enabled"] is True
    backend = plugin["manifest"]["backend"]
    assert {"task.deleted", "project.deleted"} <= set(backend["eventSubscriptions"])
    assert set(backend["allowedConfigKeys"]) == {"ENCRYPTION_KEY", "PUBLIC_URL", "GITHUB_API_URL"}
    installed = [e for e in events_of(gsrv, "plugin.installed") if e["payload"]["name"] == GH]
    assert len(installed) == 1 and installed[0]["payload"]["source"] == "catalog", installed
    # The plugin's tables exist in its own schema.
    tables = q(gsrv, f"SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables "
                     f"WHERE table_schema = '{SCHEMA}'")
    for t in ("github_integrations", "github_repositories", "github_pull_requests", "github_task_pr_links",
              "github_task_branches"):
        assert t in tables.split(","), tables


def test_routes_need_a_member(gsrv, world):
    err(world.anon.get(url(world.pid, "github")), 401)
    err(world.anon.post(url(world.pid, "github/token"), json={"token": GOOD_TOKEN}), 401)


def test_token_is_stored_encrypted(gsrv, world, github):
    admin, pid = world.admin, world.pid
    status = ok(admin.get(url(pid, "github")))
    assert status["connected"] is False and status["encryption_configured"] is True, status
    assert status["webhook_url"] == f"{PUBLIC_URL}/api/v1/plugins/{GH}/webhook", status
    err(admin.post(url(pid, "github/token"), json={}), 400, "BAD_REQUEST")
    err(admin.post(url(pid, "github/token"), json={"token": "ghp_wrong"}), 400, "GITHUB_TOKEN_INVALID")
    data = ok(admin.post(url(pid, "github/token"), json={"token": GOOD_TOKEN}))
    assert data["connected"] is True and data["login"] == "octo", data
    assert github.called("GET", "/user")[-1]["headers"]["authorization"] == f"Bearer {GOOD_TOKEN}"
    stored = q(gsrv, f"SELECT access_token_enc FROM {SCHEMA}.github_integrations WHERE project_id = '{pid}'")
    assert stored and GOOD_TOKEN not in stored, stored
    assert q(gsrv, f"SELECT count(*) FROM {SCHEMA}.github_integrations "
                   f"WHERE access_token_enc LIKE '%{GOOD_TOKEN}%'") == "0"
    assert decrypt(stored) == GOOD_TOKEN.encode()
    assert ok(admin.get(url(pid, "github")))["connected"] is True
    # Replacing it re-encrypts with a fresh nonce.
    ok(admin.post(url(pid, "github/token"), json={"token": GOOD_TOKEN}))
    again = q(gsrv, f"SELECT access_token_enc FROM {SCHEMA}.github_integrations WHERE project_id = '{pid}'")
    assert again != stored and decrypt(again) == GOOD_TOKEN.encode()


def test_lists_repositories_through_the_token(gsrv, world, github):
    repos = ok(world.admin.get(url(world.pid, "github/repositories")))
    assert [r["full_name"] for r in repos] == [FULL, f"{OWNER}/other"], repos
    assert repos[0]["default_branch"] == "main" and repos[0]["owner"] == OWNER and repos[0]["private"] is True
    call = [c for c in github.calls if c["path"].startswith("/user/repos")][-1]
    assert call["headers"]["authorization"] == f"Bearer {GOOD_TOKEN}"


def test_link_repository_creates_the_webhook(gsrv, world, github):
    admin, pid = world.admin, world.pid
    err(admin.post(url(pid, "github/linked-repositories"), json={"owner": "bad owner", "repo_name": REPO}), 400)
    err(admin.post(url(pid, "github/linked-repositories"), json={"owner": OWNER, "repo_name": "missing"}), 404)
    # The task index is backfilled from tasks_list when a repository is linked.
    early_ref = f"SELECT count(*) FROM {SCHEMA}.github_task_refs WHERE task_id = '{world.early['id']}'"
    wait_for(lambda: q(gsrv, early_ref) == "1", what="task.created indexed by the plugin")
    q(gsrv, f"DELETE FROM {SCHEMA}.github_task_refs WHERE task_id = '{world.early['id']}'")
    repo = ok(admin.post(url(pid, "github/linked-repositories"), json={"owner": OWNER, "repo_name": REPO}), 201)
    assert q(gsrv, early_ref) == "1", "the link did not backfill the task index"
    assert repo["full_name"] == FULL and repo["webhook_id"] == HOOK_ID and repo["default_branch"] == "main", repo
    created = github.called("POST", f"/repos/{FULL}/hooks")
    assert len(created) == 1, github.calls
    hook = created[0]["body"]
    assert sorted(hook["events"]) == ["check_run", "pull_request", "push"], hook
    assert hook["config"]["url"] == f"{PUBLIC_URL}/api/v1/plugins/{GH}/webhook", hook
    assert hook["config"]["content_type"] == "json" and len(hook["config"]["secret"]) >= 32, hook
    secret = hook["config"]["secret"]
    stored = q(gsrv, f"SELECT webhook_secret_enc FROM {SCHEMA}.github_repositories WHERE id = '{repo['id']}'")
    assert secret not in stored and decrypt(stored) == secret.encode()
    err(admin.post(url(pid, "github/linked-repositories"), json={"owner": OWNER, "repo_name": REPO}), 409)
    assert len(github.called("POST", f"/repos/{FULL}/hooks")) == 1
    linked = ok(admin.get(url(pid, "github/linked-repositories")))
    assert [r["id"] for r in linked] == [repo["id"]] and "webhook_secret_enc" not in linked[0]
    assert ok(admin.get(url(pid, "github")))["linked_repositories"] == 1
    world.repo, world.secret = repo, secret


def test_signed_pr_webhook_links_the_referenced_task(gsrv, world, github):
    admin, pid = world.admin, world.pid
    # A task created after linking: indexed from task.created.
    task = ok(admin.post(f"/projects/{pid}/tasks", json={"title": "Auto-linked"}), 201)
    number = task.get("task_number")
    assert isinstance(number, int), task
    wait_for(lambda: q(gsrv, f"SELECT count(*) FROM {SCHEMA}.github_task_refs WHERE task_id = '{task['id']}'") == "1",
             what="task.created indexed by the plugin")
    branch = f"feature/{world.prefix}-{number}-x"
    title = 'Fix "quotes" \u2014 \u00fcnicode'
    r = webhook(gsrv, "pull_request", pr_payload(github, "opened", 7, branch, title), world.secret)
    assert r.status_code == 200 and r.json()["success"] is True, describe(r)
    prs = ok(admin.get(url(pid, f"tasks/{task['id']}/github/pull-requests")))
    assert len(prs) == 1, prs
    pr = prs[0]
    assert (pr["pr_number"], pr["head_branch"], pr["base_branch"], pr["author"], pr["state"]) == \
        (7, branch, "main", "octo-dev", "open"), pr
    assert pr["title"] == title and pr["html_url"].endswith("/pull/7"), pr
    linked = [e for e in events_of(gsrv, "github.pr_linked")
              if e["payload"]["payload"].get("task_id") == task["id"]]
    assert len(linked) == 1, events_of(gsrv, "github.pr_linked")
    assert linked[0]["payload"]["payload"]["pr_number"] == 7
    assert linked[0]["metadata"]["extra"]["plugin"] == GH
    # The early task (indexed by the backfill) is found too, case-insensitively.
    early_branch = f"fix/{world.prefix.lower()}-{world.early['task_number']}"
    r = webhook(gsrv, "pull_request", pr_payload(github, "opened", 8, early_branch), world.secret)
    assert r.status_code == 200, describe(r)
    assert [p["pr_number"] for p in ok(admin.get(url(pid, f"tasks/{world.early['id']}/github/pull-requests")))] == [8]
    # An update (closed): the cache follows and github.pr_updated is emitted.
    payload = pr_payload(github, "closed", 7, branch, title)
    payload["pull_request"].update(state="closed", merged=True, merged_at="2026-12-04T10:00:00Z")
    r = webhook(gsrv, "pull_request", payload, world.secret)
    assert r.status_code == 200, describe(r)
    pr = ok(admin.get(url(pid, f"tasks/{task['id']}/github/pull-requests")))[0]
    assert pr["state"] == "merged" and pr["merged_at"].startswith("2026-12-04T10:00:00"), pr
    updated = [e for e in events_of(gsrv, "github.pr_updated") if e["payload"]["payload"].get("pr_number") == 7]
    assert updated and updated[-1]["payload"]["payload"]["action"] == "closed", updated
    world.task = task


def test_bad_signature_is_refused_and_stores_nothing(gsrv, world, github):
    before = q(gsrv, f"SELECT count(*) FROM {SCHEMA}.github_pull_requests")
    payload = pr_payload(github, "opened", 31, f"feature/{world.prefix}-{world.task['task_number']}-evil")
    err(webhook(gsrv, "pull_request", payload, "not-the-secret"), 401, "GITHUB_SIGNATURE_INVALID")
    raw_sig = "sha256=" + hmac.new(world.secret.encode(), json.dumps(payload).encode(), hashlib.sha256).hexdigest()
    tampered = {**payload, "number": 32}
    err(webhook(gsrv, "pull_request", tampered, None, signature=raw_sig), 401, "GITHUB_SIGNATURE_INVALID")
    err(webhook(gsrv, "pull_request", payload, None), 401, "GITHUB_SIGNATURE_MISSING")
    err(webhook(gsrv, "pull_request", payload, None, signature="sha1=abc"), 401)
    assert q(gsrv, f"SELECT count(*) FROM {SCHEMA}.github_pull_requests") == before
    assert q(gsrv, f"SELECT count(*) FROM {SCHEMA}.github_pull_requests WHERE pr_number IN (31, 32)") == "0"
    prs = ok(world.admin.get(url(world.pid, f"tasks/{world.task['id']}/github/pull-requests")))
    assert [p["pr_number"] for p in prs] == [7]


def test_manual_pull_request_link(gsrv, world, github):
    admin, pid, tid = world.admin, world.pid, world.early["id"]
    github.pr(12, "some-branch", "Manual")
    body = {"repo_id": world.repo["id"], "pr_number": 12}
    err(admin.post(url(pid, f"tasks/{tid}/github/pull-requests"), json={"repo_id": world.repo["id"]}), 400)
    err(admin.post(url(pid, f"tasks/{tid}/github/pull-requests"), json={**body, "pr_number": 404}), 404)
    pr = ok(admin.post(url(pid, f"tasks/{tid}/github/pull-requests"), json=body), 201)
    assert pr["pr_number"] == 12 and pr["title"] == "Manual", pr
    err(admin.post(url(pid, f"tasks/{tid}/github/pull-requests"), json=body), 409)
    assert sorted(p["pr_number"] for p in ok(admin.get(url(pid, f"tasks/{tid}/github/pull-requests")))) == [8, 12]
    ok(admin.delete(url(pid, f"tasks/{tid}/github/pull-requests/{pr['id']}")))
    err(admin.delete(url(pid, f"tasks/{tid}/github/pull-requests/{pr['id']}")), 404)
    assert [p["pr_number"] for p in ok(admin.get(url(pid, f"tasks/{tid}/github/pull-requests")))] == [8]
    err(admin.get(url(pid, "tasks/00000000-0000-0000-0000-000000000000/github/pull-requests")), 404)


def test_create_branch_and_push_webhook(gsrv, world, github):
    admin, pid, tid = world.admin, world.pid, world.task["id"]
    name = f"feat/{world.prefix}-{world.task['task_number']}-github-integration"
    body = {"repo_id": world.repo["id"], "branch_name": name, "source_branch": "main"}
    err(admin.post(url(pid, f"tasks/{tid}/github/branches"), json={**body, "branch_name": "bad..name"}), 400)
    branch = ok(admin.post(url(pid, f"tasks/{tid}/github/branches"), json=body), 201)
    assert branch["branch_name"] == name and branch["repo_id"] == world.repo["id"], branch
    assert github.called("GET", f"/repos/{FULL}/git/ref/heads/main")
    created = github.called("POST", f"/repos/{FULL}/git/refs")
    assert created[-1]["body"] == {"ref": f"refs/heads/{name}", "sha": SOURCE_SHA}, created
    err(admin.post(url(pid, f"tasks/{tid}/github/branches"), json=body), 409)
    assert [b["branch_name"] for b in ok(admin.get(url(pid, f"tasks/{tid}/github/branches")))] == [name]
    assert [e for e in events_of(gsrv, "github.branch_linked") if e["payload"]["payload"].get("branch_name") == name]
    # A push of a new branch naming the early task links it.
    pushed = f"{world.prefix}-{world.early['task_number']}-hotfix"
    payload = {"ref": f"refs/heads/{pushed}", "created": True, "deleted": False,
               "repository": {"full_name": FULL}, "after": SOURCE_SHA}
    r = webhook(gsrv, "push", payload, world.secret)
    assert r.status_code == 200, describe(r)
    early = ok(admin.get(url(pid, f"tasks/{world.early['id']}/github/branches")))
    assert [b["branch_name"] for b in early] == [pushed], early
    # A PR opened from the branch created in Paca links through the branch.
    r = webhook(gsrv, "pull_request", pr_payload(github, "opened", 40, name), world.secret)
    assert r.status_code == 200, describe(r)
    assert sorted(p["pr_number"] for p in ok(admin.get(url(pid, f"tasks/{tid}/github/pull-requests")))) == [7, 40]


def test_viewer_reads_but_cannot_change(gsrv, world):
    admin, pid = world.admin, world.pid
    viewer = create_user(gsrv, admin, prefix="gh_viewer")
    add_member(admin, pid, viewer.id, "Viewer")
    c = viewer.client
    assert ok(c.get(url(pid, "github")))["connected"] is True
    assert [r["full_name"] for r in ok(c.get(url(pid, "github/linked-repositories")))] == [FULL]
    assert ok(c.get(url(pid, f"tasks/{world.task['id']}/github/pull-requests")))
    err(c.post(url(pid, "github/token"), json={"token": "ghp_other"}), 403)
    err(c.delete(url(pid, "github/token")), 403)
    err(c.get(url(pid, "github/repositories")), 403)
    err(c.delete(url(pid, f"github/linked-repositories/{world.repo['id']}")), 403)
    err(c.post(url(pid, f"tasks/{world.task['id']}/github/pull-requests"),
               json={"repo_id": world.repo["id"], "pr_number": 12}), 403)
    stored = q(gsrv, f"SELECT access_token_enc FROM {SCHEMA}.github_integrations WHERE project_id = '{pid}'")
    assert decrypt(stored) == GOOD_TOKEN.encode()
    outsider = create_user(gsrv, admin, prefix="gh_outsider")
    err(outsider.client.get(url(pid, "github")), 403)


def test_task_deleted_removes_its_links(gsrv, world):
    admin, pid, tid = world.admin, world.pid, world.task["id"]
    count = (f"SELECT (SELECT count(*) FROM {SCHEMA}.github_task_pr_links WHERE task_id = '{tid}') + "
             f"(SELECT count(*) FROM {SCHEMA}.github_task_branches WHERE task_id = '{tid}')")
    assert int(q(gsrv, count)) == 3
    assert ok(admin.delete(f"/projects/{pid}/tasks/{tid}")) == {"message": "task deleted"}
    wait_for(lambda: q(gsrv, count) == "0", what="task.deleted cleanup")
    # The cached PRs stay (they belong to the repository).
    assert q(gsrv, f"SELECT count(*) FROM {SCHEMA}.github_pull_requests WHERE pr_number = 7") == "1"


def test_unlink_repository_deletes_the_webhook(gsrv, world, github):
    admin, pid, rid = world.admin, world.pid, world.repo["id"]
    data = ok(admin.delete(url(pid, f"github/linked-repositories/{rid}")))
    assert data["deleted"] is True and data["webhook_deleted"] is True, data
    assert github.called("DELETE", f"/repos/{FULL}/hooks/{HOOK_ID}")
    assert HOOK_ID not in github.hooks
    assert ok(admin.get(url(pid, "github/linked-repositories"))) == []
    assert q(gsrv, f"SELECT count(*) FROM {SCHEMA}.github_pull_requests WHERE repo_id = '{rid}'") == "0"
    err(admin.delete(url(pid, f"github/linked-repositories/{rid}")), 404)
    # Deliveries for an unlinked repository are not accepted.
    r = webhook(gsrv, "pull_request", pr_payload(github, "opened", 50, "x"), world.secret)
    assert r.status_code == 404, describe(r)


def test_delete_token(gsrv, world):
    admin, pid = world.admin, world.pid
    ok(admin.delete(url(pid, "github/token")))
    assert q(gsrv, f"SELECT count(*) FROM {SCHEMA}.github_integrations WHERE project_id = '{pid}'") == "0"
    assert ok(admin.get(url(pid, "github")))["connected"] is False
    err(admin.delete(url(pid, "github/token")), 404)
    err(admin.get(url(pid, "github/repositories")), 400, "GITHUB_NOT_CONNECTED")


def test_project_deleted_removes_everything_and_its_webhooks(gsrv, github):
    admin = gsrv.admin()
    pid = ok(admin.post("/projects", json={"name": unique("Doomed "), "description": "to delete"}), 201)["id"]
    task = ok(admin.post(f"/projects/{pid}/tasks", json={"title": "Doomed task"}), 201)
    ok(admin.post(url(pid, "github/token"), json={"token": GOOD_TOKEN}))
    repo = ok(admin.post(url(pid, "github/linked-repositories"), json={"owner": OWNER, "repo_name": REPO}), 201)
    github.pr(60, "any", "Doomed PR")
    ok(admin.post(url(pid, f"tasks/{task['id']}/github/pull-requests"),
                  json={"repo_id": repo["id"], "pr_number": 60}), 201)
    hook = repo["webhook_id"]
    assert hook in github.hooks
    rows = (f"SELECT (SELECT count(*) FROM {SCHEMA}.github_integrations WHERE project_id = '{pid}') + "
            f"(SELECT count(*) FROM {SCHEMA}.github_repositories WHERE project_id = '{pid}') + "
            f"(SELECT count(*) FROM {SCHEMA}.github_pull_requests WHERE project_id = '{pid}') + "
            f"(SELECT count(*) FROM {SCHEMA}.github_task_pr_links WHERE task_id = '{task['id']}')")
    assert q(gsrv, rows) == "4"
    ok(admin.delete(f"/projects/{pid}"))
    wait_for(lambda: q(gsrv, rows) == "0", what="project.deleted cleanup")
    assert hook not in github.hooks, "the webhook was not removed from GitHub"
    assert github.called("DELETE", f"/repos/{FULL}/hooks/{hook}")


# --------------------------------------------------------------------------- crypto and configuration
def test_crypto_known_vectors(tmp_path):
    """plugins/github/backend/crypto.c built for the host: NIST SHA-256,
    RFC 4231 HMAC-SHA256, GCM spec test cases 13/14/16, then AES-256-GCM
    cross-checked against python `cryptography` both ways."""
    cc = shutil.which("clang") or shutil.which("cc")
    if not cc:
        pytest.skip("no host C compiler")
    src = ROOT / "plugins" / "github"
    exe = tmp_path / "crypto_test"
    res = subprocess.run([cc, "-O2", "-o", str(exe), str(src / "test" / "crypto_test.c"),
                          str(src / "backend" / "crypto.c")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "all passed" in res.stdout, res.stdout
    pytest.importorskip("cryptography")
    import sys

    res = subprocess.run([sys.executable, str(src / "test" / "gcm_cross.py"), str(exe)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def bare_srv(github, catalog):
    """A server with an invalid ENCRYPTION_KEY and no PUBLIC_URL; the
    packaged directory installed with the CLI."""
    pkg = package()
    srv, dbname = _make_server(
        "github-bare",
        extra_env={
            "ENCRYPTION_KEY": "not-a-key",
            "PACA_TEST_FETCH_ALLOW_LOOPBACK": "1",
            "PACA_TEST_FETCH_CA_FILE": str(catalog.ca),
            "PACA_PLUGIN_CONFIG_GITHUB_API_URL": github.url,
        },
    )
    try:
        srv.start()
        res = srv.cli("plugins", "install", str(pkg))
        assert res.returncode == 0, f"paca plugins install failed:\n{res.stdout}\n{res.stderr}"
        yield srv
    finally:
        _teardown_server(srv, dbname)


def test_refuses_secrets_without_key_and_links_without_public_url(bare_srv, github):
    admin = bare_srv.admin()
    pid = ok(admin.post("/projects", json={"name": unique("Bare "), "description": "no config"}), 201)["id"]
    wait_for(lambda: admin.get(url(pid, "github")).status_code == 200, what=f"{GH} to serve")
    status = ok(admin.get(url(pid, "github")))
    assert status["encryption_configured"] is False and status["webhook_url"] is None, status
    body = err(admin.post(url(pid, "github/token"), json={"token": GOOD_TOKEN}), 500, "ENCRYPTION_KEY_NOT_CONFIGURED")
    assert "ENCRYPTION_KEY" in body["error"]
    assert q(bare_srv, f"SELECT count(*) FROM {SCHEMA}.github_integrations") == "0"
    body = err(admin.post(url(pid, "github/linked-repositories"), json={"owner": OWNER, "repo_name": REPO}), 400,
               "PUBLIC_URL_NOT_CONFIGURED")
    assert "PUBLIC_URL" in body["error"]
    assert q(bare_srv, f"SELECT count(*) FROM {SCHEMA}.github_repositories") == "0"

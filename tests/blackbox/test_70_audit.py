"""Audit and replay tooling (issue 17), against the real `paca serve`:

- who did what: actions by a user (session cookie, Bearer, GraphQL), by an agent
  member (shared agent key + X-Agent-ID) and by the CLI (`paca plugins install`)
  show up in `paca audit --json` and `GET /api/v1/admin/audit` with the right
  actor and source; every filter; keyset cursor paging returns each event once,
  newest first; bad input is a 400 BAD_REQUEST envelope;
- `audit.read` is SUPER_ADMIN's: ADMIN and USER get 403; a project Admin reads
  `GET /projects/:id/audit` of that project only;
- correlation: `GET /admin/audit/requests/:id` returns a comment and the
  `notification.created` its mention caused (causation chain);
- a tamper-evident log: `paca events seal|head|verify`, a payload edited with SQL
  and a deleted row are named by position;
- `paca events export` -> `paca events import` into a fresh database -> a second
  server serves identical GET responses, and the chain head is the same;
- `paca subscriptions list|reset|pause|resume`: replaying the notifications
  consumer from 0 creates no duplicate notification.

The module server runs with an agent key and no agent runner; the tamper,
export/import and subscription tests each get their own database and server.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import (
    PACA_BIN,
    PacaServer,
    _make_server,
    _teardown_server,
    bearer,
    create_database,
    create_user,
    describe,
    drop_database,
    err,
    is_uuid,
    ok,
    psql,
    unique,
)
from test_2_support import P, add_member, blocks, create_sprint, create_task, member_id, patch_task, statuses_of

AGENT_KEY = "agent-key-" + secrets.token_hex(16)

ITEM_FIELDS = {"position", "event_id", "recorded_at", "event_type", "stream_type", "stream_id", "version",
               "project_id", "actor", "source", "request_id", "correlation_id", "causation_id", "summary", "object",
               "payload"}
ACTOR_KINDS = {"user", "agent", "plugin", "system"}
SOURCES = {"rest", "graphql", "mcp", "runner", "plugin", "cli", "system"}
ACTOR_ID_KEYS = ("id", "user_id", "member_id", "agent_id", "api_key_id", "plugin_id")
HEAD_RE = re.compile(r"seq\s+(\d+)\s+position\s+(\d+)\s+hash\s+([0-9a-fA-F]{16,})")
TABLE_COLUMNS = ("WHEN", "WHO", "SOURCE", "WHAT", "OBJECT")

# A plugin in WebAssembly text (the host compiles backend.wat): exports its
# memory, an allocator, Init and HandleRequest. Enough for `paca plugins install`.
MINIMAL_PLUGIN_WAT = """(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "paca_malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "Init") (result i32)
    (i32.const 0))
  (func (export "HandleRequest") (param i32 i32) (result i64)
    (i64.const 0)))
"""


# --------------------------------------------------------------------------- helpers
def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value) -> datetime:
    assert isinstance(value, str), f"not a timestamp: {value!r}"
    m = re.match(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$", value)
    assert m, f"not an RFC3339 timestamp: {value!r}"
    frac = (m.group(3) or ".0")[1:7].ljust(6, "0")
    tz = m.group(4)
    tz = "+00:00" if tz in ("Z", "z") else (tz if ":" in tz else tz[:3] + ":" + tz[3:])
    return datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}.{frac}{tz}")


def wait_for(fn, timeout: float = 10.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {str(last)[:2000]}")
        time.sleep(interval)


def cli_ok(srv: PacaServer, *args: str) -> subprocess.CompletedProcess:
    res = srv.cli(*args)
    assert res.returncode == 0, (f"`paca {' '.join(args)}` exited {res.returncode}\n"
                                 f"stdout: {res.stdout[-3000:]}\nstderr: {res.stderr[-3000:]}")
    return res


def cli_as(srv: PacaServer, os_user: str, *args: str) -> subprocess.CompletedProcess:
    """`paca ARGS` as srv.cli runs it, with USER/LOGNAME naming the operator."""
    env = srv.env()
    env.pop("PORT", None)
    env.pop("RUST_LOG", None)
    env.update(USER=os_user, LOGNAME=os_user)
    res = subprocess.run([PACA_BIN, *args], env=env, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL, cwd=srv.log_dir)
    assert res.returncode == 0, (f"`paca {' '.join(args)}` exited {res.returncode}\n"
                                 f"stdout: {res.stdout[-3000:]}\nstderr: {res.stderr[-3000:]}")
    return res


def cli_names(os_user: str) -> set:
    """What the audit may call an operator: `cli:<os user>`, the OS user from the
    environment or from the process's uid."""
    return {f"cli:{os_user}", f"cli:{pwd.getpwuid(os.getuid()).pw_name}"}


def json_lines(text: str, what: str) -> list:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"line {n} of {what} is not JSON: {line[:300]!r}")
    return out


def event_count(srv: PacaServer) -> int:
    return int(psql("SELECT count(*) FROM events", srv.database_url).strip())


def no_secrets(srv: PacaServer, text: str, where: str, hashes_allowed: bool = False) -> None:
    leaked = [s for s in srv.secrets if s and s in text]
    assert not leaked, f"{len(leaked)} secret(s) (passwords / keys) appear in {where}"
    if not hashes_allowed:  # an export carries the write side's credential hashes, nothing else does
        assert "$argon2" not in text, f"something looking like an argon2 hash appears in {where}"
    assert srv.jwt_secret not in text, f"JWT_SECRET appears in {where}"


def check_item(it: dict) -> dict:
    """The audit item shape of the spec (REST `data.events[i]`, CLI `--json` lines)."""
    assert isinstance(it, dict), it
    missing = ITEM_FIELDS - set(it)
    assert not missing, f"audit item lacks {sorted(missing)}: {json.dumps(it)[:800]}"
    assert isinstance(it["position"], int) and it["position"] > 0, it
    assert is_uuid(it["event_id"]) and is_uuid(it["stream_id"]), it
    parse_ts(it["recorded_at"])
    assert isinstance(it["event_type"], str) and it["event_type"], it
    assert isinstance(it["stream_type"], str) and it["stream_type"], it
    assert isinstance(it["version"], int), it
    assert it["project_id"] is None or is_uuid(it["project_id"]), it
    assert it["causation_id"] is None or is_uuid(it["causation_id"]), it
    for k in ("request_id", "correlation_id"):
        assert it[k] is None or isinstance(it[k], str), it
    actor = it["actor"]
    assert isinstance(actor, dict) and actor.get("kind") in ACTOR_KINDS, f"bad actor: {it}"
    assert isinstance(actor.get("name"), str) and actor["name"], f"actor without a name: {it}"
    assert "id" in actor and (actor["id"] is None or is_uuid(actor["id"])), f"actor id: {it}"
    for k in ACTOR_ID_KEYS[1:]:
        if k in actor:
            assert actor[k] is not None and is_uuid(actor[k]), f"actor.{k} present but not a uuid: {it}"
    assert it["source"] in SOURCES, f"unknown source {it['source']!r}: {it}"
    summary = it["summary"]
    assert isinstance(summary, str) and summary.strip() and "\n" not in summary, f"summary must be one line: {it}"
    obj = it["object"]
    assert isinstance(obj, dict) and {"type", "id", "label"} <= set(obj), f"object needs type/id/label: {it}"
    assert isinstance(it["payload"], dict), it
    return it


def actor_ids(it: dict) -> set:
    a = it["actor"]
    return {str(a[k]) for k in ACTOR_ID_KEYS if a.get(k)}


def ids_of(items) -> list:
    return [x["event_id"] for x in items]


def created_streams(items, event_type: str = "task.created") -> set:
    return {x["stream_id"] for x in items if x["event_type"] == event_type}


def one(items, event_type: str, stream_id: str | None = None, pred=None) -> dict:
    found = [x for x in items if x["event_type"] == event_type and (stream_id is None or x["stream_id"] == stream_id)
             and (pred is None or pred(x))]
    assert len(found) == 1, (f"expected exactly one {event_type} (stream {stream_id}) in the audit, found {len(found)}; "
                             f"types seen: {sorted({x['event_type'] for x in items})}")
    return found[0]


# ----------------------------------------------------------------- audit over REST / CLI
def audit_page(client, path: str = "/admin/audit", **params) -> dict:
    r = client.get(path, params=params)
    data = ok(r)
    assert isinstance(data, dict) and isinstance(data.get("events"), list) and "next_cursor" in data, (
        "expected {events: [...], next_cursor}" + describe(r))
    assert data["next_cursor"] is None or (isinstance(data["next_cursor"], str) and data["next_cursor"]), describe(r)
    for it in data["events"]:
        check_item(it)
    return data


def audit_walk(client, path: str = "/admin/audit", page_size: int = 500, max_pages: int = 2000, **params) -> list:
    """Every matching event, newest first, following next_cursor; asserts none comes twice."""
    out, seen, cursor = [], set(), None
    for _ in range(max_pages):
        q = dict(params)
        q["page_size"] = page_size
        if cursor:
            q["cursor"] = cursor
        data = audit_page(client, path, **q)
        assert len(data["events"]) <= page_size, f"page_size {page_size} but {len(data['events'])} events"
        for it in data["events"]:
            assert it["event_id"] not in seen, f"event #{it['position']} returned twice while paging {params}"
            seen.add(it["event_id"])
            out.append(it)
        cursor = data["next_cursor"]
        if not cursor:
            return out
    raise AssertionError(f"more than {max_pages} pages over {path} {params}")


def wait_audit(client, pred, path: str = "/admin/audit", timeout: float = 10.0, **params) -> list:
    """Polls until pred(items) holds (the audit shows events below the gap-safe horizon)."""
    box = {}

    def probe():
        box["items"] = audit_walk(client, path, **params)
        return pred(box["items"])

    try:
        wait_for(probe, timeout, what=f"audit {path} {params}")
    except AssertionError:
        raise AssertionError(f"audit {path} {params} never satisfied the condition; "
                             f"types: {sorted({x['event_type'] for x in box.get('items', [])})}")
    return box["items"]


def audit_cli(srv: PacaServer, *args: str) -> list:
    res = cli_ok(srv, "audit", "--json", *args)
    no_secrets(srv, res.stdout + res.stderr, "`paca audit --json` output")
    items = json_lines(res.stdout, f"`paca audit --json {' '.join(args)}`")
    for it in items:
        check_item(it)
    return items


def bad_request(resp) -> dict:
    body = err(resp, 400, "BAD_REQUEST")
    assert isinstance(body.get("request_id"), str) and body["request_id"], "error envelope needs request_id" + describe(
        resp)
    return body


# ----------------------------------------------------------------- misc
def notifications(client) -> list:
    out, cursor = [], None
    for _ in range(100):
        params = {"page_size": 50}
        if cursor:
            params["cursor"] = cursor
        data = ok(client.get("/users/me/notifications", params=params))
        out += data["items"]
        cursor = data["next_cursor"]
        if not cursor:
            return out
    raise AssertionError("notification pagination did not end")


def inbox_of(user_id: str) -> str:
    """A user's inbox stream id: the user's id as a version-8 uuid (see test_50_notifications)."""
    return user_id[:14] + "8" + user_id[15:]


def write_plugin(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "plugin.json").write_text(json.dumps({"id": name, "version": "1.0.0", "displayName": "Audit test plugin",
                                               "backend": {"routes": []}}))
    (d / "backend.wat").write_text(MINIMAL_PLUGIN_WAT)
    return d


def head_of(srv: PacaServer) -> tuple[int, int, str]:
    res = cli_ok(srv, "events", "head")
    m = HEAD_RE.search(res.stdout)
    assert m, f"`paca events head` must print `seq <n> position <p> hash <hex>`, got: {res.stdout!r}"
    return int(m.group(1)), int(m.group(2)), m.group(3).lower()


def verify(srv: PacaServer, *extra: str) -> tuple[int, str]:
    res = srv.cli("events", "verify", *extra)
    return res.returncode, res.stdout + res.stderr


def position_of(srv: PacaServer, where: str) -> int:
    out = psql(f"SELECT global_position FROM events WHERE {where} ORDER BY global_position", srv.database_url)
    rows = [r for r in out.splitlines() if r.strip()]
    assert len(rows) == 1, f"expected one event where {where}, found {rows}"
    return int(rows[0])


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def asrv():
    s, dbname = _make_server("audit", extra_env={"AGENT_API_KEY": AGENT_KEY, "PACA_AGENT_RUNNER": "off"})
    s.secrets.add(AGENT_KEY)
    try:
        s.start()
        yield s
    finally:
        _teardown_server(s, dbname)


@pytest.fixture(scope="module")
def world(asrv, tmp_path_factory):
    """Who did what on the module server: users (cookie, Bearer, GraphQL), an agent, the CLI."""
    srv = asrv
    w = SimpleNamespace(srv=srv)
    w.adm = adm = srv.admin()
    w.admin_id = adm.me()["id"]
    w.alice = create_user(srv, adm, prefix="al")
    w.bob = create_user(srv, adm, prefix="bo")
    w.padm = create_user(srv, adm, prefix="pa")  # global USER, Admin of p1 only
    w.gadm = create_user(srv, adm, role="ADMIN", prefix="ga")  # global ADMIN: no audit.read
    w.p1 = ok(adm.post("/projects", json={"name": unique("Audit One ")}), 201)
    w.p2 = ok(adm.post("/projects", json={"name": unique("Audit Two ")}), 201)
    w.p3 = ok(adm.post("/projects", json={"name": unique("Audit Three ")}), 201)
    p1, p2, p3 = w.p1["id"], w.p2["id"], w.p3["id"]
    add_member(adm, p1, w.alice.id, "Editor")
    add_member(adm, p1, w.bob.id, "Editor")
    add_member(adm, p1, w.padm.id, "Admin")
    add_member(adm, p2, w.padm.id, "Editor")
    add_member(adm, p3, w.padm.id, "Viewer")

    # a user over Bearer, then over the session cookie, then over GraphQL
    alice_bearer = bearer(srv, w.alice.client.access_token)
    r = alice_bearer.post(P(p1, "/tasks"), json={"title": "Fix the audit trail"})
    w.t_alice = ok(r, 201)
    w.t_alice_rid = r.headers.get("X-Request-ID")
    assert w.t_alice_rid, "responses carry X-Request-ID" + describe(r)
    done = statuses_of(adm, p1)["Done"]
    patch_task(w.alice.client, p1, w.t_alice["id"], {"status_id": done["id"]})
    r = w.alice.client.s.post(srv.base + "/api/graphql", timeout=30, json={
        "query": "mutation($pid: ID!, $input: JSON!) { createTask(projectId: $pid, input: $input) { id } }",
        "variables": {"pid": p1, "input": {"title": "Made over GraphQL"}}})
    assert r.status_code == 200 and not r.json().get("errors"), r.text
    w.t_gql_id = r.json()["data"]["createTask"]["id"]
    w.t_p2 = create_task(adm, p2, "Elsewhere")

    # everything above is before t_mid, everything below after it
    time.sleep(0.6)
    w.t_mid = now_utc()
    time.sleep(0.6)

    # an agent member acting with the shared agent key
    roles = {x["role_name"]: x["id"] for x in ok(adm.get(P(p1, "/roles")))}
    llm_key = "sk-ant-" + secrets.token_hex(12)
    srv.secrets.add(llm_key)
    w.agent = ok(adm.post(P(p1, "/agents"), json={
        "name": "Audit Bot", "handle": unique("bot-"), "llm_provider": "anthropic",
        "llm_model": "claude-sonnet-4-6", "llm_api_key": llm_key, "project_role_id": roles["Editor"]}), 201)
    bot = srv.client(**{"X-API-Key": AGENT_KEY, "X-Agent-ID": w.agent["id"]})
    w.t_bot = create_task(bot, p1, "Filed by the bot")
    w.bot_comment = ok(bot.post(P(p1, f"/tasks/{w.t_alice['id']}/activities/comments"),
                                json={"content": blocks("looked at it")}), 201)

    # the CLI installs a plugin (events with source "cli")
    w.plugin_name = "com.audit.p" + secrets.token_hex(4)
    w.os_user = "audit-op"
    cli_as(srv, w.os_user, "plugins", "install", str(write_plugin(tmp_path_factory.mktemp("plugins"), w.plugin_name)))
    w.t_end = now_utc()

    # once the last append is visible, so is everything before it
    wait_audit(adm, lambda xs: any(x["payload"].get("name") == w.plugin_name for x in xs), type="plugin.installed")
    return w


# --------------------------------------------------------------------------- 1. who did what
def test_users_agents_and_the_cli_appear_with_actor_and_source(world):
    w = world
    srv, p1 = w.srv, w.p1["id"]
    items = audit_walk(w.adm)
    assert items, "the audit of a server with history is empty"
    positions = [x["position"] for x in items]
    assert positions == sorted(positions, reverse=True), "GET /admin/audit is newest first"

    # a user over Bearer
    c = one(items, "task.created", w.t_alice["id"])
    a = c["actor"]
    assert a["kind"] == "user" and a["id"] == w.alice.id and a.get("user_id") == w.alice.id, c
    assert a["name"] == w.alice.username, c
    assert c["source"] == "rest" and c["project_id"] == p1 and c["stream_type"] == "task" and c["version"] == 1, c
    assert c["request_id"] == w.t_alice_rid, c
    assert c["object"]["type"] == "task" and c["object"]["id"] == w.t_alice["id"], c
    assert c["object"]["label"] == f"{w.p1['task_id_prefix']}-{w.t_alice['task_number']}", c
    assert c["payload"].get("title") == "Fix the audit trail", c
    assert "Fix the audit trail" in c["summary"] or c["object"]["label"] in c["summary"], c

    # the same user over the session cookie
    upd = [x for x in items if x["event_type"] == "task.updated" and x["stream_id"] == w.t_alice["id"]]
    assert upd, "the status change is in the audit"
    assert all(x["actor"]["id"] == w.alice.id and x["actor"]["kind"] == "user" and x["source"] == "rest"
               for x in upd), upd

    # the same user over GraphQL
    g = one(items, "task.created", w.t_gql_id)
    assert g["actor"]["id"] == w.alice.id and g["actor"]["name"] == w.alice.username and g["source"] == "graphql", g

    # the seeded admin
    pc = one(items, "project.created", p1)
    assert pc["actor"]["kind"] == "user" and pc["actor"]["id"] == w.admin_id and pc["actor"]["name"] == "admin", pc

    # the agent member (shared agent key + X-Agent-ID)
    handle = w.agent["handle"]
    for ev in (one(items, "task.created", w.t_bot["id"]),
               one(items, "task.comment_added", w.t_alice["id"],
                   lambda x: x["payload"].get("comment_id") == w.bot_comment["id"])):
        a = ev["actor"]
        assert a["kind"] == "agent", ev
        assert a.get("agent_id") == w.agent["id"] and a.get("member_id") == w.agent["member_id"], ev
        assert a["id"] in (w.agent["id"], w.agent["member_id"]), ev
        assert not a.get("user_id"), f"an agent acts as itself, not as a user: {ev}"
        assert a["name"] == "@" + handle, ev
        assert ev["source"] == "rest" and ev["project_id"] == p1, ev

    # the CLI
    pi = one(items, "plugin.installed", pred=lambda x: x["payload"].get("name") == w.plugin_name)
    assert pi["source"] == "cli", pi
    assert pi["actor"]["kind"] == "system" and pi["actor"]["name"] in cli_names(w.os_user), pi
    assert pi["project_id"] is None and pi["object"]["id"] == pi["stream_id"], pi

    no_secrets(srv, json.dumps(items), "GET /admin/audit")


def test_rest_filters_return_only_matching_events(world):
    w = world
    adm, p1, p2 = w.adm, w.p1["id"], w.p2["id"]
    t_alice, t_bot = w.t_alice["id"], w.t_bot["id"]

    # actor_id: a user
    xs = audit_walk(adm, actor_id=w.alice.id)
    assert xs and all(w.alice.id in actor_ids(x) for x in xs), "actor_id returned someone else's events"
    assert {t_alice, w.t_gql_id} <= created_streams(xs) and t_bot not in created_streams(xs)
    # actor_id: the agent, by its agent id and by its member id
    for aid in (w.agent["id"], w.agent["member_id"]):
        xs = audit_walk(adm, actor_id=aid)
        assert xs and all(aid in actor_ids(x) and x["actor"]["kind"] == "agent" for x in xs), aid
        assert created_streams(xs) == {t_bot}, aid
    # actor_kind
    xs = audit_walk(adm, actor_kind="agent")
    assert xs and all(x["actor"]["kind"] == "agent" for x in xs) and t_bot in created_streams(xs)
    # source
    xs = audit_walk(adm, source="cli")
    assert all(x["source"] == "cli" for x in xs)
    assert any(x["event_type"] == "plugin.installed" and x["payload"].get("name") == w.plugin_name for x in xs)
    xs = audit_walk(adm, source="graphql")
    assert all(x["source"] == "graphql" for x in xs) and created_streams(xs) == {w.t_gql_id}
    # project
    xs = audit_walk(adm, project_id=p1)
    assert xs and all(x["project_id"] == p1 for x in xs)
    assert {t_alice, w.t_gql_id, t_bot} <= created_streams(xs) and w.t_p2["id"] not in created_streams(xs)
    xs = audit_walk(adm, project_id=p2)
    assert xs and all(x["project_id"] == p2 for x in xs) and created_streams(xs) == {w.t_p2["id"]}
    # type: a prefix, or exact
    xs = audit_walk(adm, type="task.")
    assert xs and all(x["event_type"].startswith("task.") for x in xs)
    assert {"task.created", "task.updated", "task.comment_added"} <= {x["event_type"] for x in xs}
    xs = audit_walk(adm, type="task.created")
    assert all(x["event_type"] == "task.created" for x in xs)
    assert {t_alice, w.t_gql_id, t_bot, w.t_p2["id"]} <= created_streams(xs)
    # stream_id
    xs = audit_walk(adm, stream_id=t_alice)
    assert all(x["stream_id"] == t_alice for x in xs)
    assert {"task.created", "task.updated", "task.comment_added"} <= {x["event_type"] for x in xs}
    # filters combine (AND)
    xs = audit_walk(adm, project_id=p1, type="task.created", actor_kind="user")
    assert created_streams(xs) == {t_alice, w.t_gql_id} and len(xs) == 2, [x["stream_id"] for x in xs]

    # time range, RFC3339
    mid = rfc3339(w.t_mid)
    after = audit_walk(adm, project_id=p1, since=mid)
    assert after and all(parse_ts(x["recorded_at"]) >= w.t_mid for x in after), "since= returned older events"
    assert created_streams(after) == {t_bot}
    before = audit_walk(adm, project_id=p1, until=mid)
    assert before and all(parse_ts(x["recorded_at"]) <= w.t_mid for x in before), "until= returned newer events"
    assert {t_alice, w.t_gql_id} == created_streams(before)
    assert {x["event_id"] for x in before}.isdisjoint({x["event_id"] for x in after})
    # time range, relative
    recent = audit_walk(adm, project_id=p1, since="1h")
    assert {x["event_id"] for x in before} | {x["event_id"] for x in after} <= set(ids_of(recent))
    for rel in ("2h", "30m", "7d", "45s"):
        audit_page(adm, since=rel, page_size=1)
    assert audit_walk(adm, project_id=p1, until="1h") == [], "nothing in this project is older than an hour"
    assert audit_walk(adm, project_id=p1, since=rfc3339(w.t_end + timedelta(hours=1))) == []

    # request_id (request or correlation id)
    xs = audit_walk(adm, request_id=w.t_alice_rid)
    assert t_alice in created_streams(xs)
    assert all(w.t_alice_rid in (x["request_id"], x["correlation_id"]) for x in xs), xs
    assert audit_walk(adm, request_id="no-such-request-" + secrets.token_hex(4)) == []


def test_paca_audit_cli(world):
    w = world
    srv, p1 = w.srv, w.p1["id"]
    handle = w.agent["handle"]

    # --actor by id, by username, by @handle
    by_id = audit_cli(srv, "--actor", w.alice.id, "-n", "500")
    assert by_id and all(w.alice.id in actor_ids(x) for x in by_id)
    c = one(by_id, "task.created", w.t_alice["id"])
    assert c["actor"]["name"] == w.alice.username and c["source"] == "rest" and c["project_id"] == p1, c
    by_name = audit_cli(srv, "--actor", w.alice.username, "-n", "500")
    assert ids_of(by_name) == ids_of(by_id), "--actor USERNAME and --actor ID select the same events"
    bot = audit_cli(srv, "--actor", "@" + handle, "-n", "500")
    assert bot and all(x["actor"]["kind"] == "agent" and x["actor"]["name"] == "@" + handle for x in bot)
    assert created_streams(bot) == {w.t_bot["id"]}

    # --source and --type
    xs = audit_cli(srv, "--source", "cli", "--type", "plugin.", "-n", "500")
    assert xs and all(x["source"] == "cli" and x["event_type"].startswith("plugin.") for x in xs)
    pi = one(xs, "plugin.installed", pred=lambda x: x["payload"].get("name") == w.plugin_name)
    assert pi["actor"]["kind"] == "system" and pi["actor"]["name"] in cli_names(w.os_user), pi

    # --project, --since/--until (RFC3339 and relative)
    xs = audit_cli(srv, "--project", p1, "--type", "task.created", "--since", rfc3339(w.t_mid))
    assert created_streams(xs) == {w.t_bot["id"]} and all(x["project_id"] == p1 for x in xs)
    xs = audit_cli(srv, "--project", p1, "--type", "task.created", "--until", rfc3339(w.t_mid))
    assert created_streams(xs) == {w.t_alice["id"], w.t_gql_id}
    assert audit_cli(srv, "--project", p1, "--until", "1h") == []
    assert {w.t_alice["id"], w.t_bot["id"]} <= created_streams(audit_cli(srv, "--project", p1, "--since", "2h",
                                                                         "-n", "500"))
    # --request
    xs = audit_cli(srv, "--request", w.t_alice_rid)
    assert w.t_alice["id"] in created_streams(xs)

    # -n N: the newest N, printed oldest first; the same items as REST
    until = rfc3339(now_utc())
    rest = audit_walk(w.adm, project_id=p1, until=until)
    assert len(rest) > 5
    cli = audit_cli(srv, "--project", p1, "--until", until, "-n", "5")
    assert ids_of(cli) == ids_of(reversed(rest[:5])), "`paca audit -n 5` prints the newest 5, oldest first"
    assert cli == list(reversed(rest[:5])), "CLI --json items and REST items are the same objects"
    # default -n is 50
    everything = audit_walk(w.adm, until=until)
    if len(everything) > 50:
        assert len(audit_cli(srv, "--until", until)) == 50

    # the default output is a readable table
    res = cli_ok(srv, "audit", "--project", p1, "-n", "500")
    no_secrets(srv, res.stdout + res.stderr, "`paca audit` output")
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert lines, res.stdout
    header = lines[0].upper()
    assert all(col in header for col in TABLE_COLUMNS), f"table header must name {TABLE_COLUMNS}: {lines[0]!r}"
    for needle in (w.alice.username, "@" + handle, "task.created", "rest",
                   f"{w.p1['task_id_prefix']}-{w.t_alice['task_number']}"):
        assert needle in res.stdout, f"{needle!r} missing from the `paca audit` table:\n{res.stdout[-3000:]}"
    assert not any(ln.lstrip().startswith("{") for ln in lines), "the table is not JSON"

    # bad input is refused
    res = srv.cli("audit", "--since", "last tuesday")
    assert res.returncode != 0, f"`paca audit --since 'last tuesday'` must fail\n{res.stdout[-1000:]}"


# --------------------------------------------------------------------------- 2. paging
def test_cursor_paging_returns_each_event_once_newest_first(world):
    w = world
    adm, p1 = w.adm, w.p1["id"]
    until = rfc3339(now_utc())
    full = audit_walk(adm, project_id=p1, until=until, page_size=500)
    assert len(full) >= 8, len(full)
    positions = [x["position"] for x in full]
    assert positions == sorted(positions, reverse=True) and len(set(positions)) == len(positions)
    single = audit_page(adm, project_id=p1, until=until, page_size=500)
    assert single["next_cursor"] is None and single["events"] == full
    first = audit_page(adm, project_id=p1, until=until, page_size=3)
    assert len(first["events"]) == 3 and first["next_cursor"], "a full page of 3 with more to come has a cursor"
    assert first["events"] == full[:3]
    for size in (1, 3, 7):
        paged = audit_walk(adm, project_id=p1, until=until, page_size=size)
        assert ids_of(paged) == ids_of(full), f"page_size={size}: paging differs from one page"
    # the whole log, paged, is the unpaged log
    whole = audit_walk(adm, until=until)
    assert ids_of(audit_walk(adm, until=until, page_size=7)) == ids_of(whole)
    # default page size 50
    d = audit_page(adm, until=until)
    assert len(d["events"]) == min(50, len(whole)) and (d["next_cursor"] is not None) == (len(whole) > 50)
    # page_size bounds are inclusive
    audit_page(adm, page_size=1)
    audit_page(adm, page_size=500)

    # keyset: events appended while paging neither repeat nor shift what follows
    p2 = w.p2["id"]
    before = audit_walk(adm, project_id=p2)
    assert len(before) >= 3
    page = audit_page(adm, project_id=p2, page_size=1)
    got = list(page["events"])
    new = create_task(adm, p2, "Appended while paging")
    wait_audit(adm, lambda xs: new["id"] in created_streams(xs), project_id=p2, type="task.created")
    cursor = page["next_cursor"]
    while cursor:
        page = audit_page(adm, project_id=p2, page_size=1, cursor=cursor)
        got += page["events"]
        cursor = page["next_cursor"]
    assert ids_of(got) == ids_of(before), "an event appended meanwhile changed the pages after the cursor"


@pytest.mark.parametrize("params", [
    {"page_size": "0"}, {"page_size": "501"}, {"page_size": "-1"}, {"page_size": "lots"},
    {"actor_id": "not-a-uuid"}, {"project_id": "123"}, {"stream_id": "zzz"},
    {"since": "yesterday"}, {"since": "2026-13-45T00:00:00Z"}, {"until": "5 parsecs"},
    {"cursor": "garbage"}, {"cursor": "!!!not-a-cursor!!!"},
], ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()))
def test_bad_audit_queries_are_400(world, params):
    w = world
    bad_request(w.adm.get("/admin/audit", params=params))
    if "project_id" not in params:
        bad_request(w.adm.get(f"/projects/{w.p1['id']}/audit", params=params))


# --------------------------------------------------------------------------- 3. who may read
def test_audit_permissions(world):
    w = world
    srv, p1, p2, p3 = w.srv, w.p1["id"], w.p2["id"], w.p3["id"]
    # audit.read is SUPER_ADMIN's only
    for who in (w.alice, w.gadm, w.padm):
        for path in ("/admin/audit", "/admin/audit/requests/x", f"/admin/audit/requests/{w.t_alice_rid}"):
            err(who.client.get(path), 403, "FORBIDDEN")
    err(srv.client().get("/admin/audit"), 401)
    err(srv.client().get(f"/projects/{p1}/audit"), 401)

    # a project Admin (global USER) reads their project's audit, and only it
    admin_view = audit_walk(w.adm, project_id=p1)
    mine = audit_walk(w.padm.client, f"/projects/{p1}/audit")
    assert mine and all(x["project_id"] == p1 for x in mine), "project audit leaked other projects' events"
    assert set(ids_of(admin_view)) <= set(ids_of(mine)), "the project audit misses events of the project"
    xs = audit_walk(w.padm.client, f"/projects/{p1}/audit", type="task.created", actor_kind="user")
    assert created_streams(xs) == {w.t_alice["id"], w.t_gql_id}
    # project_id cannot widen it
    # (the path's project wins: a project_id query parameter is ignored on the project route)
    r = w.padm.client.get(f"/projects/{p1}/audit", params={"project_id": p2})
    evs = ok(r)["events"]
    assert evs and all(x["project_id"] == p1 for x in evs), describe(r)
    no_secrets(srv, json.dumps(mine), f"GET /projects/{p1}/audit")
    # ... not where they are Editor or Viewer
    err(w.padm.client.get(f"/projects/{p2}/audit"), 403, "FORBIDDEN")
    err(w.padm.client.get(f"/projects/{p3}/audit"), 403, "FORBIDDEN")
    # an Editor of p1 cannot read p1's audit; a non-member cannot read p3's
    err(w.alice.client.get(f"/projects/{p1}/audit"), 403, "FORBIDDEN")
    err(w.alice.client.get(f"/projects/{p3}/audit"), 403, "FORBIDDEN")
    # SUPER_ADMIN reads any project's audit
    xs = audit_walk(w.adm, f"/projects/{p2}/audit")
    assert xs and all(x["project_id"] == p2 for x in xs) and w.t_p2["id"] in created_streams(xs)


# --------------------------------------------------------------------------- 4. correlation
def test_request_correlation_follows_causation(world):
    w = world
    srv, adm, p1, tid = w.srv, w.adm, w.p1["id"], w.t_alice["id"]
    r = w.alice.client.post(P(p1, f"/tasks/{tid}/activities/comments"),
                            json={"content": blocks(f"please check @{w.bob.username}")},
                            headers={"X-Request-ID": "audit-" + secrets.token_hex(8)})
    comment = ok(r, 201)
    rid = r.headers.get("X-Request-ID")
    assert rid, "responses carry X-Request-ID" + describe(r)

    def chain():
        data = ok(adm.get(f"/admin/audit/requests/{rid}"))
        assert isinstance(data, dict) and data.get("request_id") == rid and isinstance(data.get("events"), list), data
        for it in data["events"]:
            check_item(it)
        evs = data["events"]
        has_comment = any(x["event_type"] == "task.comment_added" and x["stream_id"] == tid for x in evs)
        has_note = any(x["event_type"] == "notification.created" for x in evs)
        return evs if has_comment and has_note else None

    evs = wait_for(chain, 10, what=f"/admin/audit/requests/{rid} to show the comment and its notification")
    c = one(evs, "task.comment_added", tid)
    assert c["payload"].get("comment_id") == comment["id"], c
    assert c["request_id"] == rid and c["actor"]["id"] == w.alice.id and c["source"] == "rest", c
    notes = [x for x in evs if x["event_type"] == "notification.created"]
    n = [x for x in notes if x["causation_id"] == c["event_id"]]
    assert len(n) == 1, f"expected the mention notification caused by the comment event: {notes}"
    n = n[0]
    assert n["stream_type"] == "inbox" and n["stream_id"] == inbox_of(w.bob.id) and n["project_id"] is None, n
    # oldest first, and nothing from another request
    positions = [x["position"] for x in evs]
    assert positions == sorted(positions), "requests/:id lists events oldest first"
    ids = set(ids_of(evs))
    for x in evs:
        assert rid in (x["request_id"], x["correlation_id"]) or x["causation_id"] in ids, f"unrelated event: {x}"
    assert tid not in created_streams(evs)
    # the list filter matches request and correlation ids
    xs = audit_walk(adm, request_id=rid)
    assert {c["event_id"], n["event_id"]} <= set(ids_of(xs))
    assert c["event_id"] in ids_of(audit_cli(srv, "--request", rid, "-n", "500"))
    # an unknown request id is an empty answer
    data = ok(adm.get(f"/admin/audit/requests/unknown-{secrets.token_hex(6)}"))
    assert data["events"] == [], data


# --------------------------------------------------------------------------- 5. tamper evidence
def test_tamper_evident_log():
    srv, dbname = _make_server("tamper")
    try:
        srv.start()
        adm = srv.admin()
        p = ok(adm.post("/projects", json={"name": unique("Sealed ")}), 201)
        pid = p["id"]
        tasks = [create_task(adm, pid, f"Sealed {i}") for i in range(3)]
        patch_task(adm, pid, tasks[0]["id"], {"title": "Sealed 0 renamed"})

        # the running server seals by itself (log_sealer)
        def sealed():
            rc, out = verify(srv)
            m = re.search(r"ok:\s*(\d+)", out)
            return rc == 0 and m and int(m.group(1)) >= event_count(srv)

        wait_for(sealed, 15, what="the running server to seal the whole log")
        res = cli_ok(srv, "events", "seal")
        assert re.search(r"\d+", res.stdout), f"`paca events seal` prints how many it sealed: {res.stdout!r}"
        seq, pos, h = head_of(srv)
        total = event_count(srv)
        assert seq == total, f"head seq {seq} for {total} events"
        assert pos == int(psql("SELECT max(global_position) FROM events", srv.database_url).strip())
        rc, out = verify(srv)
        assert rc == 0 and "ok" in out and "intact" in out and h in out.lower(), out
        # anchors kept elsewhere
        rc, out = verify(srv, "--anchor", f"{seq}:{h}")
        assert rc == 0, out
        rc, out = verify(srv, "--anchor", f"{seq}:{'0' * len(h)}")
        assert rc != 0 and "anchor" in out.lower(), out
        # one more event moves the head; the old anchor still holds
        create_task(adm, pid, "After the head")
        # sealing is the log_sealer subscription's work, after the commit
        wait_for(lambda: head_of(srv)[0] == event_count(srv), 15, what="the new event to be sealed")
        seq2, pos2, h2 = head_of(srv)
        assert seq2 == event_count(srv) and seq2 > seq and pos2 > pos and h2 != h, (seq, pos, h, seq2, pos2, h2)
        rc, out = verify(srv, "--anchor", f"{seq}:{h}")
        assert rc == 0, out

        srv.stop()
        db = srv.database_url
        # an edited payload is named by its position
        forged = position_of(srv, f"event_type = 'task.created' AND stream_id = '{tasks[1]['id']}'")
        original = psql(f"SELECT payload::text FROM events WHERE global_position = {forged}", db).strip()
        psql("UPDATE events SET payload = jsonb_set(payload, '{title}', '\"forged\"') "
             f"WHERE global_position = {forged}", db)
        rc, out = verify(srv)
        assert rc != 0, f"verify passed a forged payload:\n{out}"
        assert re.search(rf"#{forged}\b", out), f"verify must name event #{forged}:\n{out}"
        # restored bytes verify again
        psql(f"UPDATE events SET payload = $paca${original}$paca$::jsonb WHERE global_position = {forged}", db)
        rc, out = verify(srv)
        assert rc == 0, f"verify fails after the payload was restored:\n{out}"
        # a deleted event is a gap at its position
        gone = position_of(srv, f"event_type = 'task.created' AND stream_id = '{tasks[2]['id']}'")
        psql(f"DELETE FROM events WHERE global_position = {gone}", db)
        rc, out = verify(srv)
        assert rc != 0, f"verify passed a log with a deleted event:\n{out}"
        assert re.search(rf"#{gone}\b", out) and ("gap" in out.lower() or "missing" in out.lower()), (
            f"verify must report a gap at #{gone}:\n{out}")
    finally:
        _teardown_server(srv, dbname)


# --------------------------------------------------------------------------- 6. export / import
def _line_position(obj: dict) -> int:
    for src in (obj, obj.get("event") if isinstance(obj.get("event"), dict) else {}):
        for k in ("global_position", "position"):
            if isinstance(src.get(k), int):
                return src[k]
    raise AssertionError(f"exported event line without a position: {json.dumps(obj)[:300]}")


def _export(srv: PacaServer, *args: str) -> tuple[str, list]:
    res = cli_ok(srv, "events", "export", *args)
    lines = json_lines(res.stdout, "`paca events export`")
    assert lines and lines[0].get("kind") == "header", f"first line is the header: {str(lines[:1])[:300]}"
    assert lines[-1].get("kind") == "end", f"last line is the end marker: {str(lines[-1:])[:300]}"
    assert {x.get("kind") for x in lines} <= {"header", "event", "state", "end"}, {x.get("kind") for x in lines}
    return res.stdout, lines


def _snapshot(clients: dict, routes: list) -> dict:
    out = {}
    for who, path in routes:
        r = clients[who].get(path)
        ok(r)
        body = r.json()
        body.pop("request_id", None)
        out[(who, path)] = body
    return out


def test_export_import_serves_the_same_responses(tmp_path):
    srv, dbname = _make_server("export")
    imp, imp_db = None, None
    try:
        srv.start()
        adm = srv.admin()
        admin_id = adm.me()["id"]
        u = create_user(srv, adm, prefix="ex")
        grole = ok(adm.post("/admin/global-roles", json={"name": unique("EXPORT_"),
                                                         "permissions": {"projects.create": True}}), 201)
        ok(adm.put(f"/admin/users/{u.id}/global-roles", json={"role_ids": [grole["id"]]}))
        key = ok(adm.post("/users/me/api-keys", json={"name": "export key"}), 201)
        srv.secrets.add(key["key"])
        p = ok(adm.post("/projects", json={"name": unique("Export "), "description": "exported"}), 201)
        pid = p["id"]
        add_member(adm, pid, u.id, "Editor")
        ok(adm.post(P(pid, "/roles"), json={"role_name": "QA", "permissions": {"tasks.read": True}}), 201)
        u_m = member_id(adm, pid, u.id)
        s = create_sprint(adm, pid, "Export sprint")
        t1 = create_task(adm, pid, "Export one", assignee_ids=[u_m], sprint_id=s["id"])
        t2 = create_task(u.client, pid, "Export two")
        t3 = create_task(adm, pid, "Export three")
        patch_task(adm, pid, t2["id"], {"status_id": statuses_of(adm, pid)["Done"]["id"]})
        patch_task(u.client, pid, t3["id"], {"title": "Export three renamed"})
        ok(adm.post(P(pid, f"/tasks/{t1['id']}/activities/comments"),
                    json={"content": blocks(f"ping @{u.username}")}), 201)
        ok(adm.post(P(pid, f"/tasks/{t1['id']}/links"), json={"target_task_id": t2["id"], "link_type": "blocks"}),
           201)
        view = ok(adm.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "Export table"}), 201)
        d = ok(adm.post(P(pid, "/docs"), json={"title": "Export doc", "content": blocks("hello")}), 201)
        ok(adm.post(P(pid, f"/docs/{d['id']}/comments"), json={"content": blocks("doc note")}), 201)
        roles = {x["role_name"]: x["id"] for x in ok(adm.get(P(pid, "/roles")))}
        llm_key = "sk-ant-" + secrets.token_hex(12)
        srv.secrets.add(llm_key)
        agent = ok(adm.post(P(pid, "/agents"), json={
            "name": "Export Bot", "handle": unique("bot-"), "llm_provider": "anthropic",
            "llm_model": "claude-sonnet-4-6", "llm_api_key": llm_key, "project_role_id": roles["Editor"]}), 201)
        # the asynchronous consumers (assignment and mention notifications) are done before the export
        wait_for(lambda: len(notifications(u.client)) >= 2, 10, what="u's notifications")
        time.sleep(1.0)

        routes = [("admin", x) for x in (
            "/users/me", "/users/me/global-permissions", "/users/me/api-keys", "/users/me/notifications",
            "/admin/users?page=1&page_size=100", f"/admin/users/{u.id}", "/admin/global-roles",
            "/projects?page=1&page_size=100", P(pid), P(pid, "/members"), P(pid, "/members/me/permissions"),
            P(pid, "/roles"), P(pid, "/task-types"), P(pid, "/task-statuses"), P(pid, "/custom-fields"),
            P(pid, "/tasks"), P(pid, "/tasks/by-number/1"), P(pid, "/sprints"), P(pid, f"/sprints/{s['id']}"),
            P(pid, f"/sprints/{s['id']}/history"), P(pid, "/views?context=backlog"),
            P(pid, f"/views?context=sprint&sprint_id={s['id']}"), P(pid, f"/views/{view['id']}"),
            P(pid, "/docs"), P(pid, f"/docs/{d['id']}"), P(pid, f"/docs/{d['id']}/activities"),
            P(pid, f"/docs/{d['id']}/snapshots"), P(pid, "/docs/folders"), P(pid, "/agents"),
            P(pid, f"/agents/{agent['id']}"),
        )]
        for t in (t1, t2, t3):
            routes += [("admin", P(pid, f"/tasks/{t['id']}{sub}")) for sub in ("", "/history", "/activities", "/links")]
        routes += [("user", x) for x in (
            "/users/me", "/users/me/global-permissions", "/users/me/notifications",
            "/projects?page=1&page_size=100", P(pid, "/members/me/permissions"), P(pid, "/tasks"),
            P(pid, f"/tasks/{t1['id']}"),
        )]
        assert len(routes) >= 45, len(routes)
        before = _snapshot({"admin": adm, "user": u.client}, routes)

        head_a = head_of(srv)
        count_a = event_count(srv)
        text, lines = _export(srv)
        no_secrets(srv, text, "the export", hashes_allowed=True)
        events = [x for x in lines if x.get("kind") == "event"]
        assert len(events) == count_a and lines[-1].get("events") == count_a, (len(events), lines[-1], count_a)
        assert str(lines[-1].get("hash")).lower() == head_a[2], "the export's trailing hash is the chain head"
        positions = [_line_position(x) for x in events]
        db_positions = [int(x) for x in psql("SELECT global_position FROM events ORDER BY tx_id, global_position",
                                             srv.database_url).split()]
        assert positions == db_positions, "the export lists every event once, in log order"
        assert any(x.get("kind") == "state" for x in lines), "write-side state (credential hashes) is exported"
        dump = tmp_path / "log.jsonl"
        dump.write_text(text)

        # --since POS: only what follows
        mid = positions[len(positions) // 2]
        _, part = _export(srv, "--since", str(mid))
        pp = [_line_position(x) for x in part if x.get("kind") == "event"]
        assert pp and all(x >= mid for x in pp) and {x for x in positions if x > mid} <= set(pp), (mid, pp)
        assert len(pp) < len(positions)

        # import into a fresh database
        imp_db, imp_url = create_database()
        imp = PacaServer("import", imp_url, tempfile.mkdtemp(prefix="paca-data-import-"),
                         admin_password=srv.admin_password, jwt_secret=srv.jwt_secret)
        cli_ok(imp, "events", "import", str(dump))
        assert event_count(imp) == count_a
        rc, out = verify(imp)
        assert rc == 0, f"verify fails on the imported log:\n{out}"
        assert head_of(imp) == head_a, "the imported chain head differs from the original's"

        # a non-empty database is refused and left as it was
        res = imp.cli("events", "import", str(dump))
        assert res.returncode != 0, "import into a non-empty database must fail"
        assert event_count(imp) == count_a and head_of(imp) == head_a
        res = srv.cli("events", "import", str(dump))
        assert res.returncode != 0, "import into the (non-empty) original database must fail"
        assert event_count(srv) == count_a

        # the imported server serves the same responses
        imp.start()
        adm_b = imp.login("admin", srv.admin_password)
        u_b = imp.login(u.username, u.password)
        after = _snapshot({"admin": adm_b, "user": u_b}, routes)
        diffs = [f"GET {k[1]} as {k[0]}:\n  original={json.dumps(before[k], sort_keys=True)[:1500]}"
                 f"\n  imported={json.dumps(after[k], sort_keys=True)[:1500]}"
                 for k in routes if before[k] != after[k]]
        assert not diffs, f"{len(diffs)} of {len(routes)} responses differ after import:\n" + "\n".join(diffs[:8])
        # credentials came along, history was not re-run, and writes continue where the log left off
        assert ok(imp.client(**{"X-API-Key": key["key"]}).get("/users/me"))["id"] == admin_id
        time.sleep(1.0)
        assert notifications(u_b) == before[("user", "/users/me/notifications")]["data"]["items"]
        t4 = create_task(adm_b, pid, "After import")
        assert t4["task_number"] == max(t["task_number"] for t in (t1, t2, t3)) + 1, t4
    finally:
        if imp is not None:
            _teardown_server(imp, imp_db)
        elif imp_db:
            drop_database(imp_db)
        _teardown_server(srv, dbname)


# --------------------------------------------------------------------------- 7. subscriptions
def _checkpoint(srv: PacaServer, name: str = "notifications") -> tuple[int, bool]:
    out = psql(f"SELECT last_pos, paused FROM checkpoints WHERE name = '{name}'", srv.database_url).strip()
    assert out, f"no checkpoint named {name}"
    pos, paused = out.split("|")
    return int(pos), paused == "t"


def _checkpoint_row(srv: PacaServer, name: str = "notifications") -> str:
    return psql(f"SELECT last_tx, last_pos, paused, updated_at FROM checkpoints WHERE name = '{name}'",
                srv.database_url).strip()


def _subscriptions(srv: PacaServer) -> list:
    res = cli_ok(srv, "subscriptions", "list", "--json")
    text = res.stdout.strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = json_lines(text, "`paca subscriptions list --json`")
    if isinstance(value, dict):
        value = value.get("subscriptions", [value])
    assert isinstance(value, list) and all(isinstance(x, dict) for x in value), text[:1000]
    return value


def _subscription(srv: PacaServer, name: str) -> dict:
    found = [x for x in _subscriptions(srv) if x.get("name") == name]
    assert len(found) == 1, f"`subscriptions list --json` has no single {name!r}"
    return found[0]


def _listed_position(entry: dict) -> int:
    cp = entry.get("checkpoint")
    if isinstance(cp, dict):
        cp = cp.get("position")
    if cp is None:
        cp = entry.get("position", entry.get("last_pos"))
    assert isinstance(cp, int), f"no checkpoint position in {entry}"
    return cp


def _paused(entry: dict) -> bool:
    return entry.get("paused") is True or str(entry.get("status", "")).lower() == "paused"


def _notification_events(srv: PacaServer) -> int:
    return int(psql("SELECT count(*) FROM events WHERE event_type = 'notification.created'", srv.database_url))


def test_subscriptions_reset_replays_without_duplicates_and_pause_resume():
    srv, dbname = _make_server("subs")
    try:
        srv.start()
        adm = srv.admin()
        p = ok(adm.post("/projects", json={"name": unique("Replay ")}), 201)
        pid = p["id"]
        bob = create_user(srv, adm, prefix="bo")
        add_member(adm, pid, bob.id)
        t = create_task(adm, pid, "Replay me", assignee_ids=[member_id(adm, pid, bob.id)])
        for text in ("first", "second"):
            ok(adm.post(P(pid, f"/tasks/{t['id']}/activities/comments"),
                        json={"content": blocks(f"{text} @{bob.username}")}), 201)
        wait_for(lambda: len(notifications(bob.client)) >= 3, 10, what="bob's three notifications")
        head = int(psql("SELECT max(global_position) FROM events WHERE stream_type IN ('task', 'doc')",
                        srv.database_url))
        wait_for(lambda: _checkpoint(srv)[0] >= head, 10, what="the notifications checkpoint to reach the head")
        time.sleep(0.5)
        items0 = notifications(bob.client)
        assert len(items0) == 3, items0
        created0 = _notification_events(srv)

        # list
        res = cli_ok(srv, "subscriptions", "list")
        assert "notifications" in res.stdout and "realtime_relay" in res.stdout, res.stdout
        names = {x.get("name") for x in _subscriptions(srv)}
        assert {"notifications", "realtime_relay"} <= names, names
        assert not _paused(_subscription(srv, "notifications"))

        # a dry run prints what would come again and changes nothing
        row = _checkpoint_row(srv)
        res = cli_ok(srv, "subscriptions", "reset", "notifications", "--to", "0", "--dry-run")
        assert re.search(r"\d+", res.stdout) and "task.comment_added" in res.stdout, res.stdout
        res = cli_ok(srv, "subscriptions", "reset", "notifications", "--to", "1h", "--dry-run")
        assert "task.comment_added" in res.stdout, res.stdout
        res = cli_ok(srv, "subscriptions", "reset", "notifications", "--to", rfc3339(now_utc() - timedelta(hours=1)),
                     "--dry-run")
        assert "task.comment_added" in res.stdout, res.stdout
        res = cli_ok(srv, "subscriptions", "reset", "notifications", "--to", str(head), "--dry-run")
        assert "task.comment_added" not in res.stdout, f"nothing follows the head:\n{res.stdout}"
        res = srv.cli("subscriptions", "reset", "no_such_subscription", "--to", "0")
        assert res.returncode != 0, "resetting an unknown subscription must fail"
        assert _checkpoint_row(srv) == row, "a dry run (or a failed reset) moved the checkpoint"
        assert notifications(bob.client) == items0

        # reset to 0 with the server running: it replays everything, creating nothing twice
        cli_ok(srv, "subscriptions", "reset", "notifications", "--to", "0")
        assert _checkpoint_row(srv) != row
        wait_for(lambda: _listed_position(_subscription(srv, "notifications")) >= head, 10,
                 what="`subscriptions list --json` to show the replay back at the head")
        time.sleep(1.0)
        assert _listed_position(_subscription(srv, "notifications")) == _checkpoint(srv)[0]
        assert notifications(bob.client) == items0, "a replay changed the notifications"
        assert _notification_events(srv) == created0, "a replay appended notification.created again"

        # pause: nothing is delivered until resume
        cli_ok(srv, "subscriptions", "pause", "notifications")
        assert _checkpoint(srv)[1] is True
        assert _paused(_subscription(srv, "notifications"))
        line = next((ln for ln in cli_ok(srv, "subscriptions", "list").stdout.splitlines() if "notifications" in ln),
                    "")
        assert "paused" in line.lower(), f"the list shows the subscription paused: {line!r}"
        ok(adm.post(P(pid, f"/tasks/{t['id']}/activities/comments"),
                    json={"content": blocks(f"third @{bob.username}")}), 201)
        third = int(psql("SELECT max(global_position) FROM events WHERE event_type = 'task.comment_added'",
                         srv.database_url))
        time.sleep(1.5)
        assert notifications(bob.client) == items0, "a paused subscription delivered a notification"
        # a reset while paused stays paused (it delivers from 0 once resumed)
        cli_ok(srv, "subscriptions", "reset", "notifications", "--to", "0")
        time.sleep(0.5)
        assert _checkpoint(srv) == (0, True)
        cli_ok(srv, "subscriptions", "resume", "notifications")
        assert not _paused(_subscription(srv, "notifications"))
        wait_for(lambda: _checkpoint(srv)[0] >= third, 10, what="the resumed subscription to catch up")
        items1 = wait_for(lambda: (lambda xs: xs if len(xs) >= 4 else None)(notifications(bob.client)), 10,
                          what="the notification of the mention made while paused")
        time.sleep(1.0)
        items1 = notifications(bob.client)
        assert len(items1) == 4 and len({x["id"] for x in items1}) == 4, items1
        assert [x for x in items1 if x["id"] in {y["id"] for y in items0}] == items0
        assert _notification_events(srv) == created0 + 1
    finally:
        _teardown_server(srv, dbname)


# ------------------------------------------------- 6b. import keeps the log's order
def _raw_event(n: int) -> str:
    return (
        "INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload, metadata) "
        f"VALUES ('it_raw', gen_random_uuid(), 1, gen_random_uuid(), 'it_raw.noted', "
        f"'{{\"title\": \"raw {n}\"}}', '{{\"actor\": {{\"kind\": \"system\"}}, \"source\": \"test\"}}');"
    )


def test_import_keeps_an_order_that_differs_from_positions():
    """Two writers interleave so that the transaction that commits first in
    the log's order (lower tx_id) took the higher position. The import must
    keep that order (not sort by position), so its chain equals the source's."""
    src_db, src = create_database()
    dst_db, dst = create_database()
    env = {**os.environ, "DATABASE_URL": src}
    try:
        subprocess.run([PACA_BIN, "migrate"], env=env, check=True, capture_output=True, timeout=120)
        psql(_raw_event(1), src)
        a = subprocess.Popen(["psql", src, "-qAt", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        b = subprocess.Popen(["psql", src, "-qAt", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def send(p, sql):
            p.stdin.write(sql + "\n")
            p.stdin.flush()
            time.sleep(0.4)

        send(b, "BEGIN; SELECT pg_current_xact_id();")  # B takes the lower xid
        send(a, "BEGIN; " + _raw_event(2))              # A: higher xid, lower position
        send(b, _raw_event(3) + " COMMIT;")             # B: higher position, commits first
        send(a, "COMMIT;")
        for p in (a, b):
            p.stdin.close()
            assert p.wait(timeout=30) == 0, p.stderr.read()
        psql(_raw_event(4), src)
        order = "SELECT string_agg(payload->>'title', ',' ORDER BY tx_id, global_position) FROM events"
        positions = "SELECT string_agg(payload->>'title', ',' ORDER BY global_position) FROM events"
        assert psql(order, src).strip() == "raw 1,raw 3,raw 2,raw 4", psql(order, src)
        assert psql(positions, src).strip() == "raw 1,raw 2,raw 3,raw 4"

        export = subprocess.run([PACA_BIN, "events", "export"], env=env, capture_output=True, text=True,
                                timeout=120, check=True).stdout
        path = Path(tempfile.mkdtemp()) / "log.jsonl"
        path.write_text(export)
        res = subprocess.run([PACA_BIN, "events", "import", str(path)], env={**env, "DATABASE_URL": dst},
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "2 transaction(s)" in res.stderr, res.stderr
        assert psql(order, dst).strip() == "raw 1,raw 3,raw 2,raw 4"
        assert psql("SELECT string_agg(global_position::text, ',' ORDER BY tx_id, global_position) FROM events", dst) \
            == psql("SELECT string_agg(global_position::text, ',' ORDER BY tx_id, global_position) FROM events", src)
        heads = [subprocess.run([PACA_BIN, "events", "head"], env={**env, "DATABASE_URL": url}, capture_output=True,
                                text=True, timeout=60, check=True).stdout.split()[-1] for url in (src, dst)]
        assert heads[0] == heads[1], heads

        # A damaged export is refused before anything is written.
        bad_db, bad = create_database()
        try:
            lines = export.splitlines()
            lines[2] = lines[2].replace("raw 3", "raw X")
            path.write_text("\n".join(lines) + "\n")
            res = subprocess.run([PACA_BIN, "events", "import", str(path)], env={**env, "DATABASE_URL": bad},
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode != 0 and "trailer" in res.stderr, res.stderr
            assert psql("SELECT count(*) FROM events", bad).strip() == "0"
            path.write_text("\n".join(export.splitlines()[:-1]) + "\n")  # truncated
            res = subprocess.run([PACA_BIN, "events", "import", str(path)], env={**env, "DATABASE_URL": bad},
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode != 0 and "truncated" in res.stderr, res.stderr
            assert psql("SELECT count(*) FROM events", bad).strip() == "0"
        finally:
            drop_database(bad_db)
    finally:
        drop_database(src_db)
        drop_database(dst_db)


# ------------------------- the runner's built-in Paca MCP entry, as an agent, audited
def test_agent_over_api_mcp_is_audited_as_the_agent_from_mcp(world):
    """The agent runner gives every sandbox `{"url": <api>/api/mcp, "headers":
    {X-API-Key: AGENT_API_KEY, X-Agent-ID, X-Project-ID}}` (runner.rs,
    paca_mcp_entry). A real MCP client with exactly that entry acts as the
    agent, locked to its project, and the audit trail says so."""
    from mcp_client import McpSession, http_config

    w = world
    p1, p2 = w.p1["id"], w.p2["id"]
    headers = {"X-API-Key": AGENT_KEY, "X-Agent-ID": w.agent["id"], "X-Project-ID": p1}
    with McpSession(http_config(w.srv.base, headers)) as s:
        names = s.tool_names()
        assert "create_task" in names and "delete_project" not in names, names  # an Editor agent
        locked = s.call("list_tasks", {"projectId": p2})
        assert locked.is_error and p1 in locked.text, locked.text
        text = s.ok("create_task", {"projectId": p1, "title": "Filed over MCP"})
    task_id = re.search(r"ID: ([0-9a-f-]{36})", text).group(1)
    items = wait_audit(w.adm, lambda xs: any(x["stream_id"] == task_id for x in xs), type="task.created")
    made = one(items, "task.created", task_id)
    assert made["source"] == "mcp", made
    assert made["actor"]["kind"] == "agent", made["actor"]
    assert w.agent["id"] in actor_ids(made), made["actor"]
    assert made["project_id"] == p1

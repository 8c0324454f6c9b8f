"""Orchestration host functions for plugins: a plugin installed from packaged
catalog artifacts (sha256 checked) creates a subtask idempotently by origin
key, comments on it, links it, updates it, writes and reads documents, sets
a task summary and schedules durable wakeups, always as the calling user and
in that user's permissions, every effect an ordinary core event attributed to
the plugin. A wakeup fires exactly once, also when it came due while the
server was down; a cancelled one never fires. A caller without tasks.write,
or a plugin whose manifest lacks the permission, changes nothing.

The plugin is tests/plugins/orchestration (C, WASI reactor), built by
scripts/test.sh (tests/plugins/build.sh) into target/test-plugins. Its smoke
route answers {"step", "error", "error_code"} with 403 (FORBIDDEN) or 400 at
the first host call that fails.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import _make_server, _teardown_server, create_user, describe, err, ok, psql, unique
from test_2_support import P, activities, add_member, create_task, get_task, items, list_all, member_id
from test_40_plugins import Catalog, built, events_of, tar_gz, wait_for

ORCH = "com.test.orchestration"
BARE = "com.test.orchestration-bare"


# --------------------------------------------------------------------------- helpers
def publish(catalog: Catalog, version: str, src: Path, corrupt: str | None = None) -> None:
    """Packages the built plugin as catalog artifacts (manifest, backend,
    migrations) with their sha256; `corrupt` names one whose digest is wrong."""
    arts = {
        "manifest": tar_gz({"plugin.json": (src / "plugin.json").read_bytes()}),
        "backend": tar_gz({"backend/backend.wasm": (src / "backend.wasm").read_bytes()}),
        "migrations": tar_gz({f"migrations/{f.name}": f.read_bytes()
                              for f in sorted((src / "migrations").glob("*.sql"))}),
    }
    entry = {"name": ORCH, "display_name": "Orchestration smoke", "description": "test", "version": version,
             "artifacts": {}}
    for kind, data in arts.items():
        path = f"/orchestration/{version}/{kind}.tar.gz"
        catalog.files[path] = data
        entry["artifacts"][f"{kind}_tar_gz_url"] = catalog.url(path)
        digest = hashlib.sha256(data).hexdigest()
        entry["artifacts"][f"{kind}_tar_gz_sha256"] = ("0" * 64) if kind == corrupt else digest
    catalog.files["/catalog.json"] = json.dumps({"schema_version": 1, "source": "test", "plugins": [entry]}).encode()


def smoke(client, pid: str, tid: str, key: str, plugin: str = ORCH, **extra):
    return client.post(f"/plugins/{plugin}/projects/{pid}/tasks/{tid}/smoke", json={"key": key, **extra})


def smoke_ok(client, pid: str, tid: str, key: str, **extra) -> dict:
    r = smoke(client, pid, tid, key, **extra)
    assert r.status_code == 200, describe(r)
    return r.json()


def refused(resp, status: int, step: str, code: str | None = None) -> dict:
    """The plugin's own failure answer: {"step", "error", "error_code"}."""
    assert resp.status_code == status, f"expected HTTP {status} at step {step}" + describe(resp)
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError("the plugin's answer is not JSON" + describe(resp))
    assert body.get("step") == step, describe(resp)
    assert isinstance(body.get("error"), str) and body["error"], describe(resp)
    assert isinstance(body.get("error_code"), str) and body["error_code"], describe(resp)
    if code is not None:
        assert body["error_code"] == code, describe(resp)
    return body


def cancel(client, pid: str, wakeup_id: str, plugin: str = ORCH):
    return client.delete(f"/plugins/{plugin}/projects/{pid}/wakeups/{wakeup_id}")


def fired(client, pid: str, wakeup_id: str) -> list | None:
    """The plugin's record of HandleWakeup calls for one wakeup (None while
    the plugin is not serving, e.g. just after a restart)."""
    r = client.get(f"/plugins/{ORCH}/projects/{pid}/wakeups-fired")
    if r.status_code != 200:
        return None
    return [i for i in r.json()["items"] if i["wakeup_id"] == wakeup_id]


def about(event: dict, wakeup_id: str) -> bool:
    payload = event.get("payload") or {}
    return wakeup_id in (str(event.get("stream_id")), payload.get("id"), payload.get("wakeup_id"))


def wakeup_events(srv, event_type: str, wakeup_id: str) -> list[dict]:
    return [e for e in events_of(srv, event_type) if about(e, wakeup_id)]


def stream(srv, stream_id: str) -> list[dict]:
    res = srv.cli("events", "stream", stream_id, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def project_event_count(srv, pid: str) -> int:
    return int(psql(f"SELECT count(*) FROM events WHERE project_id = '{pid}'", srv.database_url).strip())


def task_created_count(srv) -> int:
    return int(psql("SELECT count(*) FROM events WHERE event_type = 'task.created'", srv.database_url).strip())


def comments_with(acts: list, text: str) -> list:
    return [a for a in acts if a["activity_type"] == "comment" and text in json.dumps(a["content"])]


def by_plugin(event: dict, user_id: str, plugin_id: str) -> None:
    md = event["metadata"]
    assert md["actor"]["kind"] == "plugin", event
    assert md["actor"]["user_id"] == user_id, event
    assert md["actor"].get("plugin_id") == plugin_id, event
    assert md["source"] == "plugin" and md["extra"]["plugin"] == ORCH, event


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def catalog():
    tmp = Path(tempfile.mkdtemp(prefix="paca-orch-catalog-"))
    cat = Catalog(tmp)
    yield cat
    cat.httpd.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def osrv(catalog):
    """A server with the orchestration plugin installed from the catalog: a
    wrong backend checksum is refused first, then the right artifacts install."""
    srv, dbname = _make_server(
        "orchestration",
        extra_env={
            "PLUGINS_MARKETPLACE_CATALOG_URL": catalog.url("/catalog.json"),
            # TEST-ONLY settings: allow the loopback TLS stand-in.
            "PACA_TEST_FETCH_ALLOW_LOOPBACK": "1",
            "PACA_TEST_FETCH_CA_FILE": str(catalog.ca),
            "PLUGINS_CALL_TIMEOUT": "15s",
        },
    )
    try:
        srv.start()
        admin = srv.admin()
        src = built("orchestration")
        publish(catalog, "1.0.0", src, corrupt="backend")
        body = err(admin.post("/admin/plugins/marketplace/install", json={"name": ORCH}), 400, "BAD_REQUEST")
        assert "checksum mismatch" in body["error"]
        assert ORCH not in {p["name"] for p in ok(srv.client().get("/plugins"))["plugins"]}
        publish(catalog, "1.0.0", src)
        data = ok(admin.post("/admin/plugins/marketplace/install", json={"name": ORCH}), 201)
        assert data["name"] == ORCH and data["version"] == "1.0.0" and data["enabled"] is True
        c = srv.client()
        wait_for(lambda: c.get(f"/plugins/{ORCH}/ping").status_code == 200, what=f"{ORCH} to serve")
        yield srv
    finally:
        _teardown_server(srv, dbname)


@pytest.fixture(scope="module")
def world(osrv):
    admin = osrv.admin()
    project = ok(admin.post("/projects", json={"name": unique("Orch "), "description": "orchestration"}), 201)
    pid = project["id"]
    editor = create_user(osrv, admin, prefix="orch_editor")
    add_member(admin, pid, editor.id, "Editor")
    viewer = create_user(osrv, admin, prefix="orch_viewer")
    add_member(admin, pid, viewer.id, "Viewer")
    parent = create_task(admin, pid, "Orchestrated parent")
    plugin = next(p for p in ok(osrv.client().get("/plugins"))["plugins"] if p["name"] == ORCH)
    return SimpleNamespace(admin=admin, pid=pid, editor=editor, viewer=viewer, parent=parent["id"],
                           plugin_id=plugin["id"])


@pytest.fixture(scope="module")
def smoked(world):
    """The smoke route called twice by an Editor with the same key."""
    key = unique("key")
    first = smoke_ok(world.editor.client, world.pid, world.parent, key)
    second = smoke_ok(world.editor.client, world.pid, world.parent, key)
    return SimpleNamespace(key=key, first=first, second=second, child=first["child_id"])


# --------------------------------------------------------------------------- install
def test_installed_from_checked_catalog_artifacts(osrv, world):
    plugin = next(p for p in ok(osrv.client().get("/plugins"))["plugins"] if p["name"] == ORCH)
    assert plugin["version"] == "1.0.0" and plugin["enabled"] is True
    assert set(plugin["manifest"]["permissions"]) == {"db:write:plugin_data", "tasks:write", "docs:write",
                                                     "wakeups", "summaries:write"}
    installed = [e for e in events_of(osrv, "plugin.installed") if e["payload"]["name"] == ORCH]
    assert len(installed) == 1 and installed[0]["payload"]["source"] == "catalog", installed


# --------------------------------------------------------------------------- the smoke route
def test_smoke_creates_one_child_and_its_comment_link_doc_and_summary(osrv, world, smoked):
    a, b, key, child = smoked.first, smoked.second, smoked.key, smoked.child
    admin, pid, editor = world.admin, world.pid, world.editor
    # task_create with one origin key: created once, the same task after.
    assert a["created_first"] is True and a["created_second"] is False, a
    assert a["child_again_id"] == child, a
    assert b["created_first"] is False and b["created_second"] is False, b
    assert b["child_id"] == child and b["child_again_id"] == child, b
    children = list_all(admin, pid, parent_task_id=world.parent)
    assert [t["id"] for t in children] == [child], children

    got = get_task(admin, pid, child)
    assert got["origin"] == {"plugin": ORCH, "key": key}, got
    assert got["parent_task_id"] == world.parent and got["title"] == f"Smoke child {key}", got
    # task_update
    assert a["child_importance"] == 3 and got["importance"] == 3, got
    assert not get_task(admin, pid, world.parent).get("origin"), "a REST task has no plugin origin"

    # task_comment: one per call, on the feed as the caller, marked as the plugin's.
    acts = activities(admin, pid, child)
    comments = comments_with(acts, f"Smoke comment {key}")
    assert {c["id"] for c in comments} == {a["comment_id"], b["comment_id"]}, acts
    member = member_id(admin, pid, editor.id)
    for c in comments:
        assert c["actor_plugin"] == ORCH, c
        assert c["actor_username"] == editor.username and c["actor_id"] == member, c
    created = [x for x in acts if x["activity_type"] == "task.created"]
    assert len(created) == 1 and created[0]["actor_plugin"] == ORCH, acts
    assert created[0]["actor_username"] == editor.username, created
    parent_feed = activities(admin, pid, world.parent)
    assert parent_feed[0]["activity_type"] == "task.created" and parent_feed[0].get("actor_plugin") is None, \
        parent_feed

    # task_link: the child blocks its parent (linked by the call that created it).
    assert a["link_id"] and b["link_id"] is None, (a, b)
    links = items(admin.get(P(pid, f"/tasks/{child}/links")))
    assert [(x["id"], x["source_task_id"], x["target_task_id"], x["link_type"]) for x in links] == \
        [(a["link_id"], child, world.parent, "blocks")], links
    from_parent = items(admin.get(P(pid, f"/tasks/{world.parent}/links")))
    assert [(x["id"], x["display_link_type"]) for x in from_parent] == [(a["link_id"], "is_blocked_by")]

    # doc_create + doc_update + doc_get + docs_list
    for run in (a, b):
        doc = ok(admin.get(P(pid, f"/docs/{run['doc_id']}")))
        assert doc["title"] == f"Smoke doc {key} (updated)" == run["doc_title"], doc
        assert "updated by the orchestration smoke" in json.dumps(doc["content"]), doc
    # the document's feed names the plugin beside the user who called it.
    feed = items(admin.get(P(pid, f"/docs/{a['doc_id']}/activities")))
    assert feed and all(e.get("actor_plugin") == ORCH for e in feed), feed
    listed = items(admin.get(P(pid, "/docs")))
    assert {a["doc_id"], b["doc_id"]} <= {d["id"] for d in listed}
    assert a["docs_count"] >= 1 and b["docs_count"] == a["docs_count"] + 1, (a, b)

    # summary_set on the parent; no wakeup asked for.
    assert get_task(admin, pid, world.parent)["plugin_summaries"][ORCH] == {"child": child, "key": key}
    # the project's own summary (summary_set without task_id) is on the project.
    assert ok(admin.get(P(pid, "")))["plugin_summaries"][ORCH] == {"last_key": key}
    # a task no plugin summarised answers exactly as before (no key at all).
    assert "plugin_summaries" not in get_task(admin, pid, child)
    assert a["wakeup_id"] is None and b["wakeup_id"] is None
    # Its own tables, joined: one run recorded per call.
    assert (a["runs"], b["runs"]) == (1, 2), (a, b)


def test_effects_are_core_events_attributed_to_plugin_and_caller(osrv, world, smoked):
    editor, child = world.editor, smoked.child
    created = [e for e in events_of(osrv, "task.created") if e["stream_id"] == child]
    assert len(created) == 1, "the same origin key must create one task"
    ev = created[0]
    by_plugin(ev, editor.id, world.plugin_id)
    assert ev["metadata"]["extra"]["origin"] == {"plugin": ORCH, "key": smoked.key}, ev
    assert ev["project_id"] == world.pid and ev["stream_type"] == "task", ev
    # Everything on the child's stream (created, comments, update, link) and
    # the document's stream was done through the plugin, for the editor.
    child_events = stream(osrv, child)
    assert len(child_events) >= 4, [e["event_type"] for e in child_events]
    for e in child_events:
        by_plugin(e, editor.id, world.plugin_id)
    doc_events = stream(osrv, smoked.first["doc_id"])
    assert len(doc_events) >= 2 and all(e["event_type"].startswith("doc") for e in doc_events), doc_events
    for e in doc_events:
        by_plugin(e, editor.id, world.plugin_id)
    summaries = [e for e in events_of(osrv, "plugin.summary_set")
                 if e["metadata"].get("extra", {}).get("plugin") == ORCH and world.parent in json.dumps(e)]
    assert summaries, "summary_set appended no plugin.summary_set event"
    by_plugin(summaries[-1], editor.id, world.plugin_id)
    assert child in json.dumps(summaries[-1]["payload"]), summaries[-1]


# --------------------------------------------------------------------------- permissions
def test_viewer_is_refused_and_nothing_is_appended(osrv, world, smoked):
    admin, pid = world.admin, world.pid
    tasks_before = {t["id"] for t in list_all(admin, pid)}
    events_before, created_before = project_event_count(osrv, pid), task_created_count(osrv)
    # The route's middleware lets a Viewer in (projects.read); task_create
    # checks the caller's tasks.write.
    body = refused(smoke(world.viewer.client, pid, world.parent, unique("viewer")), 403, "task_create", "FORBIDDEN")
    assert body["error"]
    assert {t["id"] for t in list_all(admin, pid)} == tasks_before
    assert project_event_count(osrv, pid) == events_before, "a refused host call appended events"
    assert task_created_count(osrv) == created_before
    assert [t["id"] for t in list_all(admin, pid, parent_task_id=world.parent)] == [smoked.child]


def test_plugin_without_the_manifest_permission_is_refused(osrv, world):
    """The same module with a manifest that asks for none of the orchestration
    permissions: an Editor's call is refused at its first host call."""
    src = built("orchestration")
    tmp = Path(tempfile.mkdtemp(prefix="paca-orch-bare-"))
    try:
        shutil.copy(src / "backend.wasm", tmp / "backend.wasm")
        shutil.copytree(src / "migrations", tmp / "migrations")
        manifest = json.loads((src / "plugin.json").read_text())
        manifest["id"] = BARE
        manifest["permissions"] = ["db:write:plugin_data"]
        (tmp / "plugin.json").write_text(json.dumps(manifest))
        res = osrv.cli("plugins", "install", str(tmp))
        assert res.returncode == 0, f"paca plugins install failed:\n{res.stdout}\n{res.stderr}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c = osrv.client()
    wait_for(lambda: c.get(f"/plugins/{BARE}/ping").status_code == 200, what=f"{BARE} to serve")
    admin, pid = world.admin, world.pid
    tasks_before = {t["id"] for t in list_all(admin, pid)}
    events_before = project_event_count(osrv, pid)
    refused(smoke(world.editor.client, pid, world.parent, unique("bare"), plugin=BARE), 403, "task_create",
            "FORBIDDEN")
    refused(cancel(world.editor.client, pid, "00000000-0000-0000-0000-000000000000", plugin=BARE), 403,
            "wakeup_cancel", "FORBIDDEN")
    assert {t["id"] for t in list_all(admin, pid)} == tasks_before
    assert project_event_count(osrv, pid) == events_before


# --------------------------------------------------------------------------- wakeups
def test_cancelled_wakeup_never_fires(osrv, world):
    admin, pid, editor = world.admin, world.pid, world.editor
    parent = create_task(admin, pid, "Cancelled wakeup parent")["id"]
    key = unique("cancel")
    out = smoke_ok(editor.client, pid, parent, key, wakeup_after_ms=2000)
    wid = out["wakeup_id"]
    assert isinstance(wid, str) and wid, out
    r = cancel(editor.client, pid, wid)
    assert r.status_code == 200 and r.json() == {"cancelled": True}, describe(r)
    time.sleep(3.5)
    assert fired(editor.client, pid, wid) == [], "a cancelled wakeup reached HandleWakeup"
    assert not comments_with(activities(admin, pid, parent), f"wakeup {key} fired")
    # Cancelling again (already cancelled) is an error.
    body = refused(cancel(editor.client, pid, wid), 400, "wakeup_cancel")
    assert body["error_code"] != "FORBIDDEN", body
    assert len(wakeup_events(osrv, "plugin.wakeup_scheduled", wid)) == 1
    assert len(wakeup_events(osrv, "plugin.wakeup_cancelled", wid)) == 1
    assert wakeup_events(osrv, "plugin.wakeup_fired", wid) == []


def test_wakeup_due_while_down_fires_once_after_restart(osrv, world):
    admin, pid, editor = world.admin, world.pid, world.editor
    parent = create_task(admin, pid, "Wakeup parent")["id"]
    key = unique("wake")
    started = time.monotonic()
    out = smoke_ok(editor.client, pid, parent, key, wakeup_after_ms=3000)
    wid = out["wakeup_id"]
    assert isinstance(wid, str) and wid, out
    scheduled = wakeup_events(osrv, "plugin.wakeup_scheduled", wid)
    assert len(scheduled) == 1, scheduled
    by_plugin(scheduled[0], editor.id, world.plugin_id)
    assert scheduled[0]["stream_type"] == "plugin_wakeup", scheduled[0]

    # Down before it is due, up again after.
    osrv.stop()
    time.sleep(max(0.0, started + 4.5 - time.monotonic()))
    osrv.start()

    admin, client = osrv.admin(), osrv.login(editor.username, editor.password)
    rows = wait_for(lambda: fired(client, pid, wid), timeout=20, what="the wakeup to fire after the restart")
    time.sleep(3)
    rows = fired(client, pid, wid)
    assert rows is not None and len(rows) == 1, f"HandleWakeup ran {rows and len(rows)} times: {rows}"
    assert rows[0]["payload"] == {"task_id": parent, "key": key}, rows
    fired_events = wakeup_events(osrv, "plugin.wakeup_fired", wid)
    assert len(fired_events) == 1, fired_events
    assert fired_events[0]["stream_type"] == "plugin_wakeup", fired_events[0]

    # Inside HandleWakeup the host functions ran as the scheduling user.
    def comment():
        found = comments_with(activities(admin, pid, parent), f"wakeup {key} fired")
        return found or None

    found = wait_for(comment, timeout=10, what="the wakeup's comment")
    assert len(found) == 1, found
    assert found[0]["actor_plugin"] == ORCH and found[0]["actor_username"] == editor.username, found
    assert found[0]["actor_id"] == member_id(admin, pid, editor.id), found
    wait_for(lambda: (get_task(admin, pid, parent).get("plugin_summaries") or {}).get(ORCH) ==
             {"wakeup": "fired", "key": key}, timeout=10, what="the wakeup's summary")

"""Notifications (issue 9; seed page 15 Users rows, CONTRACT-NOTES §13): `assigned` when a human member
becomes an assignee, `mentioned` for an @username in a task or doc comment; never to the actor; agents get
none; GET /users/me/notifications (cursor + unread_count), PATCH …/:id/read, POST …/read-all; the checkpointed
subscription survives a crash without duplicates or gaps."""

import time
import uuid

import pytest
import requests

from conftest import create_user, err, is_uuid, no_content, ok, unique
from test_2_support import P, add_member, blocks, create_task, member_id, patch_task

NOTIFICATION_FIELDS = {"id", "type", "actor_full_name", "actor_username", "task_id", "task_title", "task_number",
                       "project_id", "project_name", "read_at", "created_at"}


def page(client, **params) -> dict:
    data = ok(client.get("/users/me/notifications", params=params or None))
    assert set(data) >= {"items", "page_size", "next_cursor", "unread_count"}, data
    return data


def all_notifications(client) -> list:
    out, cursor = [], None
    for _ in range(100):
        data = page(client, page_size=50, **({"cursor": cursor} if cursor else {}))
        out += data["items"]
        cursor = data["next_cursor"]
        if not cursor:
            return out
    raise AssertionError("pagination did not end")


def wait_for(client, pred, timeout=15.0) -> list:
    """Polls until pred(notifications) holds (the subscription runs after the commit)."""
    deadline = time.monotonic() + timeout
    items = []
    while time.monotonic() < deadline:
        items = all_notifications(client)
        if pred(items):
            return items
        time.sleep(0.2)
    raise AssertionError(f"condition not reached; notifications: {items}")


def settle(client, seconds=1.5) -> list:
    """Lets the subscription catch up, then returns the notifications (for "nothing more arrived" checks)."""
    time.sleep(seconds)
    return all_notifications(client)


def mention(*parts) -> list:
    return blocks(" ".join(parts))


@pytest.fixture
def team(server, admin, make_project):
    p = make_project()
    ann = create_user(server, admin, prefix="ann")
    bob = create_user(server, admin, prefix="bob")
    for u in (ann, bob):
        add_member(admin, p["id"], u.id)
    return p, ann, bob


def test_assignment_notifies_human_assignees_but_not_the_actor(admin, admin_id, team):
    p, ann, bob = team
    pid = p["id"]
    ann_m, bob_m = member_id(admin, pid, ann.id), member_id(admin, pid, bob.id)
    admin_m = member_id(admin, pid, admin_id)
    before_admin = len(all_notifications(admin))

    t = create_task(admin, pid, "Write the spec", assignee_ids=[ann_m, admin_m])
    items = wait_for(ann.client, lambda xs: any(x["task_id"] == t["id"] for x in xs))
    n = next(x for x in items if x["task_id"] == t["id"])
    assert set(n) >= NOTIFICATION_FIELDS, n
    assert n["type"] == "assigned" and is_uuid(n["id"])
    assert n["task_title"] == "Write the spec" and n["task_number"] == t["task_number"]
    assert n["project_id"] == pid and n["project_name"] == p["name"]
    assert n["actor_username"] == "admin" and n["read_at"] is None
    # the admin assigned themselves: no notification to the actor
    assert len(settle(admin)) == before_admin

    # adding Bob notifies Bob only (Ann was already an assignee)
    patch_task(admin, pid, t["id"], {"assignee_ids": [ann_m, bob_m]})
    wait_for(bob.client, lambda xs: [x["type"] for x in xs if x["task_id"] == t["id"]] == ["assigned"])
    assert [x["type"] for x in settle(ann.client) if x["task_id"] == t["id"]] == ["assigned"]

    # Ann assigns herself on her own task: nothing for Ann
    own = create_task(ann.client, pid, "Mine")
    patch_task(ann.client, pid, own["id"], {"assignee_ids": [ann_m]})
    assert not [x for x in settle(ann.client) if x["task_id"] == own["id"]]


def test_mentions_in_task_and_doc_comments(admin, team, server):
    p, ann, bob = team
    pid = p["id"]
    outsider = create_user(server, admin, prefix="out")
    t = create_task(admin, pid, "Mentioned here")
    c = ok(ann.client.post(P(pid, f"/tasks/{t['id']}/activities/comments"),
                           json={"content": mention(f"hey @{bob.username},", f"and me @{ann.username}",
                                                    f"and @{outsider.username}")}), 201)
    items = wait_for(bob.client, lambda xs: any(x["type"] == "mentioned" and x["task_id"] == t["id"] for x in xs))
    n = next(x for x in items if x["type"] == "mentioned" and x["task_id"] == t["id"])
    assert n["actor_username"] == ann.username and n["task_title"] == "Mentioned here"
    assert n.get("comment_id") == c["id"]
    # never to the actor; never to a non-member
    assert not [x for x in settle(ann.client) if x["type"] == "mentioned"]
    assert not all_notifications(outsider.client)
    # an e-mail address is not a mention
    ok(ann.client.post(P(pid, f"/tasks/{t['id']}/activities/comments"),
                       json={"content": mention(f"mail x{bob.username}@example.com")}), 201)
    assert len([x for x in settle(bob.client) if x["type"] == "mentioned"]) == 1

    # doc comments mention too
    d = ok(admin.post(P(pid, "/docs"), json={"title": "Runbook", "content": blocks("steps")}), 201)
    ok(admin.post(P(pid, f"/docs/{d['id']}/comments"), json={"content": mention(f"@{ann.username} review?")}), 201)
    items = wait_for(ann.client, lambda xs: any(x.get("doc_id") == d["id"] for x in xs))
    n = next(x for x in items if x.get("doc_id") == d["id"])
    assert n["type"] == "mentioned" and n["task_id"] is None and n.get("doc_title") == "Runbook", n


def test_agents_get_no_notifications(admin, team):
    p, ann, _ = team
    pid = p["id"]
    roles = {r["role_name"]: r["id"] for r in ok(admin.get(P(pid, "/roles")))}
    handle = unique("bot-")
    ok(admin.post(P(pid, "/agents"), json={"name": "Dev Bot", "handle": handle, "llm_provider": "anthropic",
                                           "llm_model": "claude-sonnet-4-6", "llm_api_key": "sk-ant-test",
                                           "project_role_id": roles["Editor"]}), 201)
    agent_m = next(m for m in ok(admin.get(P(pid, "/members"))) if m.get("member_type") == "agent")
    before = len(all_notifications(ann.client))
    t = create_task(ann.client, pid, "For the bot", assignee_ids=[agent_m["id"]])
    ok(ann.client.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": mention(f"@{handle} go")}),
       201)
    # nothing lands for a human, and no row for the agent's stand-in id
    assert len(settle(ann.client)) == before
    assert not [x for x in all_notifications(admin) if x["task_id"] == t["id"]]


def test_list_pagination_read_and_read_all(admin, team):
    p, ann, bob = team
    pid = p["id"]
    ann_m = member_id(admin, pid, ann.id)
    tasks = [create_task(admin, pid, f"T{i}", assignee_ids=[ann_m]) for i in range(5)]
    wait_for(ann.client, lambda xs: len(xs) >= 5)
    first = page(ann.client, page_size=2)
    assert first["page_size"] == 2 and len(first["items"]) == 2 and first["next_cursor"]
    assert first["unread_count"] == 5
    seen, cursor = [x["id"] for x in first["items"]], first["next_cursor"]
    while cursor:
        nxt = page(ann.client, page_size=2, cursor=cursor)
        seen += [x["id"] for x in nxt["items"]]
        cursor = nxt["next_cursor"]
    assert len(seen) == len(set(seen)) == 5
    # newest first
    assert [x["task_id"] for x in all_notifications(ann.client)] == [t["id"] for t in reversed(tasks)]
    # out-of-range page sizes fall back to the default; forged cursors are refused
    assert page(ann.client, page_size=500)["page_size"] == 20
    err(ann.client.get("/users/me/notifications", params={"cursor": "not-a-cursor"}), 400,
        "NOTIFICATION_INVALID_CURSOR")

    nid = seen[0]
    no_content(ann.client.patch(f"/users/me/notifications/{nid}/read"))
    no_content(ann.client.patch(f"/users/me/notifications/{nid}/read"))  # idempotent
    data = page(ann.client)
    assert data["unread_count"] == 4
    assert next(x for x in data["items"] if x["id"] == nid)["read_at"]
    # someone else's notification, or none at all
    err(bob.client.patch(f"/users/me/notifications/{nid}/read"), 404, "NOTIFICATION_NOT_FOUND")
    err(ann.client.patch(f"/users/me/notifications/{uuid.uuid4()}/read"), 404, "NOTIFICATION_NOT_FOUND")
    err(ann.client.patch("/users/me/notifications/nope/read"), 400)
    no_content(ann.client.post("/users/me/notifications/read-all"))
    data = page(ann.client)
    assert data["unread_count"] == 0 and all(x["read_at"] for x in data["items"])
    # anonymous callers have no notifications
    err(requests.get(admin.server.url("/users/me/notifications"), timeout=30), 401)


def test_survives_a_crash_without_duplicates_or_gaps(restartable_server):
    srv = restartable_server
    adm = srv.admin()
    p = ok(adm.post("/projects", json={"name": unique("Crash ")}), 201)
    ann = create_user(srv, adm, prefix="ann")
    add_member(adm, p["id"], ann.id)
    ann_m = member_id(adm, p["id"], ann.id)
    t1 = create_task(adm, p["id"], "before", assignee_ids=[ann_m])
    wait_for(ann.client, lambda xs: len(xs) == 1)
    # assign and crash at once: the subscription may or may not have run
    t2 = create_task(adm, p["id"], "during", assignee_ids=[ann_m])
    srv.kill()
    srv.start()
    ann.client = srv.login(ann.username, ann.password)
    items = wait_for(ann.client, lambda xs: len(xs) >= 2)
    t3 = create_task(srv.admin(), p["id"], "after", assignee_ids=[ann_m])
    items = wait_for(ann.client, lambda xs: len(xs) >= 3)
    items = settle(ann.client)
    assert sorted(x["task_id"] for x in items) == sorted([t1["id"], t2["id"], t3["id"]]), items
    # a clean restart replays nothing twice either
    srv.restart()
    ann.client = srv.login(ann.username, ann.password)
    assert len(settle(ann.client)) == 3
    # the subscription is visible to operators, caught up and healthy
    status = srv.cli("projections", "status")
    assert status.returncode == 0, status.stderr
    line = next((ln for ln in status.stdout.splitlines() if "notifications" in ln), None)
    assert line is not None, status.stdout


def test_notifications_and_read_state_are_events_and_survive_a_rebuild(restartable_server):
    """Notifications and "mark read" are events in the recipient's inbox stream, so a
    projection rebuild reproduces them exactly, read times included."""
    from conftest import psql, db_url_for

    srv = restartable_server
    adm = srv.admin()
    p = ok(adm.post("/projects", json={"name": unique("Inbox ")}), 201)
    ann = create_user(srv, adm, prefix="ann")
    add_member(adm, p["id"], ann.id)
    ann_m = member_id(adm, p["id"], ann.id)
    for i in range(3):
        create_task(adm, p["id"], f"T{i}", assignee_ids=[ann_m])
    items = wait_for(ann.client, lambda xs: len(xs) == 3)
    no_content(ann.client.patch(f"/users/me/notifications/{items[0]['id']}/read"))
    before = all_notifications(ann.client)
    assert sum(1 for x in before if x["read_at"]) == 1

    db = db_url_for(srv.database_url.rsplit("/", 1)[1].split("?", 1)[0])
    inbox = ann.id[:14] + "8" + ann.id[15:]  # the user's id as a version-8 uuid
    rows = psql(
        f"SELECT event_type, event_id FROM events WHERE stream_type = 'inbox' AND stream_id = '{inbox}' "
        "ORDER BY version", db).splitlines()
    kinds = [r.split("|")[0] for r in rows]
    assert kinds == ["notification.created"] * 3 + ["notification.read"], rows
    # the event id of a created notification is the notification's id
    assert sorted(r.split("|")[1] for r in rows[:3]) == sorted(x["id"] for x in before)
    # inbox events belong to no project's feed
    assert psql(f"SELECT count(*) FROM events WHERE stream_type = 'inbox' AND project_id IS NOT NULL", db).strip() == "0"

    # marking read again, or all read with one left unread, appends exactly what changed
    no_content(ann.client.patch(f"/users/me/notifications/{items[0]['id']}/read"))
    no_content(ann.client.post("/users/me/notifications/read-all"))
    no_content(ann.client.post("/users/me/notifications/read-all"))
    kinds = psql(f"SELECT event_type FROM events WHERE stream_type = 'inbox' AND stream_id = '{inbox}' "
                 "ORDER BY version", db).splitlines()
    assert kinds == ["notification.created"] * 3 + ["notification.read", "notification.all_read"], kinds
    before = all_notifications(ann.client)
    assert all(x["read_at"] for x in before) and page(ann.client)["unread_count"] == 0

    srv.stop()
    res = srv.cli("projections", "rebuild")
    assert res.returncode == 0, res.stderr[-2000:]
    res = srv.cli("projections", "verify")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    srv.start()
    ann.client = srv.login(ann.username, ann.password)
    assert all_notifications(ann.client) == before

"""Who may read and write tasks, sprints, views and activities (seed page 15 auth column)."""

import pytest

from conftest import err, ok
from test_2_support import (P, activities, add_member, blocks, create_sprint, create_task, items, list_all,
                            views_of)


@pytest.fixture
def world(admin, make_project):
    out = {}
    for kind, public in (("private", False), ("public", True)):
        p = make_project(is_public=public)
        pid = p["id"]
        s = create_sprint(admin, pid, "Perm sprint")
        t = create_task(admin, pid, "Perm task", sprint_id=s["id"])
        view = views_of(admin, pid, "backlog")[0]
        com = ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("hi")}), 201)
        out[kind] = dict(pid=pid, sprint=s, task=t, view=view, comment=com)
    return out


def read_paths(w):
    pid, t, s, v = w["pid"], w["task"], w["sprint"], w["view"]
    return [
        P(pid, "/tasks"), P(pid, f"/tasks/{t['id']}"), P(pid, f"/tasks/by-number/{t['task_number']}"),
        P(pid, f"/tasks/{t['id']}/activities"), P(pid, "/sprints"), P(pid, f"/sprints/{s['id']}"),
        P(pid, "/views?context=backlog"), P(pid, f"/views?context=sprint&sprint_id={s['id']}"),
        P(pid, f"/views/{v['id']}"), P(pid, f"/views/{v['id']}/task-positions"),
    ]


def write_calls(w):
    pid, t, s, v, c = w["pid"], w["task"], w["sprint"], w["view"], w["comment"]
    return [
        ("post", P(pid, "/tasks"), {"title": "nope"}),
        ("patch", P(pid, f"/tasks/{t['id']}"), {"title": "nope"}),
        ("delete", P(pid, f"/tasks/{t['id']}"), None),
        ("post", P(pid, f"/tasks/{t['id']}/activities/comments"), {"content": blocks("nope")}),
        ("post", P(pid, "/sprints"), {"name": "nope"}),
        ("patch", P(pid, f"/sprints/{s['id']}"), {"name": "nope"}),
        ("post", P(pid, f"/sprints/{s['id']}/complete"), {}),
        ("delete", P(pid, f"/sprints/{s['id']}"), None),
        ("post", P(pid, "/views?context=backlog"), {"name": "nope"}),
        ("patch", P(pid, f"/views/{v['id']}"), {"name": "nope"}),
        ("delete", P(pid, f"/views/{v['id']}"), None),
        ("put", P(pid, "/views/positions?context=backlog"), {"view_ids": [v["id"]]}),
        ("put", P(pid, f"/views/{v['id']}/task-positions/{t['id']}"), {"position": 1.0}),
        ("put", P(pid, f"/views/{v['id']}/task-positions"), {"items": [{"task_id": t["id"], "position": 1.0}]}),
    ]


def call(c, method, path, body):
    return c.request(method.upper(), path, json=body) if body is not None else c.request(method.upper(), path)


def assert_untouched(admin, w):
    pid = w["pid"]
    t = ok(admin.get(P(pid, f"/tasks/{w['task']['id']}")))
    assert t["title"] == "Perm task" and t["sprint_id"] == w["sprint"]["id"]
    s = ok(admin.get(P(pid, f"/sprints/{w['sprint']['id']}")))
    assert s["name"] == "Perm sprint" and s["status"] != "completed"
    assert [x["title"] for x in list_all(admin, pid)] == ["Perm task"]
    assert [x["name"] for x in items(admin.get(P(pid, "/sprints")))] == ["Perm sprint"]
    assert [x["id"] for x in views_of(admin, pid, "backlog")] == [w["view"]["id"]]
    assert items(admin.get(P(pid, f"/views/{w['view']['id']}/task-positions"))) == []
    assert [a["activity_type"] for a in activities(admin, pid, w["task"]["id"])] == ["task.created", "comment"]


def test_viewer_reads_but_cannot_write(admin, world, make_user):
    w = world["private"]
    viewer = make_user(prefix="pview")
    add_member(admin, w["pid"], viewer.id, "Viewer")
    for path in read_paths(w):
        ok(viewer.client.get(path))
    for method, path, body in write_calls(w):
        err(call(viewer.client, method, path, body), 403, "FORBIDDEN")
    err(viewer.client.patch(P(w["pid"], f"/tasks/{w['task']['id']}/activities/comments/{w['comment']['id']}"),
                            json={"content": blocks("x")}), 403)
    assert_untouched(admin, w)


def test_outsider_is_forbidden_on_private(admin, world, make_user):
    w = world["private"]
    outsider = make_user(prefix="pout")
    for path in read_paths(w):
        err(outsider.client.get(path), 403, "FORBIDDEN")
    for method, path, body in write_calls(w)[:3]:
        err(call(outsider.client, method, path, body), 403, "FORBIDDEN")


def test_anonymous(server, admin, world):
    anon = server.client()
    pub, priv = world["public"], world["private"]
    for path in read_paths(pub):
        ok(anon.get(path))
    assert [a["activity_type"] for a in items(anon.get(P(pub["pid"], f"/tasks/{pub['task']['id']}/activities")))] \
        == ["task.created", "comment"]
    for path in read_paths(priv):
        err(anon.get(path), 401, "AUTH_MISSING_TOKEN")
    for method, path, body in write_calls(pub):
        err(call(anon, method, path, body), 401, "AUTH_MISSING_TOKEN")
    assert_untouched(admin, pub)


def test_editor_can_write(admin, world, make_user):
    w = world["private"]
    pid = w["pid"]
    ed = make_user(prefix="pedit")
    add_member(admin, pid, ed.id, "Editor")
    c = ed.client
    t = create_task(c, pid, "by editor")
    ok(c.patch(P(pid, f"/tasks/{t['id']}"), json={"sprint_id": w["sprint"]["id"]}))
    s = create_sprint(c, pid, "editor sprint")
    ok(c.post(P(pid, "/views?context=backlog"), json={"name": "editor view"}), 201)
    ok(c.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("ok")}), 201)
    ok(c.post(P(pid, f"/sprints/{s['id']}/complete"), json={}))
    acts = activities(admin, pid, t["id"])
    assert {a["actor_username"] for a in acts} == {ed.username}

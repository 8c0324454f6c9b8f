"""GET /projects/:id/tasks: cursor pagination and filters (seed page 05, "Unified task list")."""

import uuid

import pytest

from conftest import create_user, describe, err, no_content, ok
from test_2_support import (P, add_member, create_sprint, create_task, ids, list_all, list_page, member_id,
                            patch_task, statuses_of, types_of, views_of)

N = 30


@pytest.fixture(scope="module")
def ds(server, admin, admin_id):
    """A project with 30 + 4 tasks spread over sprints, statuses, types and assignees."""
    p = ok(admin.post("/projects", json={"name": "List dataset", "is_public": False}), 201)
    pid = p["id"]
    u = create_user(server, admin, prefix="lister")
    add_member(admin, pid, u.id, "Editor")
    m_admin, m_u = member_id(admin, pid, admin_id), member_id(admin, pid, u.id)
    types, sts = types_of(admin, pid), statuses_of(admin, pid)
    s1, s2 = create_sprint(admin, pid, "S1"), create_sprint(admin, pid, "S2")
    sprint_cycle = [None, s1["id"], s2["id"]]
    status_cycle = [sts[n]["id"] for n in ("Backlog", "Todo", "In Progress", "Done")]
    assignee_cycle = [[], [m_admin], [m_u], [m_admin, m_u], []]
    type_cycle = [types[n]["id"] for n in ("Task", "Bug", "Story")]
    tasks = []
    for i in range(N):
        body = {"title": f"item {i:02d}", "status_id": status_cycle[i % 4], "assignee_ids": assignee_cycle[i % 5],
                "task_type_id": type_cycle[i % 3]}
        if sprint_cycle[i % 3]:
            body["sprint_id"] = sprint_cycle[i % 3]
        tasks.append(create_task(admin, pid, **body))
    epic = create_task(admin, pid, "epic", task_type_id=types["Epic"]["id"])
    subs = [create_task(admin, pid, f"sub {i}", task_type_id=types["Subtask"]["id"], parent_task_id=epic["id"])
            for i in range(3)]
    # one task without a type, one deleted task
    untyped = patch_task(admin, pid, tasks[0]["id"], {"task_type_id": None})
    assert untyped.get("task_type_id") is None, untyped
    tasks[0] = untyped
    gone = create_task(admin, pid, "deleted one", sprint_id=s1["id"])
    ok(admin.delete(P(pid, f"/tasks/{gone['id']}")))
    all_tasks = tasks + [epic] + subs
    return dict(pid=pid, tasks=tasks, all=all_tasks, epic=epic, subs=subs, s1=s1, s2=s2, sts=sts, types=types,
                m_admin=m_admin, m_u=m_u, gone=gone, u=u)


def expect(ds, pred):
    return {t["id"] for t in ds["all"] if pred(t)}


def test_default_page_size_and_shape(admin, ds):
    data = list_page(admin, ds["pid"])
    assert data["page_size"] == 20 and len(data["items"]) == 20
    assert isinstance(data["next_cursor"], str) and data["next_cursor"]
    t = data["items"][0]
    assert {"id", "task_number", "title", "assignee_ids", "custom_fields", "tags"} <= set(t)
    assert "view_position" not in t or t["view_position"] is None


@pytest.mark.parametrize("size", [1, 7, 20, 33])
def test_walk_returns_every_task_once(admin, ds, size):
    got = list_all(admin, ds["pid"], page_size=size)
    assert ids(got) == ids(ds["all"]), "walking next_cursor must return every live task exactly once"
    assert ds["gone"]["id"] not in ids(got)
    assert len(got) == len(ds["all"])


def test_page_size_bounds(admin, ds):
    pid = ds["pid"]
    for bad in (0, -5, 201, 500):
        data = list_page(admin, pid, page_size=bad)
        assert data["page_size"] == 20 and len(data["items"]) == 20, f"page_size={bad} -> {data['page_size']}"
    data = list_page(admin, pid, page_size=200)
    assert data["page_size"] == 200 and len(data["items"]) == len(ds["all"]) and data["next_cursor"] is None
    data = list_page(admin, pid, page_size=len(ds["all"]))
    assert len(data["items"]) == len(ds["all"])
    # a final exactly-full page may report a cursor, but following it returns nothing new
    if data["next_cursor"]:
        nxt = list_page(admin, pid, page_size=len(ds["all"]), cursor=data["next_cursor"])
        assert nxt["items"] == [] and nxt["next_cursor"] is None


def test_sprint_filters(admin, ds):
    pid, s1, s2 = ds["pid"], ds["s1"]["id"], ds["s2"]["id"]
    assert ids(list_all(admin, pid, sprint_id=s1)) == expect(ds, lambda t: t.get("sprint_id") == s1)
    assert ids(list_all(admin, pid, sprint_id="null")) == expect(ds, lambda t: t.get("sprint_id") is None)
    assert ids(list_all(admin, pid, sprint_ids=f"{s1},{s2}")) == expect(ds, lambda t: t.get("sprint_id") in (s1, s2))
    assert ids(list_all(admin, pid, sprint_ids=s2)) == expect(ds, lambda t: t.get("sprint_id") == s2)
    assert list_all(admin, pid, sprint_id=str(uuid.uuid4())) == []
    # pagination inside a filter
    assert ids(list_all(admin, pid, sprint_id="null", page_size=3)) == expect(ds, lambda t: t.get("sprint_id") is None)


def test_status_filters(admin, ds):
    pid, sts = ds["pid"], ds["sts"]
    todo, done = sts["Todo"]["id"], sts["Done"]["id"]
    assert ids(list_all(admin, pid, status_id=todo)) == expect(ds, lambda t: t["status_id"] == todo)
    assert ids(list_all(admin, pid, status_ids=f"{todo},{done}")) == expect(ds, lambda t: t["status_id"] in (todo,
                                                                                                            done))
    both = list_all(admin, pid, status_id=todo, sprint_id=ds["s1"]["id"])
    assert ids(both) == expect(ds, lambda t: t["status_id"] == todo and t.get("sprint_id") == ds["s1"]["id"])
    assert both, "dataset should have Todo tasks in S1"


def test_assignee_filters(admin, ds):
    pid, ma, mu = ds["pid"], ds["m_admin"], ds["m_u"]
    assert ids(list_all(admin, pid, assignee_id=ma)) == expect(ds, lambda t: ma in t["assignee_ids"])
    assert ids(list_all(admin, pid, assignee_id="null")) == expect(ds, lambda t: not t["assignee_ids"])
    assert ids(list_all(admin, pid, assignee_ids=f"{ma},{mu}")) == expect(
        ds, lambda t: ma in t["assignee_ids"] or mu in t["assignee_ids"])
    assert ids(list_all(admin, pid, assignee_ids=mu)) == expect(ds, lambda t: mu in t["assignee_ids"])


def test_type_and_parent_filters(admin, ds):
    pid, types = ds["pid"], ds["types"]
    bug, story, epic = types["Bug"]["id"], types["Story"]["id"], types["Epic"]["id"]
    assert ids(list_all(admin, pid, task_type_id=bug)) == expect(ds, lambda t: t.get("task_type_id") == bug)
    assert ids(list_all(admin, pid, task_type_ids=f"{bug},{story}")) == expect(
        ds, lambda t: t.get("task_type_id") in (bug, story))
    assert ids(list_all(admin, pid, task_type_ids=epic)) == {ds["epic"]["id"]}
    assert ids(list_all(admin, pid, task_type_id="null")) == {ds["tasks"][0]["id"]}
    assert ids(list_all(admin, pid, parent_task_id=ds["epic"]["id"])) == ids(ds["subs"])
    assert list_all(admin, pid, parent_task_id=ds["tasks"][5]["id"]) == []


def test_bad_filter_values(admin, ds):
    pid = ds["pid"]
    for name in ("sprint_id", "sprint_ids", "status_id", "status_ids", "assignee_id", "assignee_ids",
                 "task_type_id", "task_type_ids", "parent_task_id", "view_id"):
        err(admin.get(P(pid, "/tasks"), params={name: "not-a-uuid"}), 400)
    err(admin.get(P(pid, "/tasks"), params={"sprint_ids": f"{ds['s1']['id']},garbage"}), 400)


def test_view_id_enrichment(admin, ds):
    pid = ds["pid"]
    view = views_of(admin, pid, "backlog")[0]
    picked = [t for t in ds["tasks"] if t.get("sprint_id") is None][:3]
    no_content(admin.put(P(pid, f"/views/{view['id']}/task-positions"), json={"items": [
        {"task_id": picked[0]["id"], "position": 300.0, "group_key": "g-a"},
        {"task_id": picked[1]["id"], "position": 100.5, "group_key": None},
        {"task_id": picked[2]["id"], "position": 200.0, "group_key": "g-b"},
    ]}))
    got = {t["id"]: t for t in list_all(admin, pid, view_id=view["id"], sprint_id="null")}
    assert ids(got.values()) == expect(ds, lambda t: t.get("sprint_id") is None)
    assert got[picked[0]["id"]]["view_position"] == 300.0 and got[picked[0]["id"]]["view_group_key"] == "g-a"
    assert got[picked[1]["id"]]["view_position"] == 100.5 and got[picked[1]["id"]].get("view_group_key") is None
    assert got[picked[2]["id"]]["view_position"] == 200.0 and got[picked[2]["id"]]["view_group_key"] == "g-b"
    others = [t for tid, t in got.items() if tid not in ids(picked)]
    assert others and all(t.get("view_position") is None for t in others)
    # without view_id there is no enrichment
    plain = {t["id"]: t for t in list_all(admin, pid, sprint_id="null")}
    assert plain[picked[0]["id"]].get("view_position") is None
    # an unknown view is a filter-style parameter, like an unknown sprint_id: no error, and nothing to enrich with
    r = admin.get(P(pid, "/tasks"), params={"view_id": str(uuid.uuid4())})
    assert r.status_code == 200, describe(r)
    assert all(t.get("view_position") is None and t.get("view_group_key") is None for t in ok(r)["items"]), describe(r)


def test_changes_are_visible_to_filters(admin, ds):
    """List results follow task updates (the read model is kept current)."""
    pid = ds["pid"]
    t = create_task(admin, pid, "moving", sprint_id=ds["s1"]["id"])
    assert t["id"] in ids(list_all(admin, pid, sprint_id=ds["s1"]["id"]))
    patch_task(admin, pid, t["id"], {"sprint_id": ds["s2"]["id"], "assignee_ids": [ds["m_u"]]})
    assert t["id"] not in ids(list_all(admin, pid, sprint_id=ds["s1"]["id"]))
    assert t["id"] in ids(list_all(admin, pid, sprint_id=ds["s2"]["id"], assignee_id=ds["m_u"]))
    ok(admin.delete(P(pid, f"/tasks/{t['id']}")))
    assert t["id"] not in ids(list_all(admin, pid, sprint_id=ds["s2"]["id"]))


def test_cursor_is_stable_under_concurrent_writes(admin, make_project):
    """Keyset pagination: tasks created, updated or deleted while a client walks the pages never make
    the walk repeat a task or skip one that existed (and was not deleted) throughout."""
    pid = make_project()["id"]
    original = [create_task(admin, pid, f"walk {i:02d}", importance=i % 3) for i in range(15)]
    seen, cursor, pages = [], None, 0
    deleted = set()
    while True:
        q = {"page_size": 4}
        if cursor:
            q["cursor"] = cursor
        data = list_page(admin, pid, **q)
        seen += [t["id"] for t in data["items"]]
        pages += 1
        if pages == 1:
            create_task(admin, pid, "born mid-walk")
            not_seen = [t for t in original if t["id"] not in seen]
            ok(admin.delete(P(pid, f"/tasks/{not_seen[-1]['id']}")))
            deleted.add(not_seen[-1]["id"])
            for t in original[:6]:
                patch_task(admin, pid, t["id"], {"title": t["title"] + " (edited)", "importance": 9})
        cursor = data["next_cursor"]
        if not cursor:
            break
        assert pages < 20
    assert len(seen) == len(set(seen)), "a task was returned twice during the walk"
    missing = {t["id"] for t in original} - deleted - set(seen)
    assert not missing, f"{len(missing)} task(s) skipped by the walk"
    assert not (deleted & set(seen[4:])), "a task deleted before its page was fetched was still returned"

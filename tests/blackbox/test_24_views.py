"""Interaction views (seed page 05): contexts, seeded views, CRUD, tab reorder, manual task positions."""

import json
import uuid

import pytest

from conftest import describe, err, is_uuid, no_content, ok
from test_2_support import VIEW_FIELDS, P, create_sprint, create_task, items, types_of, views_of


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def test_seeded_project_views(admin, project):
    pid = project["id"]
    backlog = views_of(admin, pid, "backlog")
    assert len(backlog) == 1, backlog
    b = backlog[0]
    assert set(b) >= VIEW_FIELDS, b
    assert b["view_type"] == "table" and b["config"].get("column_by") == "sprint"
    assert b.get("sprint_id") is None and b["project_id"] == pid and is_uuid(b["id"])

    timeline = views_of(admin, pid, "timeline")
    assert len(timeline) == 1, timeline
    tl = timeline[0]
    assert tl["view_type"] == "roadmap" and tl.get("sprint_id") is None
    epic = types_of(admin, pid)["Epic"]["id"]
    tt = (tl["config"].get("filters") or {}).get("task_types")
    assert tt is not None and epic in json.dumps(tt), f"timeline view must filter to the Epic type: {tl['config']}"
    assert b["id"] != tl["id"]
    assert ok(admin.get(P(pid, f"/views/{b['id']}"))) == b


def test_context_validation(admin, project):
    pid = project["id"]
    err(admin.get(P(pid, "/views"), params={"context": "kanban"}), 400)
    err(admin.get(P(pid, "/views"), params={"context": "sprint"}), 400, "BAD_REQUEST")
    err(admin.get(P(pid, "/views")), 400, "BAD_REQUEST")  # default context is sprint -> sprint_id required
    err(admin.get(P(pid, "/views"), params={"context": "sprint", "sprint_id": "bad"}), 400)
    err(admin.post(P(pid, "/views"), params={"context": "sprint"}, json={"name": "x"}), 400, "BAD_REQUEST")
    err(admin.post(P(pid, "/views"), params={"context": "nope"}, json={"name": "x"}), 400)
    # sprint_id is the scope of a sprint context (not a filter): an unknown sprint is a 404
    err(admin.get(P(pid, "/views"), params={"context": "sprint", "sprint_id": str(uuid.uuid4())}), 404,
        "SPRINT_NOT_FOUND")


def test_view_crud(admin, project):
    pid = project["id"]
    r = admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "My table"})
    v = ok(r, 201)
    assert set(v) >= VIEW_FIELDS, describe(r)
    assert v["name"] == "My table" and v["view_type"] == "table" and v.get("sprint_id") is None
    assert isinstance(v["config"], dict)
    cfg = {"column_by": "status", "sort_by": "manual", "fields": ["title", "status"],
           "filters": {"statuses": {"all": True, "items": {}}}}
    board = ok(admin.post(P(pid, "/views"), params={"context": "backlog"},
                          json={"name": "Board", "view_type": "board", "config": cfg, "position": 5}), 201)
    assert board["view_type"] == "board" and board["config"] == cfg and board["position"] == 5
    names = [x["name"] for x in views_of(admin, pid, "backlog")]
    assert len(names) == 3 and {"My table", "Board"} <= set(names), names
    assert views_of(admin, pid, "timeline")[0]["name"] not in ("My table", "Board")

    err(admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"view_type": "table"}), 400)
    err(admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "x", "view_type": "gantt"}), 400)
    err(admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "Plug", "view_type": "plugin"}),
        400, "VIEW_PLUGIN_CONFIG_REQUIRED")
    err(admin.post(P(pid, "/views"), params={"context": "backlog"},
                   json={"name": "Plug", "view_type": "plugin", "config": {"plugin_manifest_id": "com.paca.x"}}),
        400, "VIEW_PLUGIN_CONFIG_REQUIRED")
    plug = ok(admin.post(P(pid, "/views"), params={"context": "timeline"},
                         json={"name": "Plug", "view_type": "plugin",
                               "config": {"plugin_manifest_id": "com.paca.checklist",
                                          "plugin_component": "ChecklistView"}}), 201)
    assert plug["config"]["plugin_manifest_id"] == "com.paca.checklist"
    assert plug["config"]["plugin_component"] == "ChecklistView"

    p = ok(admin.patch(P(pid, f"/views/{v['id']}"), json={"name": "Renamed"}))
    assert p["name"] == "Renamed" and p["view_type"] == "table"
    p = ok(admin.patch(P(pid, f"/views/{v['id']}"), json={"view_type": "board", "config": {"column_by": "assignee"}}))
    assert p["view_type"] == "board" and p["config"] == {"column_by": "assignee"} and p["name"] == "Renamed"
    err(admin.patch(P(pid, f"/views/{v['id']}"), json={"view_type": "plugin"}), 400, "VIEW_PLUGIN_CONFIG_REQUIRED")
    assert ok(admin.get(P(pid, f"/views/{v['id']}"))) == p
    err(admin.get(P(pid, f"/views/{uuid.uuid4()}")), 404)
    err(admin.patch(P(pid, f"/views/{uuid.uuid4()}"), json={"name": "x"}), 404)


def test_delete_and_last_view(admin, project):
    pid = project["id"]
    seeded = views_of(admin, pid, "backlog")[0]
    extra = ok(admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "Extra"}), 201)
    r = admin.delete(P(pid, f"/views/{seeded['id']}"))
    no_content(r)
    err(admin.get(P(pid, f"/views/{seeded['id']}")), 404)
    assert [x["id"] for x in views_of(admin, pid, "backlog")] == [extra["id"]]
    err(admin.delete(P(pid, f"/views/{extra['id']}")), 409, "VIEW_IS_LAST_VIEW")
    tl = views_of(admin, pid, "timeline")[0]
    err(admin.delete(P(pid, f"/views/{tl['id']}")), 409, "VIEW_IS_LAST_VIEW")
    s = create_sprint(admin, pid, "Views")
    board, table = views_of(admin, pid, "sprint", s["id"])
    no_content(admin.delete(P(pid, f"/views/{board['id']}")))
    err(admin.delete(P(pid, f"/views/{table['id']}")), 409, "VIEW_IS_LAST_VIEW")
    assert [x["id"] for x in views_of(admin, pid, "sprint", s["id"])] == [table["id"]]


def test_reorder_views(admin, project):
    pid = project["id"]
    first = views_of(admin, pid, "backlog")[0]
    a = ok(admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "A"}), 201)
    b = ok(admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "B"}), 201)
    wanted = [b["id"], first["id"], a["id"]]
    no_content(admin.put(P(pid, "/views/positions"), params={"context": "backlog"}, json={"view_ids": wanted}))
    got = views_of(admin, pid, "backlog")
    assert [x["id"] for x in got] == wanted
    pos = [x["position"] for x in got]
    assert pos == sorted(pos) and len(set(pos)) == 3, pos
    for bad in (wanted[:2], wanted + [str(uuid.uuid4())], [wanted[0], wanted[0], wanted[1]],
                wanted[:2] + [views_of(admin, pid, "timeline")[0]["id"]]):
        err(admin.put(P(pid, "/views/positions"), params={"context": "backlog"}, json={"view_ids": bad}), 400,
            "VIEW_REORDER_INVALID")
    assert [x["id"] for x in views_of(admin, pid, "backlog")] == wanted

    s = create_sprint(admin, pid, "Reorder")
    sv = views_of(admin, pid, "sprint", s["id"])
    rev = [x["id"] for x in reversed(sv)]
    no_content(admin.put(P(pid, "/views/positions"), params={"context": "sprint", "sprint_id": s["id"]},
                         json={"view_ids": rev}))
    assert [x["id"] for x in views_of(admin, pid, "sprint", s["id"])] == rev


def test_sprint_context_views(admin, project):
    pid = project["id"]
    s1, s2 = create_sprint(admin, pid, "One"), create_sprint(admin, pid, "Two")
    v = ok(admin.post(P(pid, "/views"), params={"context": "sprint", "sprint_id": s1["id"]},
                      json={"name": "Mine", "view_type": "table"}), 201)
    assert v["sprint_id"] == s1["id"]
    assert v["id"] in {x["id"] for x in views_of(admin, pid, "sprint", s1["id"])}
    assert v["id"] not in {x["id"] for x in views_of(admin, pid, "sprint", s2["id"])}
    assert v["id"] not in {x["id"] for x in views_of(admin, pid, "backlog")}


def test_task_positions(admin, project):
    pid = project["id"]
    view = views_of(admin, pid, "backlog")[0]
    vid = view["id"]
    t1, t2, t3 = (create_task(admin, pid, f"pos {i}") for i in range(3))
    assert items(admin.get(P(pid, f"/views/{vid}/task-positions"))) == []
    no_content(admin.put(P(pid, f"/views/{vid}/task-positions"), json={"items": [
        {"task_id": t1["id"], "position": 98304.0, "group_key": "col-a"},
        {"task_id": t2["id"], "position": 163840.0, "group_key": None},
    ]}))
    got = {x["task_id"]: x for x in items(admin.get(P(pid, f"/views/{vid}/task-positions")))}
    assert set(got) == {t1["id"], t2["id"]}
    assert got[t1["id"]]["view_id"] == vid and got[t1["id"]]["position"] == 98304.0
    assert got[t1["id"]]["group_key"] == "col-a" and got[t2["id"]].get("group_key") is None

    # single upsert: insert and move
    no_content(admin.put(P(pid, f"/views/{vid}/task-positions/{t3['id']}"), json={"position": 1.5}))
    no_content(admin.put(P(pid, f"/views/{vid}/task-positions/{t1['id']}"),
                         json={"position": (98304.0 + 163840.0) / 2, "group_key": "col-b"}))
    # bulk upsert overwrites existing rows
    no_content(admin.put(P(pid, f"/views/{vid}/task-positions"),
                         json={"items": [{"task_id": t2["id"], "position": 7.25, "group_key": "col-c"}]}))
    got = {x["task_id"]: x for x in items(admin.get(P(pid, f"/views/{vid}/task-positions")))}
    assert set(got) == {t1["id"], t2["id"], t3["id"]}, "one row per (view, task)"
    assert got[t1["id"]]["position"] == 131072.0 and got[t1["id"]]["group_key"] == "col-b"
    assert got[t2["id"]]["position"] == 7.25 and got[t2["id"]]["group_key"] == "col-c"
    assert got[t3["id"]]["position"] == 1.5
    big = 2 ** 53 - 1
    no_content(admin.put(P(pid, f"/views/{vid}/task-positions/{t3['id']}"), json={"position": (big + 7.25) / 2}))
    got = {x["task_id"]: x for x in items(admin.get(P(pid, f"/views/{vid}/task-positions")))}
    assert got[t3["id"]]["position"] == (big + 7.25) / 2

    # positions belong to one view
    other = ok(admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "Other"}), 201)
    assert items(admin.get(P(pid, f"/views/{other['id']}/task-positions"))) == []

    err(admin.put(P(pid, f"/views/{vid}/task-positions"), json={"items": []}), 400)
    err(admin.put(P(pid, f"/views/{vid}/task-positions/{t1['id']}"), json={"position": -1}), 400)
    err(admin.put(P(pid, f"/views/{vid}/task-positions/{t1['id']}"), json={}), 400)
    err(admin.put(P(pid, f"/views/{vid}/task-positions/{uuid.uuid4()}"), json={"position": 1}), 404,
        "TASK_NOT_FOUND")
    err(admin.put(P(pid, f"/views/{uuid.uuid4()}/task-positions/{t1['id']}"), json={"position": 1}), 404,
        "VIEW_NOT_FOUND")

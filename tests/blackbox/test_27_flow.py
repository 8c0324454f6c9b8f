"""Seed page 05 end to end: backlog -> sprint planning -> board -> timeline -> complete sprint,
then everything survives `projections rebuild` + `verify` and a server restart (own database)."""

import json

import pytest

from conftest import no_content, ok
from test_2_support import (P, activities, blocks, changes_by_field, create_task, get_task, items, list_all,
                            member_id, patch_task, rebuild_and_verify, statuses_of, types_of, updates, views_of)

POSITION_MAX = 2 ** 53 - 1


def resolve(filter_cfg, universe):
    """resolveFilterConfig of interaction-api.ts: all=true -> everything minus false items;
    all=false -> only true items ("normal" = every non-system type)."""
    if not filter_cfg:
        return set(universe)
    items_ = filter_cfg.get("items") or {}
    if filter_cfg.get("all"):
        return {u for u in universe if items_.get(u) is not False}
    return {u for u in universe if items_.get(u) is True or isinstance(items_.get(u), dict)}


def resolve_types(filter_cfg, types):
    if not filter_cfg:
        return {t["id"] for t in types.values()}
    items_ = filter_cfg.get("items") or {}
    out = set()
    if filter_cfg.get("all"):
        out = {t["id"] for t in types.values() if items_.get(t["id"]) is not False}
    for key, val in items_.items():
        if key == "normal" and val:
            out |= {t["id"] for t in types.values() if not t["is_system"]}
        elif val is True or isinstance(val, dict):
            out.add(key)
    return out


def by_view_order(tasks):
    pos = [t for t in tasks if t.get("view_position") is not None]
    rest = [t for t in tasks if t.get("view_position") is None]
    return sorted(pos, key=lambda t: t["view_position"]) + sorted(rest, key=lambda t: t["created_at"])


@pytest.fixture(scope="module")
def flow(module_server):
    srv = module_server
    admin = srv.admin()
    admin_id = admin.me()["id"]
    st = {"srv": srv}
    project = ok(admin.post("/projects", json={"name": "Checkout Revamp", "is_public": True}), 201)
    pid = st["pid"] = project["id"]
    types, sts = types_of(admin, pid), statuses_of(admin, pid)
    me = member_id(admin, pid, admin_id)

    # --- backlog ------------------------------------------------------------------
    backlog_view = views_of(admin, pid, "backlog")[0]
    assert backlog_view["config"]["column_by"] == "sprint"
    epic = create_task(admin, pid, "Checkout epic", task_type_id=types["Epic"]["id"],
                       description=blocks("Make checkout fast"))
    s_pay = create_task(admin, pid, "Pay with card", task_type_id=types["Story"]["id"], parent_task_id=epic["id"],
                        story_points=5, importance=3)
    s_addr = create_task(admin, pid, "Address form", task_type_id=types["Story"]["id"], parent_task_id=epic["id"],
                         story_points=3)
    s_recv = create_task(admin, pid, "Receipt email", task_type_id=types["Story"]["id"], parent_task_id=epic["id"])
    bug = create_task(admin, pid, "Double charge", task_type_id=types["Bug"]["id"], importance=5)
    sub = create_task(admin, pid, "Card form UI", task_type_id=types["Subtask"]["id"], parent_task_id=s_pay["id"])
    assert [t["task_number"] for t in (epic, s_pay, s_addr, s_recv, bug, sub)] == [1, 2, 3, 4, 5, 6]

    # the backlog page: every unscheduled task, ordered manually (fractional indexing)
    backlog = list_all(admin, pid, sprint_id="null", view_id=backlog_view["id"])
    assert {t["id"] for t in backlog} == {x["id"] for x in (epic, s_pay, s_addr, s_recv, bug, sub)}
    order = [bug, s_pay, s_addr, s_recv]
    positions, prev = [], None
    for _ in order:
        p = POSITION_MAX / 2 if prev is None else (prev + POSITION_MAX) / 2
        positions.append(p)
        prev = p
    no_content(admin.put(P(pid, f"/views/{backlog_view['id']}/task-positions"), json={"items": [
        {"task_id": t["id"], "position": p, "group_key": None} for t, p in zip(order, positions)]}))
    # drag s_recv between bug and s_pay
    mid = (positions[0] + positions[1]) / 2
    no_content(admin.put(P(pid, f"/views/{backlog_view['id']}/task-positions/{s_recv['id']}"),
                         json={"position": mid, "group_key": None}))
    backlog = list_all(admin, pid, sprint_id="null", view_id=backlog_view["id"])
    ordered = [t["id"] for t in by_view_order(backlog)]
    assert ordered[:4] == [bug["id"], s_recv["id"], s_pay["id"], s_addr["id"]], ordered
    assert set(ordered[4:]) == {epic["id"], sub["id"]}

    # --- sprint planning ----------------------------------------------------------
    sprint = ok(admin.post(P(pid, "/sprints"), json={"name": "Sprint 1", "start_date": "2026-03-02",
                                                     "end_date": "2026-03-13", "goal": "Card payments"}), 201)
    board, table = views_of(admin, pid, "sprint", sprint["id"])
    assert board["view_type"] == "board" and table["view_type"] == "table"
    for t in (s_pay, s_addr, bug, sub):
        patch_task(admin, pid, t["id"], {"sprint_id": sprint["id"]})
    all_sprints = {s["id"] for s in items(admin.get(P(pid, "/sprints")))}
    sprint_ids = resolve(board["config"]["filters"]["sprints"], all_sprints)
    assert sprint_ids == {sprint["id"]}
    type_ids = resolve_types(board["config"]["filters"].get("task_types"), types)
    assert types["Epic"]["id"] not in type_ids and types["Story"]["id"] in type_ids
    sprint_tasks = list_all(admin, pid, sprint_ids=",".join(sprint_ids), task_type_ids=",".join(type_ids))
    assert {t["id"] for t in sprint_tasks} >= {s_pay["id"], s_addr["id"], bug["id"]}
    assert {t["id"] for t in list_all(admin, pid, sprint_id="null")} == {epic["id"], s_recv["id"]}
    ok(admin.patch(P(pid, f"/sprints/{sprint['id']}"), json={"status": "active"}))

    # --- the board: one query per status column; drag cards across columns ----------
    def column(status_name):
        return [t["id"] for t in by_view_order(list_all(admin, pid, sprint_ids=sprint["id"],
                                                        status_id=sts[status_name]["id"], view_id=board["id"]))]

    assert set(column("Backlog")) == {s_pay["id"], s_addr["id"], bug["id"], sub["id"]}
    assert column("In Progress") == []
    patch_task(admin, pid, s_pay["id"], {"status_id": sts["In Progress"]["id"], "assignee_ids": [me]})
    no_content(admin.put(P(pid, f"/views/{board['id']}/task-positions/{s_pay['id']}"),
                         json={"position": POSITION_MAX / 2, "group_key": sts["In Progress"]["id"]}))
    patch_task(admin, pid, sub["id"], {"status_id": sts["In Progress"]["id"]})
    no_content(admin.put(P(pid, f"/views/{board['id']}/task-positions/{sub['id']}"),
                         json={"position": POSITION_MAX / 4, "group_key": sts["In Progress"]["id"]}))
    patch_task(admin, pid, bug["id"], {"status_id": sts["Done"]["id"]})
    patch_task(admin, pid, s_addr["id"], {"status_id": sts["Todo"]["id"]})
    assert column("In Progress") == [sub["id"], s_pay["id"]]
    assert column("Done") == [bug["id"]] and column("Todo") == [s_addr["id"]] and column("Backlog") == []
    pos = {x["task_id"]: x for x in items(admin.get(P(pid, f"/views/{board['id']}/task-positions")))}
    assert pos[s_pay["id"]]["group_key"] == sts["In Progress"]["id"]

    # --- timeline: Epics only -----------------------------------------------------
    tl = views_of(admin, pid, "timeline")[0]
    tl_types = resolve_types(tl["config"]["filters"]["task_types"], types)
    assert tl_types == {types["Epic"]["id"]}
    patch_task(admin, pid, epic["id"], {"start_date": "2026-03-02", "due_date": "2026-04-10"})
    bars = list_all(admin, pid, task_type_ids=",".join(tl_types), view_id=tl["id"])
    assert [(t["id"], t["start_date"][:10], t["due_date"][:10]) for t in bars] == [
        (epic["id"], "2026-03-02", "2026-04-10")]
    assert {t["id"] for t in list_all(admin, pid, parent_task_id=epic["id"])} == {s_pay["id"], s_addr["id"],
                                                                                   s_recv["id"]}

    # --- comment, then complete the sprint -----------------------------------------
    ok(admin.post(P(pid, f"/tasks/{s_pay['id']}/activities/comments"), json={"content": blocks("Carry over")}), 201)
    sprint2 = ok(admin.post(P(pid, "/sprints"), json={"name": "Sprint 2"}), 201)
    done = ok(admin.post(P(pid, f"/sprints/{sprint['id']}/complete"), json={"move_to_sprint_id": sprint2["id"]}))
    assert done["status"] == "completed"
    assert get_task(admin, pid, bug["id"])["sprint_id"] == sprint["id"]
    for t in (s_pay, s_addr, sub):
        assert get_task(admin, pid, t["id"])["sprint_id"] == sprint2["id"]
    assert {t["id"] for t in list_all(admin, pid, sprint_id=sprint2["id"])} == {s_pay["id"], s_addr["id"], sub["id"]}

    # the story's feed tells the whole story
    acts = activities(admin, pid, s_pay["id"])
    kinds = [a["activity_type"] for a in acts]
    assert kinds[0] == "task.created" and "comment" in kinds
    fields = [f for a in updates(acts) for f in changes_by_field(a)]
    assert "sprint" in fields and "status" in fields and "assignee" in fields
    status_change = next(changes_by_field(a)["status"] for a in updates(acts) if "status" in changes_by_field(a))
    assert (status_change["old"], status_change["new"]) == ("Backlog", "In Progress")

    # more history for the rebuild to reproduce: custom fields, comment edit/delete, a revert, a deletion
    ok(admin.post(P(pid, "/custom-fields"), json={"field_key": "risk", "display_name": "Risk",
                                                  "field_type": "select", "options": ["low", "high"]}), 201)
    patch_task(admin, pid, s_addr["id"], {"custom_fields": {"risk": "high"}, "tags": ["forms"]})
    patch_task(admin, pid, s_addr["id"], {"title": "Address form v2", "description": blocks("Street", "City")})
    c1 = ok(admin.post(P(pid, f"/tasks/{s_addr['id']}/activities/comments"), json={"content": blocks("first")}),
            201)
    ok(admin.patch(P(pid, f"/tasks/{s_addr['id']}/activities/comments/{c1['id']}"),
                   json={"content": blocks("first, edited")}))
    c2 = ok(admin.post(P(pid, f"/tasks/{s_addr['id']}/activities/comments"), json={"content": {"text": "tmp"}}),
            201)
    no_content(admin.delete(P(pid, f"/tasks/{s_addr['id']}/activities/comments/{c2['id']}")))
    last = updates(activities(admin, pid, s_addr["id"]))[-1]
    reverted = ok(admin.post(P(pid, f"/tasks/{s_addr['id']}/activities/{last['id']}/revert")))
    assert reverted["title"] == "Address form" and reverted["custom_fields"] == {"risk": "high"}
    gone = create_task(admin, pid, "Scratch", sprint_id=sprint2["id"])
    ok(admin.delete(P(pid, f"/tasks/{gone['id']}")))
    st["gone"] = gone

    st.update(admin=admin, types=types, sts=sts, sprint=sprint, sprint2=sprint2, board=board, table=table,
              backlog_view=backlog_view, tl=tl, tasks=[epic, s_pay, s_addr, s_recv, bug, sub])
    return st


def snapshot(srv, st):
    admin = srv.admin()
    anon = srv.client()
    pid = st["pid"]
    paths = [
        "/task-types", "/task-statuses", "/custom-fields", "/sprints",
        f"/sprints/{st['sprint']['id']}", f"/sprints/{st['sprint2']['id']}",
        f"/sprints/{st['sprint']['id']}/history",
        "/views?context=backlog", "/views?context=timeline", f"/views?context=sprint&sprint_id={st['sprint']['id']}",
        f"/views?context=sprint&sprint_id={st['sprint2']['id']}",
        f"/views/{st['board']['id']}/task-positions", f"/views/{st['backlog_view']['id']}/task-positions",
        "/tasks?page_size=200", f"/tasks?page_size=200&view_id={st['board']['id']}",
        f"/tasks?page_size=200&sprint_id={st['sprint2']['id']}", "/tasks?page_size=200&sprint_id=null",
        "/tasks/by-number/2",
    ]
    for t in st["tasks"]:
        paths += [f"/tasks/{t['id']}", f"/tasks/{t['id']}/activities", f"/tasks/{t['id']}/history",
                  f"/tasks/{t['id']}?as_of=1"]
    out = {}
    r = admin.get(P(pid, f"/tasks/{st['gone']['id']}"))
    out["gone"] = (r.status_code, r.json().get("error_code"))
    for who, c in (("admin", admin), ("anon", anon)):
        for path in paths:
            r = c.get(P(pid, path))
            out[(who, path)] = ok(r)
            if path.startswith("/tasks/") and path.count("/") == 2 and "?" not in path and "by-number" not in path:
                out[(who, path, "etag")] = r.headers.get("ETag")
    return out


def compare(before, after, what):
    for key in before:
        assert after[key] == before[key], (f"GET {key} changed after {what}:\n before={json.dumps(before[key])[:1500]}"
                                           f"\n after ={json.dumps(after[key])[:1500]}")


def test_flow_survives_rebuild_and_restart(flow):
    srv = flow["srv"]
    before = snapshot(srv, flow)
    rebuild_and_verify(srv)
    compare(before, snapshot(srv, flow), "projections rebuild")
    srv.restart()
    compare(before, snapshot(srv, flow), "a server restart")

    # the rebuilt state keeps working: numbering continues, new writes are projected
    admin = srv.admin()
    pid = flow["pid"]
    t = create_task(admin, pid, "After rebuild", sprint_id=flow["sprint2"]["id"])
    assert t["task_number"] == 8
    patch_task(admin, pid, t["id"], {"status_id": flow["sts"]["Done"]["id"]})
    assert t["id"] in {x["id"] for x in list_all(admin, pid, sprint_id=flow["sprint2"]["id"],
                                                 status_id=flow["sts"]["Done"]["id"])}
    assert [a["activity_type"] for a in activities(admin, pid, t["id"])] == ["task.created", "task.updated"]
    res = srv.cli("projections", "verify")
    assert res.returncode == 0, f"projections verify after new writes exited {res.returncode}\n{res.stderr[-2000:]}"

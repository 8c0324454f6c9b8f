"""Sprints: CRUD, seeded sprint views, completion (CONTRACT-NOTES §9), history / as_of."""

import uuid

import pytest

from conftest import describe, err, is_uuid, ok
from test_2_support import (SPRINT_FIELDS, P, create_sprint, create_task, get_task, items, list_all, patch_task,
                            statuses_of, views_of)


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def test_sprint_crud(admin, project):
    pid = project["id"]
    r = admin.post(P(pid, "/sprints"), json={"name": "Sprint 1", "start_date": "2026-03-02",
                                             "end_date": "2026-03-13", "goal": "Ship login"})
    s = ok(r, 201)
    assert set(s) >= SPRINT_FIELDS, describe(r)
    assert is_uuid(s["id"]) and s["project_id"] == pid and s["name"] == "Sprint 1"
    assert s["status"] == "planned" and s["goal"] == "Ship login"
    assert s["start_date"][:10] == "2026-03-02" and s["end_date"][:10] == "2026-03-13"
    bare = create_sprint(admin, pid, "Sprint 2")
    assert bare["status"] == "planned"
    for k in ("start_date", "end_date", "goal"):
        assert bare.get(k) is None, bare
    active = create_sprint(admin, pid, "Sprint 0", status="active")
    assert active["status"] == "active"

    err(admin.post(P(pid, "/sprints"), json={"goal": "no name"}), 400)
    err(admin.post(P(pid, "/sprints"), json={"name": ""}), 400)
    err(admin.post(P(pid, "/sprints"), json={"name": "x", "status": "paused"}), 400)
    err(admin.post(P(pid, "/sprints"), json={"name": "x", "start_date": "next monday"}), 400)

    listed = items(admin.get(P(pid, "/sprints")))
    assert {x["id"] for x in listed} == {s["id"], bare["id"], active["id"]}
    assert ok(admin.get(P(pid, f"/sprints/{s['id']}"))) == s
    err(admin.get(P(pid, f"/sprints/{uuid.uuid4()}")), 404)
    err(admin.get(P(pid, "/sprints/nope")), 400)

    # PATCH: absent keeps, null clears
    s2 = ok(admin.patch(P(pid, f"/sprints/{s['id']}"), json={"name": "Sprint 1b"}))
    assert s2["name"] == "Sprint 1b" and s2["goal"] == "Ship login" and s2["start_date"][:10] == "2026-03-02"
    s3 = ok(admin.patch(P(pid, f"/sprints/{s['id']}"), json={"goal": None, "end_date": None, "status": "active"}))
    assert s3.get("goal") is None and s3.get("end_date") is None and s3["status"] == "active"
    assert s3["start_date"][:10] == "2026-03-02"
    err(admin.patch(P(pid, f"/sprints/{s['id']}"), json={"status": "bogus"}), 400)
    assert ok(admin.get(P(pid, f"/sprints/{s['id']}"))) == s3


def test_sprint_views_seeded(admin, project):
    pid = project["id"]
    s = create_sprint(admin, pid, "Viewed")
    views = views_of(admin, pid, "sprint", s["id"])
    assert [(v["name"], v["view_type"]) for v in views] == [("Board", "board"), ("Table", "table")]
    assert [v["position"] for v in views] == [0, 1]
    for v in views:
        assert v["sprint_id"] == s["id"] and v["project_id"] == pid
        assert v["config"].get("column_by") == "status"
        sprints_filter = (v["config"].get("filters") or {}).get("sprints") or {}
        assert (sprints_filter.get("items") or {}).get(s["id"]) is True, v["config"]
    # each sprint has its own views
    other = create_sprint(admin, pid, "Other")
    assert not ({v["id"] for v in views} & {v["id"] for v in views_of(admin, pid, "sprint", other["id"])})


def test_complete_moves_unfinished_tasks(admin, project):
    pid = project["id"]
    sts = statuses_of(admin, pid)
    released = ok(admin.post(P(pid, "/task-statuses"), json={"name": "Released", "category": "done"}), 201)
    s1, s2 = create_sprint(admin, pid, "S1", status="active"), create_sprint(admin, pid, "S2")
    t = {name: create_task(admin, pid, f"{name} task", sprint_id=s1["id"], status_id=st["id"])
         for name, st in (("backlog", sts["Backlog"]), ("todo", sts["Todo"]), ("doing", sts["In Progress"]),
                          ("done", sts["Done"]), ("released", released))}
    elsewhere = create_task(admin, pid, "in S2 already", sprint_id=s2["id"])
    backlog = create_task(admin, pid, "in backlog")

    r = admin.post(P(pid, f"/sprints/{s1['id']}/complete"), json={"move_to_sprint_id": s2["id"]})
    done = ok(r)
    assert done["id"] == s1["id"] and done["status"] == "completed" and done["name"] == "S1", describe(r)
    assert ok(admin.get(P(pid, f"/sprints/{s1['id']}")))["status"] == "completed"
    for name in ("backlog", "todo", "doing"):
        assert get_task(admin, pid, t[name]["id"])["sprint_id"] == s2["id"], f"{name} task not moved"
    for name in ("done", "released"):
        assert get_task(admin, pid, t[name]["id"])["sprint_id"] == s1["id"], f"{name} task must stay"
    assert get_task(admin, pid, elsewhere["id"])["sprint_id"] == s2["id"]
    assert get_task(admin, pid, backlog["id"]).get("sprint_id") is None
    assert {x["id"] for x in list_all(admin, pid, sprint_id=s1["id"])} == {t["done"]["id"], t["released"]["id"]}

    err(admin.post(P(pid, f"/sprints/{s1['id']}/complete"), json={}), 409, "SPRINT_ALREADY_COMPLETE")
    err(admin.post(P(pid, f"/sprints/{s1['id']}/complete"), json={"move_to_sprint_id": s2["id"]}), 409,
        "SPRINT_ALREADY_COMPLETE")


def test_complete_to_backlog(admin, project):
    pid = project["id"]
    sts = statuses_of(admin, pid)
    s = create_sprint(admin, pid, "Solo")
    open_task = create_task(admin, pid, "open", sprint_id=s["id"], status_id=sts["Todo"]["id"])
    closed = create_task(admin, pid, "closed", sprint_id=s["id"], status_id=sts["Done"]["id"])
    assert ok(admin.post(P(pid, f"/sprints/{s['id']}/complete"), json={}))["status"] == "completed"
    assert get_task(admin, pid, open_task["id"]).get("sprint_id") is None
    assert get_task(admin, pid, closed["id"])["sprint_id"] == s["id"]
    assert open_task["id"] in {x["id"] for x in list_all(admin, pid, sprint_id="null")}
    # an explicit null target and no body at all also mean the backlog
    s2 = create_sprint(admin, pid, "Solo 2")
    t2 = create_task(admin, pid, "open 2", sprint_id=s2["id"])
    ok(admin.post(P(pid, f"/sprints/{s2['id']}/complete"), json={"move_to_sprint_id": None}))
    assert get_task(admin, pid, t2["id"]).get("sprint_id") is None
    s3 = create_sprint(admin, pid, "Solo 3")
    t3 = create_task(admin, pid, "open 3", sprint_id=s3["id"])
    ok(admin.post(P(pid, f"/sprints/{s3['id']}/complete")))
    assert get_task(admin, pid, t3["id"]).get("sprint_id") is None


def test_complete_errors(admin, project, make_project):
    pid = project["id"]
    s = create_sprint(admin, pid, "E")
    t = create_task(admin, pid, "stays put", sprint_id=s["id"])
    err(admin.post(P(pid, f"/sprints/{uuid.uuid4()}/complete"), json={}), 404)
    err(admin.post(P(pid, f"/sprints/{s['id']}/complete"), json={"move_to_sprint_id": str(uuid.uuid4())}), 404,
        "SPRINT_NOT_FOUND")
    # completing into itself must be refused
    err(admin.post(P(pid, f"/sprints/{s['id']}/complete"), json={"move_to_sprint_id": s["id"]}), 400, "BAD_REQUEST")
    other = make_project()
    foreign = create_sprint(admin, other["id"], "foreign")
    # another project's sprint is not a sprint of this project
    err(admin.post(P(pid, f"/sprints/{s['id']}/complete"), json={"move_to_sprint_id": foreign["id"]}), 404,
        "SPRINT_NOT_FOUND")
    assert ok(admin.get(P(pid, f"/sprints/{s['id']}")))["status"] != "completed"
    assert get_task(admin, pid, t["id"])["sprint_id"] == s["id"]


def test_delete_sprint(admin, project):
    pid = project["id"]
    s = create_sprint(admin, pid, "Doomed")
    keep = create_sprint(admin, pid, "Keep")
    t = create_task(admin, pid, "in doomed", sprint_id=s["id"])
    assert len(views_of(admin, pid, "sprint", s["id"])) == 2
    assert ok(admin.delete(P(pid, f"/sprints/{s['id']}"))) == {"message": "sprint deleted"}
    err(admin.get(P(pid, f"/sprints/{s['id']}")), 404)
    assert [x["id"] for x in items(admin.get(P(pid, "/sprints")))] == [keep["id"]]
    assert get_task(admin, pid, t["id"]).get("sprint_id") is None
    # the sprint scope of the views is gone with the sprint
    err(admin.get(P(pid, "/views"), params={"context": "sprint", "sprint_id": s["id"]}), 404, "SPRINT_NOT_FOUND")
    err(admin.delete(P(pid, f"/sprints/{s['id']}")), 404)
    assert len(views_of(admin, pid, "sprint", keep["id"])) == 2


def test_sprint_history_and_as_of(admin, project):
    pid = project["id"]
    s = create_sprint(admin, pid, "Hist v1", goal="g1")
    ok(admin.patch(P(pid, f"/sprints/{s['id']}"), json={"name": "Hist v2"}))
    ok(admin.patch(P(pid, f"/sprints/{s['id']}"), json={"goal": "g3", "status": "active"}))
    r = admin.get(P(pid, f"/sprints/{s['id']}/history"))
    hist = items(r)
    assert len(hist) >= 3, describe(r)
    versions = [h["version"] for h in hist]
    assert versions == sorted(versions) and len(set(versions)) == len(versions), versions
    for h in hist:
        assert isinstance(h["event_type"], str) and h["event_type"] and h.get("recorded_at"), h
    v1, v2 = versions[0], versions[1]
    at1 = ok(admin.get(P(pid, f"/sprints/{s['id']}"), params={"as_of": v1}))
    assert at1["name"] == "Hist v1" and at1["goal"] == "g1" and at1["status"] == "planned"
    at2 = ok(admin.get(P(pid, f"/sprints/{s['id']}"), params={"as_of": v2}))
    assert at2["name"] == "Hist v2" and at2["goal"] == "g1"
    now = ok(admin.get(P(pid, f"/sprints/{s['id']}")))
    assert now["name"] == "Hist v2" and now["goal"] == "g3" and now["status"] == "active"
    err(admin.get(P(pid, f"/sprints/{uuid.uuid4()}/history")), 404)

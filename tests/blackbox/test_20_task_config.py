"""Task configuration: task types, task statuses, custom field definitions (CONTRACT-NOTES §7)."""

import uuid

import pytest

from conftest import describe, err, is_uuid, no_content, ok
from test_2_support import (FIELD_FIELDS, STATUS_FIELDS, TYPE_FIELDS, P, add_member, create_field, fields_of, items,
                            statuses_of, types_of)


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def test_seeded_task_types(admin, project):
    pid = project["id"]
    r = admin.get(P(pid, "/task-types"))
    types = items(r)
    by = {t["name"]: t for t in types}
    assert set(by) == {"Task", "Bug", "Story", "Epic", "Subtask"}, describe(r)
    for t in types:
        assert set(t) >= TYPE_FIELDS, t
        assert is_uuid(t["id"]) and t["project_id"] == pid
    assert [t["name"] for t in types if t["is_default"]] == ["Task"]
    assert {t["name"] for t in types if t["is_system"]} == {"Epic", "Subtask"}
    expected = {"Task": ("CheckSquare", "#3b82f6"), "Bug": ("Bug", "#ef4444"), "Story": ("BookOpen", "#22c55e"),
                "Epic": ("Layers", "#a855f7"), "Subtask": ("ClipboardList", "#64748b")}
    for name, (icon, color) in expected.items():
        assert (by[name].get("icon"), by[name].get("color")) == (icon, color), by[name]
    # every project gets its own copies
    other = ok(admin.post("/projects", json={"name": "Other types"}), 201)
    assert not ({t["id"] for t in types} & {t["id"] for t in types_of(admin, other["id"]).values()})


def test_seeded_statuses(admin, project):
    pid = project["id"]
    sts = items(admin.get(P(pid, "/task-statuses")))
    assert [s["name"] for s in sts] == ["Backlog", "Todo", "In Progress", "Done"]
    assert [s["category"] for s in sts] == ["backlog", "todo", "inprogress", "done"]
    positions = [s["position"] for s in sts]
    assert positions == sorted(positions) and len(set(positions)) == 4, positions
    assert [s["name"] for s in sts if s["is_default"]] == ["Backlog"]
    for s in sts:
        assert set(s) >= STATUS_FIELDS, s
        assert s["project_id"] == pid and isinstance(s["position"], int)
    assert [s.get("color") for s in sts] == ["#64748b", "#eab308", "#3b82f6", "#22c55e"]


def test_task_type_crud(admin, project):
    pid = project["id"]
    r = admin.post(P(pid, "/task-types"), json={"name": "Spike", "icon": "Zap", "color": "#123456",
                                                "description": "timeboxed research"})
    t = ok(r, 201)
    assert set(t) >= TYPE_FIELDS, describe(r)
    assert t["name"] == "Spike" and t["icon"] == "Zap" and t["color"] == "#123456"
    assert t["description"] == "timeboxed research"
    assert t["is_default"] is False and t["is_system"] is False and t["project_id"] == pid
    tid = t["id"]
    assert types_of(admin, pid)["Spike"]["id"] == tid

    # three-state: null clears, absent keeps
    t = ok(admin.patch(P(pid, f"/task-types/{tid}"), json={"icon": None}))
    assert t.get("icon") is None and t["color"] == "#123456" and t["description"] == "timeboxed research"
    t = ok(admin.patch(P(pid, f"/task-types/{tid}"), json={"description": None, "color": "#654321"}))
    assert t.get("description") is None and t["color"] == "#654321" and t["name"] == "Spike"
    # empty name keeps the name
    t = ok(admin.patch(P(pid, f"/task-types/{tid}"), json={"name": ""}))
    assert t["name"] == "Spike"
    t = ok(admin.patch(P(pid, f"/task-types/{tid}"), json={"name": "Research", "icon": "Flask"}))
    assert t["name"] == "Research" and t["icon"] == "Flask" and t["color"] == "#654321"
    got = types_of(admin, pid)
    assert "Spike" not in got and got["Research"]["icon"] == "Flask" and got["Research"].get("description") is None

    # names are unique within the project
    err(admin.post(P(pid, "/task-types"), json={"name": "Bug"}), 409, "TASK_TYPE_NAME_RESERVED")
    err(admin.patch(P(pid, f"/task-types/{tid}"), json={"name": "Story"}), 409, "TASK_TYPE_NAME_RESERVED")
    err(admin.post(P(pid, "/task-types"), json={"name": ""}), 400, "TASK_TYPE_NAME_INVALID")
    err(admin.post(P(pid, "/task-types"), json={"icon": "X"}), 400)

    assert ok(admin.delete(P(pid, f"/task-types/{tid}"))) == {"message": "task type deleted"}
    assert "Research" not in types_of(admin, pid)
    r = admin.delete(P(pid, f"/task-types/{tid}"))
    err(r, 404)
    r = admin.patch(P(pid, f"/task-types/{uuid.uuid4()}"), json={"name": "ghost"})
    err(r, 404)


def test_system_and_default_types_protected(admin, project):
    pid = project["id"]
    types = types_of(admin, pid)
    for name in ("Epic", "Subtask"):
        sid = types[name]["id"]
        err(admin.patch(P(pid, f"/task-types/{sid}"), json={"name": name + "2"}), 403, "TASK_TYPE_IS_SYSTEM")
        err(admin.delete(P(pid, f"/task-types/{sid}")), 403, "TASK_TYPE_IS_SYSTEM")
    err(admin.delete(P(pid, f"/task-types/{types['Task']['id']}")), 409, "TASK_TYPE_IS_DEFAULT")
    after = types_of(admin, pid)
    assert {"Epic", "Subtask", "Task"} <= set(after) and after["Epic"]["is_system"] is True

    # set-default moves the flag
    r = admin.put(P(pid, f"/task-types/{types['Bug']['id']}/set-default"))
    t = ok(r)
    assert t["id"] == types["Bug"]["id"] and t["is_default"] is True, describe(r)
    after = types_of(admin, pid)
    assert [n for n, x in after.items() if x["is_default"]] == ["Bug"]
    # the old default can now be deleted, the new one cannot
    assert ok(admin.delete(P(pid, f"/task-types/{types['Task']['id']}"))) == {"message": "task type deleted"}
    err(admin.delete(P(pid, f"/task-types/{types['Bug']['id']}")), 409, "TASK_TYPE_IS_DEFAULT")
    # a task created without a type gets the new default
    task = ok(admin.post(P(pid, "/tasks"), json={"title": "typed by default"}), 201)
    assert task["task_type_id"] == types["Bug"]["id"]


def test_task_status_crud_and_reorder(admin, project):
    pid = project["id"]
    r = admin.post(P(pid, "/task-statuses"), json={"name": "Review", "color": "#ff00ff", "category": "refinement"})
    s = ok(r, 201)
    assert set(s) >= STATUS_FIELDS, describe(r)
    assert s["name"] == "Review" and s["color"] == "#ff00ff" and s["category"] == "refinement"
    assert s["is_default"] is False and s["project_id"] == pid
    for cat in ("backlog", "refinement", "ready", "todo", "inprogress", "done"):
        ok(admin.post(P(pid, "/task-statuses"), json={"name": f"S-{cat}", "category": cat}), 201)
    err(admin.post(P(pid, "/task-statuses"), json={"name": "Weird", "category": "limbo"}), 400,
        "TASK_STATUS_CATEGORY_INVALID")
    assert "Weird" not in statuses_of(admin, pid)

    s2 = ok(admin.patch(P(pid, f"/task-statuses/{s['id']}"), json={"name": "Code Review", "category": "ready"}))
    assert s2["name"] == "Code Review" and s2["category"] == "ready" and s2["color"] == "#ff00ff"
    err(admin.patch(P(pid, f"/task-statuses/{s['id']}"), json={"category": "nope"}), 400,
        "TASK_STATUS_CATEGORY_INVALID")

    # list is ordered by position
    sts = items(admin.get(P(pid, "/task-statuses")))
    positions = [x["position"] for x in sts]
    assert positions == sorted(positions), positions

    # reorder: every id, new order -> positions = index
    wanted = [x["id"] for x in reversed(sts)]
    no_content(admin.put(P(pid, "/task-statuses/positions"), json={"status_ids": wanted}))
    sts2 = items(admin.get(P(pid, "/task-statuses")))
    assert [x["id"] for x in sts2] == wanted
    assert [x["position"] for x in sts2] == list(range(len(wanted)))
    err(admin.put(P(pid, "/task-statuses/positions"), json={"status_ids": wanted[:-1]}), 400,
        "TASK_STATUS_REORDER_INVALID")
    err(admin.put(P(pid, "/task-statuses/positions"), json={"status_ids": wanted[:-1] + [str(uuid.uuid4())]}), 400,
        "TASK_STATUS_REORDER_INVALID")
    assert [x["id"] for x in items(admin.get(P(pid, "/task-statuses")))] == wanted

    # default status: protected, movable
    by = statuses_of(admin, pid)
    err(admin.delete(P(pid, f"/task-statuses/{by['Backlog']['id']}")), 409, "TASK_STATUS_IS_DEFAULT")
    r = admin.put(P(pid, f"/task-statuses/{by['Todo']['id']}/set-default"))
    assert ok(r)["is_default"] is True and ok(r)["id"] == by["Todo"]["id"], describe(r)
    assert [n for n, x in statuses_of(admin, pid).items() if x["is_default"]] == ["Todo"]
    task = ok(admin.post(P(pid, "/tasks"), json={"title": "status by default"}), 201)
    assert task["status_id"] == by["Todo"]["id"]
    assert ok(admin.delete(P(pid, f"/task-statuses/{by['Backlog']['id']}"))) == {"message": "task status deleted"}
    assert ok(admin.delete(P(pid, f"/task-statuses/{s['id']}"))) == {"message": "task status deleted"}
    left = statuses_of(admin, pid)
    assert "Backlog" not in left and "Code Review" not in left


def test_custom_fields(admin, project):
    pid = project["id"]
    r = admin.post(P(pid, "/custom-fields"), json={"field_key": "severity", "display_name": "Severity",
                                                   "field_type": "select",
                                                   "options": [{"value": "low", "color": "#00ff00"},
                                                               {"value": "high"}],
                                                   "is_required": False})
    f = ok(r, 201)
    assert set(f) >= FIELD_FIELDS, describe(r)
    assert f["field_key"] == "severity" and f["display_name"] == "Severity" and f["field_type"] == "select"
    assert [o["value"] for o in f["options"]] == ["low", "high"]
    assert f["options"][0].get("color") == "#00ff00"
    assert f["is_required"] is False and f["project_id"] == pid

    # string options are accepted and normalised to objects; options are never null
    m = create_field(admin, pid, "labels", "multi_select", options=["a", "b"])
    assert [o["value"] for o in m["options"]] == ["a", "b"], m
    for ft in ("text", "number", "date", "boolean", "url"):
        x = create_field(admin, pid, f"f_{ft}", ft)
        assert x["field_type"] == ft and x["options"] == [], x

    err(admin.post(P(pid, "/custom-fields"), json={"field_key": "bad", "display_name": "Bad",
                                                   "field_type": "color"}), 400, "CUSTOM_FIELD_TYPE_INVALID")
    err(admin.post(P(pid, "/custom-fields"), json={"field_key": "severity", "display_name": "Again",
                                                   "field_type": "text"}), 409, "CUSTOM_FIELD_KEY_TAKEN")

    got = ok(admin.get(P(pid, f"/custom-fields/{f['id']}")))
    assert got["id"] == f["id"] and got["field_key"] == "severity"
    listed = fields_of(admin, pid)
    assert set(listed) == {"severity", "labels", "f_text", "f_number", "f_date", "f_boolean", "f_url"}

    p = ok(admin.patch(P(pid, f"/custom-fields/{f['id']}"),
                       json={"display_name": "Sev", "is_required": True,
                             "options": [{"value": "low"}, {"value": "mid"}, {"value": "high"}]}))
    assert p["display_name"] == "Sev" and p["is_required"] is True and p["field_key"] == "severity"
    assert [o["value"] for o in p["options"]] == ["low", "mid", "high"]
    err(admin.patch(P(pid, f"/custom-fields/{f['id']}"), json={"field_key": "renamed"}), 400,
        "CUSTOM_FIELD_KEY_INVALID")
    assert ok(admin.get(P(pid, f"/custom-fields/{f['id']}")))["field_key"] == "severity"

    assert ok(admin.delete(P(pid, f"/custom-fields/{f['id']}"))) == {"message": "custom field deleted"}
    err(admin.get(P(pid, f"/custom-fields/{f['id']}")), 404)
    assert "severity" not in fields_of(admin, pid)
    # the key is free again
    create_field(admin, pid, "severity", "text")


def test_config_permissions(server, admin, make_project, make_user):
    private = make_project(is_public=False)
    public = make_project(is_public=True)
    viewer = make_user(prefix="cfgview")
    add_member(admin, private["id"], viewer.id, "Viewer")
    c = viewer.client
    pid = private["id"]
    assert set(types_of(c, pid)) == {"Task", "Bug", "Story", "Epic", "Subtask"}
    assert len(statuses_of(c, pid)) == 4
    assert items(c.get(P(pid, "/custom-fields"))) == []
    err(c.post(P(pid, "/task-types"), json={"name": "Nope"}), 403, "FORBIDDEN")
    err(c.post(P(pid, "/task-statuses"), json={"name": "Nope", "category": "todo"}), 403, "FORBIDDEN")
    err(c.post(P(pid, "/custom-fields"), json={"field_key": "k", "display_name": "K", "field_type": "text"}), 403,
        "FORBIDDEN")
    bug = types_of(admin, pid)["Bug"]["id"]
    err(c.patch(P(pid, f"/task-types/{bug}"), json={"name": "Nope"}), 403, "FORBIDDEN")
    err(c.delete(P(pid, f"/task-types/{bug}")), 403, "FORBIDDEN")
    assert "Bug" in types_of(admin, pid)

    anon = server.client()
    assert len(items(anon.get(P(public["id"], "/task-types")))) == 5
    assert len(items(anon.get(P(public["id"], "/task-statuses")))) == 4
    ok(anon.get(P(public["id"], "/custom-fields")))
    err(anon.post(P(public["id"], "/task-types"), json={"name": "Anon"}), 401, "AUTH_MISSING_TOKEN")
    for path in ("/task-types", "/task-statuses", "/custom-fields"):
        err(anon.get(P(pid, path)), 401, "AUTH_MISSING_TOKEN")

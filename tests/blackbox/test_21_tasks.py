"""Tasks: create / get / by-number / patch (three-state) / delete, validation, numbering,
optimistic concurrency (CONTRACT-NOTES §8)."""

import uuid

import pytest

from conftest import describe, err, is_uuid, ok, unique
from test_2_support import (DATE_RE, TASK_FIELDS, P, activities, add_member, blocks, clone, create_field,
                            create_task, get_task, list_all, member_id, parallel, patch_task, statuses_of, types_of,
                            updates)


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def test_create_minimal_uses_defaults(admin, project):
    pid = project["id"]
    types, sts = types_of(admin, pid), statuses_of(admin, pid)
    r = admin.post(P(pid, "/tasks"), json={"title": "First task"})
    t = ok(r, 201)
    assert set(t) >= TASK_FIELDS, describe(r)
    assert is_uuid(t["id"]) and t["project_id"] == pid
    assert t["task_number"] == 1 and t["title"] == "First task"
    assert t["task_type_id"] == types["Task"]["id"], "absent type -> the project's default type"
    assert t["status_id"] == sts["Backlog"]["id"], "absent status -> the project's default status"
    assert t["assignee_ids"] == [] and t["custom_fields"] == {} and t["tags"] == []
    assert isinstance(t["importance"], int) and isinstance(t["version"], int)
    for k in ("sprint_id", "parent_task_id", "description", "story_points", "reporter_id", "start_date",
              "due_date"):
        assert t.get(k) is None, f"{k} should be absent/null on a minimal task: {t}"
    t2 = create_task(admin, pid, "Second")
    assert t2["task_number"] == 2
    # numbering is per project
    other = ok(admin.post("/projects", json={"name": "Other numbering"}), 201)
    assert create_task(admin, other["id"], "elsewhere")["task_number"] == 1
    assert create_task(admin, pid, "Third")["task_number"] == 3


def test_create_full_and_get(admin, admin_id, project, make_user):
    pid = project["id"]
    u = make_user(prefix="assignee")
    add_member(admin, pid, u.id, "Editor")
    m_admin, m_u = member_id(admin, pid, admin_id), member_id(admin, pid, u.id)
    types, sts = types_of(admin, pid), statuses_of(admin, pid)
    create_field(admin, pid, "severity", "select", options=[{"value": "low"}, {"value": "high"}])
    create_field(admin, pid, "estimate", "number")
    create_field(admin, pid, "done_flag", "boolean")
    desc = blocks("Line one", "Line two")
    body = {
        "title": "Full task", "task_type_id": types["Bug"]["id"], "status_id": sts["Todo"]["id"],
        "description": desc, "importance": 3, "story_points": 5, "assignee_ids": [m_admin, m_u],
        "reporter_id": m_u, "custom_fields": {"severity": "high", "estimate": 2.5, "done_flag": False},
        "start_date": "2026-05-01", "due_date": "2026-05-15", "tags": ["backend", "urgent"],
    }
    r = admin.post(P(pid, "/tasks"), json=body)
    t = ok(r, 201)
    assert t["task_type_id"] == types["Bug"]["id"] and t["status_id"] == sts["Todo"]["id"]
    assert t["description"] == desc, "description must round-trip as the same block array"
    assert t["importance"] == 3 and t["story_points"] == 5
    assert sorted(t["assignee_ids"]) == sorted([m_admin, m_u]) and t["reporter_id"] == m_u
    assert t["custom_fields"] == {"severity": "high", "estimate": 2.5, "done_flag": False}
    assert DATE_RE.match(t["start_date"]) and t["start_date"][:10] == "2026-05-01"
    assert t["due_date"][:10] == "2026-05-15"
    assert t["tags"] == ["backend", "urgent"]

    r = admin.get(P(pid, f"/tasks/{t['id']}"))
    got = ok(r)
    assert got == t, "GET must return what POST returned"
    assert r.headers.get("ETag") == f'"{t["version"]}"', f"ETag header {r.headers.get('ETag')!r}" + describe(r)

    by = ok(admin.get(P(pid, f"/tasks/by-number/{t['task_number']}")))
    assert by["id"] == t["id"]
    err(admin.get(P(pid, "/tasks/by-number/9999")), 404, "TASK_NOT_FOUND")
    err(admin.get(P(pid, f"/tasks/{uuid.uuid4()}")), 404, "TASK_NOT_FOUND")
    err(admin.get(P(pid, "/tasks/not-a-uuid")), 400)
    # a task id from another project is not found here
    other = ok(admin.post("/projects", json={"name": "Other tasks"}), 201)
    foreign = create_task(admin, other["id"], "foreign")
    err(admin.get(P(pid, f"/tasks/{foreign['id']}")), 404, "TASK_NOT_FOUND")


def test_post_answers_what_get_serves(admin, project):
    """A create's response is built from its own events, not read back: it must be what GET serves, for the
    fused path (no parent, no sprint) and the transactional one, with JSON that storage normalises."""
    pid = project["id"]
    sprint = ok(admin.post(P(pid, "/sprints"), json={"name": unique("Sprint ")}), 201)
    parent = create_task(admin, pid, "parent")
    odd = blocks("ünï 🎉 \"quoted\" \\ </script>", "second")
    odd[0]["attrs"] = {"z": 1, "a": 1e2, "m": 1.50, "huge": 123456789012345678901234, "neg": -0.0,
                       "nested": {"b": [1, {"y": None, "x": True}], "a": ""}}
    bodies = ({"title": "bare"}, {"title": "odd json", "description": odd, "tags": ["b", "a", "b"]},
              {"title": "in a sprint", "sprint_id": sprint["id"]}, {"title": "child", "parent_task_id": parent["id"]},
              {"title": "  spaced  ", "importance": 0, "story_points": 0})
    for body in bodies:
        t = ok(admin.post(P(pid, "/tasks"), json=body), 201)
        assert ok(admin.get(P(pid, f"/tasks/{t['id']}"))) == t, body


def test_patch_three_state(admin, admin_id, project, make_user):
    pid = project["id"]
    u = make_user(prefix="p3")
    add_member(admin, pid, u.id, "Editor")
    m_admin, m_u = member_id(admin, pid, admin_id), member_id(admin, pid, u.id)
    sts = statuses_of(admin, pid)
    create_field(admin, pid, "a", "text")
    create_field(admin, pid, "b", "number")
    sprint = ok(admin.post(P(pid, "/sprints"), json={"name": "S"}), 201)
    t = create_task(admin, pid, "Three state", description=blocks("keep me"), story_points=3,
                    due_date="2026-06-01", start_date="2026-05-20", tags=["x"], assignee_ids=[m_admin],
                    reporter_id=m_admin, importance=2, sprint_id=sprint["id"], custom_fields={"a": "one"})
    tid, v0 = t["id"], t["version"]

    # absent keeps
    t1 = patch_task(admin, pid, tid, {"title": "Renamed"})
    assert t1["title"] == "Renamed" and t1["version"] == v0 + 1
    for k in ("description", "story_points", "due_date", "start_date", "tags", "assignee_ids", "reporter_id",
              "importance", "sprint_id", "custom_fields", "status_id", "task_type_id", "task_number"):
        assert t1.get(k) == t.get(k), f"{k} changed by a PATCH that did not name it: {t.get(k)!r} -> {t1.get(k)!r}"

    # null clears
    t2 = patch_task(admin, pid, tid, {"story_points": None, "due_date": None, "description": None,
                                      "reporter_id": None, "sprint_id": None})
    for k in ("story_points", "due_date", "description", "reporter_id", "sprint_id"):
        assert t2.get(k) is None, f"{k} not cleared by null: {t2}"
    assert t2["start_date"][:10] == "2026-05-20" and t2["tags"] == ["x"]

    # value sets; arrays are replaced
    t3 = patch_task(admin, pid, tid, {"assignee_ids": [m_u], "tags": ["y", "z"], "status_id": sts["Done"]["id"],
                                      "importance": 7, "story_points": 8})
    assert t3["assignee_ids"] == [m_u] and t3["tags"] == ["y", "z"] and t3["status_id"] == sts["Done"]["id"]
    assert t3["importance"] == 7 and t3["story_points"] == 8
    t4 = patch_task(admin, pid, tid, {"assignee_ids": []})
    assert t4["assignee_ids"] == []
    t4 = patch_task(admin, pid, tid, {"assignee_ids": [m_admin, m_u]})
    t4 = patch_task(admin, pid, tid, {"assignee_ids": None})
    assert t4["assignee_ids"] == []

    # custom fields are merged key by key; null removes a key
    t5 = patch_task(admin, pid, tid, {"custom_fields": {"b": 4}})
    assert t5["custom_fields"] == {"a": "one", "b": 4}
    t6 = patch_task(admin, pid, tid, {"custom_fields": {"a": None, "b": 5}})
    assert t6["custom_fields"] == {"b": 5}
    assert get_task(admin, pid, tid) == t6
    # empty title keeps the title
    assert ok(admin.patch(P(pid, f"/tasks/{tid}"), json={"title": ""}))["title"] == "Renamed"


def test_validation_errors(admin, project, make_project):
    pid = project["id"]
    types = types_of(admin, pid)
    err(admin.post(P(pid, "/tasks"), json={"title": ""}), 400, "TASK_TITLE_INVALID")
    err(admin.post(P(pid, "/tasks"), json={"title": "   "}), 400, "TASK_TITLE_INVALID")
    err(admin.post(P(pid, "/tasks"), json={}), 400)
    for bad in ("plain text", {"type": "paragraph"}, [1, 2], ["x"], 42):
        err(admin.post(P(pid, "/tasks"), json={"title": "bad desc", "description": bad}), 400, "BAD_REQUEST")
    t = create_task(admin, pid, "desc target")
    err(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"description": "not blocks"}), 400, "BAD_REQUEST")
    err(admin.post(P(pid, "/tasks"), json={"title": "x", "start_date": "01/05/2026"}), 400)
    err(admin.post(P(pid, "/tasks"), json={"title": "x", "assignee_ids": ["not-a-uuid"]}), 400)
    # references that do not belong to this project
    other = make_project()
    other_type = types_of(admin, other["id"])["Bug"]["id"]
    err(admin.post(P(pid, "/tasks"), json={"title": "x", "task_type_id": other_type}), 404, "TASK_TYPE_NOT_FOUND")
    err(admin.post(P(pid, "/tasks"), json={"title": "x", "status_id": str(uuid.uuid4())}), 404,
        "TASK_STATUS_NOT_FOUND")
    err(admin.post(P(pid, "/tasks"), json={"title": "x", "assignee_ids": [str(uuid.uuid4())]}), 404,
        "PROJECT_MEMBER_NOT_FOUND")
    # nothing above was created
    assert [x["title"] for x in list_all(admin, pid)] == ["desc target"]


def test_custom_field_value_validation(admin, project):
    pid = project["id"]
    create_field(admin, pid, "num", "number")
    create_field(admin, pid, "sel", "select", options=[{"value": "a"}, {"value": "b"}])
    create_field(admin, pid, "multi", "multi_select", options=["x", "y"])
    create_field(admin, pid, "flag", "boolean")
    create_field(admin, pid, "when", "date")
    t = create_task(admin, pid, "cf", custom_fields={"num": 1, "sel": "a", "multi": ["x", "y"], "flag": True,
                                                      "when": "2026-01-02"})
    assert t["custom_fields"] == {"num": 1, "sel": "a", "multi": ["x", "y"], "flag": True, "when": "2026-01-02"}
    for bad in ({"num": "abc"}, {"sel": "c"}, {"multi": ["x", "zzz"]}, {"flag": "yes"}, {"sel": 3}):
        err(admin.post(P(pid, "/tasks"), json={"title": "bad cf", "custom_fields": bad}), 400, "BAD_REQUEST")
        err(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"custom_fields": bad}), 400, "BAD_REQUEST")
    assert get_task(admin, pid, t["id"])["custom_fields"]["sel"] == "a"


def test_parent_rules(admin, project):
    pid = project["id"]
    types = types_of(admin, pid)
    epic = create_task(admin, pid, "Epic", task_type_id=types["Epic"]["id"])
    story = create_task(admin, pid, "Story", task_type_id=types["Story"]["id"], parent_task_id=epic["id"])
    assert story["parent_task_id"] == epic["id"]
    sub = create_task(admin, pid, "Sub", task_type_id=types["Subtask"]["id"], parent_task_id=story["id"])
    assert sub["parent_task_id"] == story["id"]

    other_epic = create_task(admin, pid, "Other epic", task_type_id=types["Epic"]["id"])
    err(admin.post(P(pid, "/tasks"), json={"title": "Child epic", "task_type_id": types["Epic"]["id"],
                                           "parent_task_id": other_epic["id"]}), 400, "TASK_EPIC_CANNOT_HAVE_PARENT")
    err(admin.patch(P(pid, f"/tasks/{epic['id']}"), json={"parent_task_id": other_epic["id"]}), 400,
        "TASK_EPIC_CANNOT_HAVE_PARENT")
    # turning a child into an Epic while it has a parent
    err(admin.patch(P(pid, f"/tasks/{story['id']}"), json={"task_type_id": types["Epic"]["id"]}), 400,
        "TASK_EPIC_CANNOT_HAVE_PARENT")

    err(admin.patch(P(pid, f"/tasks/{story['id']}"), json={"parent_task_id": story["id"]}), 400,
        "TASK_CANNOT_BE_OWN_PARENT")
    # direct cycle: A parent of B, then A's parent := B
    a = create_task(admin, pid, "A")
    b = create_task(admin, pid, "B", parent_task_id=a["id"])
    err(admin.patch(P(pid, f"/tasks/{a['id']}"), json={"parent_task_id": b["id"]}), 400,
        "TASK_PARENT_CYCLE_DETECTED")
    # longer cycle: story -> sub -> leaf, then story's parent := leaf
    leaf = create_task(admin, pid, "Leaf", parent_task_id=sub["id"])
    err(admin.patch(P(pid, f"/tasks/{story['id']}"), json={"parent_task_id": leaf["id"]}), 400,
        "TASK_PARENT_CYCLE_DETECTED")
    assert get_task(admin, pid, a["id"]).get("parent_task_id") is None
    assert get_task(admin, pid, story["id"])["parent_task_id"] == epic["id"]
    # unknown parent
    err(admin.post(P(pid, "/tasks"), json={"title": "orphan", "parent_task_id": str(uuid.uuid4())}), 404,
        "TASK_NOT_FOUND")
    # re-parenting to a valid parent and clearing work
    assert patch_task(admin, pid, b["id"], {"parent_task_id": story["id"]})["parent_task_id"] == story["id"]
    assert patch_task(admin, pid, b["id"], {"parent_task_id": None}).get("parent_task_id") is None


def test_delete(admin, project):
    pid = project["id"]
    t = create_task(admin, pid, "Doomed")
    keep = create_task(admin, pid, "Keeper")
    assert ok(admin.delete(P(pid, f"/tasks/{t['id']}"))) == {"message": "task deleted"}
    err(admin.get(P(pid, f"/tasks/{t['id']}")), 404, "TASK_NOT_FOUND")
    err(admin.get(P(pid, f"/tasks/by-number/{t['task_number']}")), 404, "TASK_NOT_FOUND")
    err(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"title": "zombie"}), 404, "TASK_NOT_FOUND")
    err(admin.delete(P(pid, f"/tasks/{t['id']}")), 404, "TASK_NOT_FOUND")
    assert [x["id"] for x in list_all(admin, pid)] == [keep["id"]]
    # numbers are never reused
    assert create_task(admin, pid, "After delete")["task_number"] == 3


def test_if_match(admin, project):
    pid = project["id"]
    t = create_task(admin, pid, "Versioned")
    v = t["version"]
    r = admin.patch(P(pid, f"/tasks/{t['id']}"), json={"title": "v+1"}, headers={"If-Match": f'"{v}"'})
    t1 = ok(r)
    assert t1["version"] == v + 1
    assert r.headers.get("ETag") in (None, f'"{v + 1}"'), describe(r)
    err(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"title": "stale"}, headers={"If-Match": f'"{v}"'}), 409,
        "CONFLICT")
    err(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"title": "stale"}, headers={"If-Match": str(v)}), 409,
        "CONFLICT")
    assert get_task(admin, pid, t["id"])["title"] == "v+1"
    t2 = ok(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"title": "bare"}, headers={"If-Match": str(v + 1)}))
    assert t2["title"] == "bare" and t2["version"] == v + 2
    r = admin.get(P(pid, f"/tasks/{t['id']}"))
    assert r.headers.get("ETag") == f'"{v + 2}"', describe(r)


def test_concurrent_creation_numbers_are_dense(admin, project):
    pid = project["id"]
    create_task(admin, pid, "pre 1")
    create_task(admin, pid, "pre 2")
    clients = [clone(admin) for _ in range(20)]

    def make(i):
        return lambda: clients[i].post(P(pid, "/tasks"), json={"title": f"concurrent {i}"})

    resps = parallel([make(i) for i in range(20)])
    nums = sorted(ok(r, 201)["task_number"] for r in resps)
    assert nums == list(range(3, 23)), f"task numbers under concurrency: {nums}"
    listed = sorted(t["task_number"] for t in list_all(admin, pid, page_size=200))
    assert listed == list(range(1, 23))
    assert create_task(admin, pid, "post")["task_number"] == 23


def test_concurrent_patches_of_different_fields_all_apply(admin, project):
    pid = project["id"]
    for i in range(10):
        create_field(admin, pid, f"cf{i}", "text")
    t = create_task(admin, pid, "hot task")
    v0 = t["version"]
    bodies = [{"custom_fields": {f"cf{i}": f"value {i}"}} for i in range(10)]
    bodies += [{"title": "hot task renamed"}, {"importance": 9}, {"story_points": 13},
               {"start_date": "2026-07-01"}, {"tags": ["t1", "t2"]}]
    clients = [clone(admin) for _ in bodies]

    def send(i):
        return lambda: clients[i].patch(P(pid, f"/tasks/{t['id']}"), json=bodies[i])

    for r in parallel([send(i) for i in range(len(bodies))]):
        ok(r)
    final = get_task(admin, pid, t["id"])
    assert final["custom_fields"] == {f"cf{i}": f"value {i}" for i in range(10)}, final["custom_fields"]
    assert final["title"] == "hot task renamed" and final["importance"] == 9 and final["story_points"] == 13
    assert final["start_date"][:10] == "2026-07-01" and final["tags"] == ["t1", "t2"]
    assert final["version"] == v0 + len(bodies), f"version {final['version']} after {len(bodies)} patches from {v0}"
    assert len(updates(activities(admin, pid, t["id"]))) == len(bodies)


def test_deleting_a_custom_field_does_not_block_task_updates(admin, project):
    """A task holding a value for a field that is later deleted must stay editable."""
    pid = project["id"]
    f = create_field(admin, pid, "legacy", "text")
    keep = create_field(admin, pid, "keep", "number")
    t = create_task(admin, pid, "has legacy value", custom_fields={"legacy": "old", "keep": 1})
    assert ok(admin.delete(P(pid, f"/custom-fields/{f['id']}"))) == {"message": "custom field deleted"}
    t1 = patch_task(admin, pid, t["id"], {"title": "still editable"})
    assert t1["title"] == "still editable" and t1["custom_fields"].get("keep") == 1
    t2 = patch_task(admin, pid, t["id"], {"custom_fields": {"keep": 2}})
    assert t2["custom_fields"].get("keep") == 2
    # the deleted key can still be removed explicitly
    t3 = patch_task(admin, pid, t["id"], {"custom_fields": {"legacy": None}})
    assert "legacy" not in t3["custom_fields"]

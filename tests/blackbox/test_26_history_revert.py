"""Beyond Paca: activity diff, server-side revert, task history and as_of reads."""

import time
import uuid

import pytest

from conftest import describe, err, ok
from test_2_support import (P, activities, add_member, block_texts, blocks, changes_by_field, create_field,
                            create_task, get_task, member_id, patch_task, statuses_of, updates)


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def revert(c, pid, tid, aid):
    return c.post(P(pid, f"/tasks/{tid}/activities/{aid}/revert"))


def test_description_diff(admin, project):
    pid = project["id"]
    t = create_task(admin, pid, "Diffed", description=blocks("Line one", "Line two", "Line three"))
    patch_task(admin, pid, t["id"], {"description": blocks("Line one", "Line 2 changed", "Line three"),
                                     "title": "Diffed!"})
    act = updates(activities(admin, pid, t["id"]))[-1]
    r = admin.get(P(pid, f"/tasks/{t['id']}/activities/{act['id']}/diff"))
    d = ok(r)
    assert d["activity_id"] == act["id"] and d["event_type"] == "task.updated", describe(r)
    by = {c["field"]: c for c in d["changes"]}
    assert set(by) == {"description", "title"}, d
    assert (by["title"]["old"], by["title"]["new"]) == ("Diffed", "Diffed!")
    assert block_texts(by["description"]["old"]) == ["Line one", "Line two", "Line three"]
    assert block_texts(by["description"]["new"]) == ["Line one", "Line 2 changed", "Line three"]
    diff = by["description"].get("diff")
    assert isinstance(diff, str) and diff, f"description change needs a unified diff string: {by['description']}"
    lines = diff.splitlines()
    assert any(l.startswith("-") and not l.startswith("---") and "Line two" in l for l in lines), diff
    assert any(l.startswith("+") and not l.startswith("+++") and "Line 2 changed" in l for l in lines), diff
    assert not any(l[:1] in "+-" and l.rstrip().endswith("Line one") for l in lines if l), diff
    assert by["title"].get("diff") is None or isinstance(by["title"]["diff"], str)

    created = activities(admin, pid, t["id"])[0]
    # the diff of a task.created entry: every field it was created with, from nothing
    r = admin.get(P(pid, f"/tasks/{t['id']}/activities/{created['id']}/diff"))
    d = ok(r)
    assert d["activity_id"] == created["id"] and d["event_type"] == "task.created", describe(r)
    by = {c["field"]: c for c in d["changes"]}
    assert by["title"]["new"] == "Diffed" and all(c["old"] is None for c in d["changes"]), describe(r)
    err(admin.get(P(pid, f"/tasks/{t['id']}/activities/{uuid.uuid4()}/diff")), 404)


def test_revert_restores_every_named_field(admin, admin_id, project, make_user):
    pid = project["id"]
    sts = statuses_of(admin, pid)
    u = make_user(prefix="rev")
    add_member(admin, pid, u.id, "Editor")
    m_a, m_u = member_id(admin, pid, admin_id), member_id(admin, pid, u.id)
    create_field(admin, pid, "sev", "select", options=["low", "high"])
    d1 = blocks("original text")
    t = create_task(admin, pid, "Alpha", status_id=sts["Todo"]["id"], importance=1, tags=["x"],
                    assignee_ids=[m_a], description=d1, custom_fields={"sev": "low"}, due_date="2026-09-01")
    patch_task(admin, pid, t["id"], {"title": "Beta", "status_id": sts["In Progress"]["id"], "tags": ["y"],
                                     "assignee_ids": [m_u], "description": blocks("rewritten"),
                                     "custom_fields": {"sev": "high"}, "due_date": None, "importance": 3})
    act = updates(activities(admin, pid, t["id"]))[-1]
    r = revert(admin, pid, t["id"], act["id"])
    back = ok(r)
    assert back["id"] == t["id"], describe(r)
    assert back["title"] == "Alpha" and back["status_id"] == sts["Todo"]["id"] and back["importance"] == 1
    assert back["tags"] == ["x"] and back["assignee_ids"] == [m_a]
    assert block_texts(back["description"]) == ["original text"]
    assert back["custom_fields"] == {"sev": "low"}
    assert back["due_date"][:10] == "2026-09-01"
    assert get_task(admin, pid, t["id"]) == back

    ups = updates(activities(admin, pid, t["id"]))
    assert len(ups) == 2, "a revert is recorded as a new task.updated entry"
    ch = changes_by_field(ups[-1])
    assert (ch["title"]["old"], ch["title"]["new"]) == ("Beta", "Alpha")
    assert (ch["status"]["old"], ch["status"]["new"]) == ("In Progress", "Todo")
    assert {"tags", "assignee", "description", "custom_fields", "due_date", "importance"} <= set(ch)


def test_revert_older_entry_only_touches_its_fields(admin, project):
    pid = project["id"]
    create_field(admin, pid, "k", "text")
    t = create_task(admin, pid, "A", importance=1)
    patch_task(admin, pid, t["id"], {"title": "C"})                       # entry 1: title A->C
    patch_task(admin, pid, t["id"], {"title": "D", "importance": 5})      # entry 2
    patch_task(admin, pid, t["id"], {"custom_fields": {"k": "v"}})        # entry 3: k added
    patch_task(admin, pid, t["id"], {"story_points": 8})                  # entry 4
    ups = updates(activities(admin, pid, t["id"]))
    back = ok(revert(admin, pid, t["id"], ups[0]["id"]))
    assert back["title"] == "A" and back["importance"] == 5 and back["story_points"] == 8
    assert back["custom_fields"] == {"k": "v"}
    # reverting the custom field entry removes the key it added
    back = ok(revert(admin, pid, t["id"], ups[2]["id"]))
    assert back["custom_fields"] == {} and back["title"] == "A" and back["story_points"] == 8
    # reverting entry 4 clears story_points again
    back = ok(revert(admin, pid, t["id"], ups[3]["id"]))
    assert back.get("story_points") is None and back["title"] == "A"
    assert len(updates(activities(admin, pid, t["id"]))) == 4 + 3


def test_revert_errors(admin, project, make_user):
    pid = project["id"]
    t = create_task(admin, pid, "R")
    created = activities(admin, pid, t["id"])[0]
    # only task.updated entries can be reverted
    err(revert(admin, pid, t["id"], created["id"]), 400, "BAD_REQUEST")
    com = ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("c")}), 201)
    err(revert(admin, pid, t["id"], com["id"]), 400, "BAD_REQUEST")
    err(revert(admin, pid, t["id"], str(uuid.uuid4())), 404)
    # revert needs write permission
    patch_task(admin, pid, t["id"], {"title": "R2"})
    act = updates(activities(admin, pid, t["id"]))[-1]
    viewer = make_user(prefix="revview")
    add_member(admin, pid, viewer.id, "Viewer")
    err(revert(viewer.client, pid, t["id"], act["id"]), 403, "FORBIDDEN")
    assert get_task(admin, pid, t["id"])["title"] == "R2"


def test_history_and_as_of(admin, project):
    pid = project["id"]
    t = create_task(admin, pid, "v-one", importance=1)
    time.sleep(0.05)
    patch_task(admin, pid, t["id"], {"title": "v-two"})
    time.sleep(0.05)
    patch_task(admin, pid, t["id"], {"title": "v-three", "importance": 3})
    now = get_task(admin, pid, t["id"])
    r = admin.get(P(pid, f"/tasks/{t['id']}/history"))
    hist = ok(r)["items"]
    assert len(hist) == 3, describe(r)
    versions = [h["version"] for h in hist]
    assert versions == list(range(versions[0], versions[0] + 3)) and versions[-1] == now["version"], versions
    for h in hist:
        assert isinstance(h["event_type"], str) and h["event_type"] and isinstance(h["recorded_at"], str)
    stamps = [h["recorded_at"] for h in hist]
    assert stamps == sorted(stamps)
    last_changes = hist[-1].get("changes")
    assert last_changes and {c["field"] for c in last_changes} == {"title", "importance"}, hist[-1]

    for h, title, imp in zip(hist, ["v-one", "v-two", "v-three"], [1, 1, 3]):
        old = get_task(admin, pid, t["id"], as_of=h["version"])
        assert old["title"] == title and old["importance"] == imp and old["version"] == h["version"], old
        at = get_task(admin, pid, t["id"], as_of=h["recorded_at"])
        assert at["title"] == title and at["version"] == h["version"], f"as_of={h['recorded_at']} -> {at}"
    assert get_task(admin, pid, t["id"], as_of="2100-01-01T00:00:00Z")["title"] == "v-three"
    err(admin.get(P(pid, f"/tasks/{t['id']}"), params={"as_of": "yesterday-ish"}), 400)
    err(admin.get(P(pid, f"/tasks/{uuid.uuid4()}/history")), 404)
    # a deleted task's history is still there, and ends with the deletion
    ok(admin.delete(P(pid, f"/tasks/{t['id']}")))
    r = admin.get(P(pid, f"/tasks/{t['id']}/history"))
    hist = ok(r)["items"]
    assert len(hist) == 4 and hist[-1]["event_type"] == "task.deleted", describe(r)

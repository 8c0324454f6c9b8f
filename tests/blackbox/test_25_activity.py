"""Task activity feed and comments (seed page 16)."""

import uuid

import pytest

from conftest import describe, err, is_uuid, no_content, ok
from test_2_support import (ACTIVITY_FIELDS, P, activities, add_member, blocks, changes_by_field, create_field,
                            create_sprint, create_task, member_id, patch_task, statuses_of, types_of, updates)


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


@pytest.fixture
def editor(admin, project, make_user):
    u = make_user(prefix="commenter")
    add_member(admin, project["id"], u.id, "Editor")
    return u


def last_update(admin, pid, tid, count_before):
    acts = activities(admin, pid, tid)
    ups = updates(acts)
    assert len(ups) == count_before + 1, f"expected exactly one new task.updated entry, got {ups[count_before:]}"
    return changes_by_field(ups[-1])


def test_created_entry_and_actor(admin, admin_id, project):
    pid = project["id"]
    me = admin.me()
    t = create_task(admin, pid, "Login screen")
    r = admin.get(P(pid, f"/tasks/{t['id']}/activities"))
    acts = ok(r)["items"]
    assert len(acts) == 1, describe(r)
    a = acts[0]
    assert set(a) >= ACTIVITY_FIELDS, a
    assert is_uuid(a["id"]) and a["task_id"] == t["id"]
    assert a["activity_type"] == "task.created" and a["content"] == {"title": "Login screen"}
    assert a["actor_id"] == member_id(admin, pid, admin_id), "actor_id is the project MEMBER id"
    assert a["actor_username"] == "admin" and a["actor_name"] == me["full_name"]


def test_every_tracked_field_is_recorded(admin, admin_id, project, editor):
    pid = project["id"]
    sts, types = statuses_of(admin, pid), types_of(admin, pid)
    m_a, m_e = member_id(admin, pid, admin_id), member_id(admin, pid, editor.id)
    sprint = create_sprint(admin, pid, "Recorded")
    parent = create_task(admin, pid, "Parent")
    create_field(admin, pid, "sev", "text")
    t = create_task(admin, pid, "Old title", importance=1)
    tid = t["id"]
    n = 0

    def step(body):
        nonlocal n
        patch_task(admin, pid, tid, body)
        ch = last_update(admin, pid, tid, n)
        n += 1
        return ch

    ch = step({"title": "New title"})
    assert ch == {"title": {"field": "title", "old": "Old title", "new": "New title"}}
    ch = step({"status_id": sts["In Progress"]["id"]})
    assert (ch["status"]["old"], ch["status"]["new"]) == ("Backlog", "In Progress")
    ch = step({"task_type_id": types["Bug"]["id"]})
    assert (ch["task_type"]["old"], ch["task_type"]["new"]) == ("Task", "Bug")
    ch = step({"importance": 4})
    assert (ch["importance"]["old"], ch["importance"]["new"]) == (1, 4)
    ch = step({"story_points": 5})
    assert ch["story_points"].get("old") is None and ch["story_points"]["new"] == 5
    ch = step({"assignee_ids": [m_e]})
    assert (ch["assignee"]["old"], ch["assignee"]["new"]) == ("", m_e)
    ch = step({"assignee_ids": [m_e, m_a]})
    assert ch["assignee"]["old"] == m_e
    assert set(ch["assignee"]["new"].split(",")) == {m_e, m_a}, ch["assignee"]
    ch = step({"assignee_ids": []})
    assert set(ch["assignee"]["old"].split(",")) == {m_e, m_a} and ch["assignee"]["new"] == ""
    ch = step({"reporter_id": m_e})
    assert (ch["reporter"]["old"], ch["reporter"]["new"]) == ("", m_e)
    ch = step({"sprint_id": sprint["id"]})
    assert (ch["sprint"]["old"], ch["sprint"]["new"]) == ("", sprint["id"])
    ch = step({"parent_task_id": parent["id"]})
    assert (ch["parent_task"]["old"], ch["parent_task"]["new"]) == ("", parent["id"])
    ch = step({"start_date": "2026-04-01"})
    assert (ch["start_date"]["old"], ch["start_date"]["new"]) == ("", "2026-04-01")
    ch = step({"due_date": "2026-04-30"})
    assert (ch["due_date"]["old"], ch["due_date"]["new"]) == ("", "2026-04-30")
    ch = step({"due_date": None})
    assert (ch["due_date"]["old"], ch["due_date"]["new"]) == ("2026-04-30", "")
    desc = blocks("hello")
    ch = step({"description": desc})
    assert ch["description"].get("old") in (None, []) and ch["description"]["new"] == desc
    ch = step({"tags": ["a", "b"]})
    assert ch["tags"].get("old") in (None, []) and ch["tags"]["new"] == ["a", "b"]
    ch = step({"custom_fields": {"sev": "high"}})
    assert "custom_fields" in ch
    ch = step({"sprint_id": None, "parent_task_id": None, "reporter_id": None})
    assert (ch["sprint"]["old"], ch["sprint"]["new"]) == (sprint["id"], "")
    assert (ch["parent_task"]["old"], ch["parent_task"]["new"]) == (parent["id"], "")
    assert (ch["reporter"]["old"], ch["reporter"]["new"]) == (m_e, "")
    # several fields in one PATCH -> one entry with several changes
    ch = step({"title": "Final", "importance": 2, "status_id": sts["Done"]["id"]})
    assert set(ch) == {"title", "importance", "status"}
    assert (ch["status"]["old"], ch["status"]["new"]) == ("In Progress", "Done")

    acts = activities(admin, pid, tid)
    assert acts[0]["activity_type"] == "task.created"
    stamps = [a["created_at"] for a in acts]
    assert stamps == sorted(stamps), "activities must be oldest first"
    assert all(a["actor_id"] == m_a for a in acts)


def test_noop_patch_records_nothing(admin, project):
    pid = project["id"]
    sts = statuses_of(admin, pid)
    t = create_task(admin, pid, "Same", importance=2, tags=["x"], status_id=sts["Todo"]["id"])
    before = activities(admin, pid, t["id"])
    same = patch_task(admin, pid, t["id"], {"title": "Same", "importance": 2, "tags": ["x"],
                                             "status_id": sts["Todo"]["id"]})
    patch_task(admin, pid, t["id"], {})
    assert activities(admin, pid, t["id"]) == before
    assert same["version"] in (t["version"], t["version"] + 1)


def test_deleted_entry(admin, project):
    pid = project["id"]
    t = create_task(admin, pid, "Will go")
    patch_task(admin, pid, t["id"], {"title": "Will go soon"})
    ok(admin.delete(P(pid, f"/tasks/{t['id']}")))
    acts = activities(admin, pid, t["id"])
    assert [a["activity_type"] for a in acts] == ["task.created", "task.updated", "task.deleted"]
    assert acts[-1]["content"] in ({}, None)


def test_comments(admin, admin_id, project, editor):
    pid = project["id"]
    t = create_task(admin, pid, "Discuss")
    base = f"/tasks/{t['id']}/activities/comments"
    body = blocks("Looks good. Ready to review.")
    r = admin.post(P(pid, base), json={"content": body})
    c = ok(r, 201)
    assert set(c) >= ACTIVITY_FIELDS, describe(r)
    assert c["activity_type"] == "comment" and c["content"] == body and c["task_id"] == t["id"]
    assert c["actor_id"] == member_id(admin, pid, admin_id) and c["actor_username"] == "admin"
    legacy = ok(admin.post(P(pid, base), json={"content": {"text": "legacy form"}}), 201)
    assert legacy["content"] == {"text": "legacy form"}
    theirs = ok(editor.client.post(P(pid, base), json={"content": blocks("mine")}), 201)
    assert theirs["actor_username"] == editor.username and theirs["actor_id"] == member_id(admin, pid, editor.id)

    for bad in ([], "bare string", 42):
        err(admin.post(P(pid, base), json={"content": bad}), 400, "ACTIVITY_COMMENT_CONTENT_INVALID")
    for bad in ({"text": ""}, None, True):
        err(admin.post(P(pid, base), json={"content": bad}), 400)
    err(admin.post(P(pid, base), json={}), 400)

    feed = activities(admin, pid, t["id"])
    assert [a["activity_type"] for a in feed] == ["task.created", "comment", "comment", "comment"]
    assert [a["id"] for a in feed[1:]] == [c["id"], legacy["id"], theirs["id"]]
    # each response is the entry exactly as the feed serves it (it is read in the write's own statement)
    by_id = {a["id"]: a for a in feed}
    for posted in (c, legacy, theirs):
        assert by_id[posted["id"]] == posted, (posted, by_id[posted["id"]])

    # edit: author only
    new = blocks("Edited text")
    e = ok(admin.patch(P(pid, f"{base}/{c['id']}"), json={"content": new}))
    assert e["id"] == c["id"] and e["content"] == new and e["activity_type"] == "comment"
    assert e["updated_at"] >= c["updated_at"]
    err(admin.patch(P(pid, f"{base}/{c['id']}"), json={"content": []}), 400, "ACTIVITY_COMMENT_CONTENT_INVALID")
    err(editor.client.patch(P(pid, f"{base}/{c['id']}"), json={"content": blocks("hijack")}), 403,
        "ACTIVITY_FORBIDDEN")
    err(editor.client.delete(P(pid, f"{base}/{c['id']}")), 403, "ACTIVITY_FORBIDDEN")
    err(admin.patch(P(pid, f"{base}/{theirs['id']}"), json={"content": blocks("admin edit")}), 403,
        "ACTIVITY_FORBIDDEN")
    created_id = feed[0]["id"]
    err(admin.patch(P(pid, f"{base}/{created_id}"), json={"content": blocks("no")}), 400, "ACTIVITY_NOT_A_COMMENT")
    err(admin.delete(P(pid, f"{base}/{created_id}")), 400, "ACTIVITY_NOT_A_COMMENT")
    err(admin.patch(P(pid, f"{base}/not-a-uuid"), json={"content": blocks("no")}), 400)
    err(admin.patch(P(pid, f"{base}/{uuid.uuid4()}"), json={"content": blocks("no")}), 404)

    feed = {a["id"]: a for a in activities(admin, pid, t["id"])}
    assert feed[c["id"]]["content"] == new and feed[theirs["id"]]["content"] == theirs["content"]

    no_content(admin.delete(P(pid, f"{base}/{c['id']}")))
    no_content(editor.client.delete(P(pid, f"{base}/{theirs['id']}")))
    feed = activities(admin, pid, t["id"])
    assert [a["id"] for a in feed] == [created_id, legacy["id"]]
    # deleting a deleted comment again: it is gone
    err(admin.delete(P(pid, f"{base}/{c['id']}")), 404, "ACTIVITY_NOT_FOUND")
    # comments on an unknown task
    err(admin.post(P(pid, f"/tasks/{uuid.uuid4()}/activities/comments"), json={"content": body}), 404)
    err(admin.get(P(pid, f"/tasks/{uuid.uuid4()}/activities")), 404)

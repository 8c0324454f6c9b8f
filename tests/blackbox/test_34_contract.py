"""Issue 7 §4: what Paca's own clients (its web app and its MCP server) expect.

- Update routes: an empty (or blank) string leaves a field unchanged
  (CONTRACT-NOTES §6 "Update", §3 PATCH /users/me email, §7 task type name).
- Every DELETE answers as Paca's handlers do (status and body).
- GET /projects/:id/members/me/permissions is the role's permission map
  `{"permissions": {"tasks.read": true, ...}}`; /users/me/global-permissions stays an array.
- Tasks accept `assignee_id` as an alias of a one-element `assignee_ids` and answer
  `assignee_id` (first assignee or null) and `reporter_id`.
- Task links (CONTRACT-NOTES §8 "Links"): routes, shapes, display types, errors,
  activities, and they survive a rebuild.
"""

import secrets
import uuid

import pytest
import requests

from conftest import create_user, describe, err, is_uuid, new_password, no_content, ok, unique
from test_2_support import (P, activities, add_member, blocks, create_field, create_sprint, create_task, items,
                            member_id, rebuild_and_verify)
from test_3_support import event_count


# --------------------------------------------------------------------------- empty means unchanged
@pytest.fixture
def described_project(admin):
    return ok(admin.post("/projects", json={"name": unique("Settings "), "description": "Original description",
                                            "task_id_prefix": "ORIG" + secrets.token_hex(1).upper()}), 201)


def test_project_patch_empty_strings_leave_fields_unchanged(admin, described_project):
    p = described_project
    pid = p["id"]
    # exactly what Paca's settings page sends
    r = admin.patch(f"/projects/{pid}", json={"name": "", "description": ""})
    got = ok(r)
    assert got["name"] == p["name"] and got["description"] == "Original description", describe(r)
    assert got == ok(admin.get(f"/projects/{pid}")), "PATCH must answer the current project"

    renamed = unique("Renamed ")
    got = ok(admin.patch(f"/projects/{pid}", json={"name": renamed, "description": ""}))
    assert got["name"] == renamed and got["description"] == "Original description", got

    got = ok(admin.patch(f"/projects/{pid}", json={"name": "   ", "description": "  \t ", "task_id_prefix": ""}))
    assert got["name"] == renamed and got["description"] == "Original description", got
    assert got["task_id_prefix"] == p["task_id_prefix"], got

    trimmed = unique("Trimmed ")
    got = ok(admin.patch(f"/projects/{pid}", json={"name": f"  {trimmed}  ", "description": "New description"}))
    assert got["name"] == trimmed and got["description"] == "New description", got
    assert ok(admin.get(f"/projects/{pid}")) == got


def test_users_me_empty_email_leaves_it_unchanged(server, admin):
    username = unique("mail_")
    initial, final = new_password(), new_password()
    server.secrets.update({initial, final})
    created = ok(admin.post("/admin/users", json={"username": username, "password": initial, "full_name": "Mail User",
                                                  "email": f"{username}@example.com"}), 201)
    assert created.get("email") == f"{username}@example.com", created
    c = server.login(username, initial)
    no_content(c.patch("/users/me/password", json={"current_password": initial, "new_password": final}))
    c = server.login(username, final)

    me = ok(c.patch("/users/me", json={"full_name": "Mail Renamed", "email": ""}))
    assert me["full_name"] == "Mail Renamed" and me.get("email") == f"{username}@example.com", me
    me = ok(c.patch("/users/me", json={"full_name": "Mail Renamed 2", "email": "   "}))
    assert me.get("email") == f"{username}@example.com", me
    me = ok(c.patch("/users/me", json={"full_name": "Mail Renamed 3"}))
    assert me.get("email") == f"{username}@example.com", me
    me = ok(c.patch("/users/me", json={"full_name": "Mail Renamed 4", "email": f"new.{username}@example.com"}))
    assert me.get("email") == f"new.{username}@example.com", me
    assert c.me() == me


def test_task_type_empty_name_leaves_it_unchanged(admin, make_project):
    pid = make_project()["id"]
    t = ok(admin.post(P(pid, "/task-types"), json={"name": "Incident", "color": "#ff0000"}), 201)
    got = ok(admin.patch(P(pid, f"/task-types/{t['id']}"), json={"name": ""}))
    assert got["name"] == "Incident", got
    got = ok(admin.patch(P(pid, f"/task-types/{t['id']}"), json={"name": "  ", "color": "#000000"}))
    assert got["name"] == "Incident" and got["color"] == "#000000", got
    got = ok(admin.patch(P(pid, f"/task-types/{t['id']}"), json={"name": "Outage"}))
    assert got["name"] == "Outage", got


# --------------------------------------------------------------------------- every DELETE as Paca answers it
def _msg(text):
    return {"message": text}


def setup_delete(kind, admin, server):
    """Create something to delete; return (path, expected body or None for 204)."""
    pid = ok(admin.post("/projects", json={"name": unique("Del ")}), 201)["id"]
    if kind == "api key":
        k = ok(admin.post("/users/me/api-keys", json={"name": "del"}), 201)
        server.secrets.add(k["key"])
        return f"/users/me/api-keys/{k['id']}", None
    if kind == "user":
        return f"/admin/users/{create_user(server, admin, change_password=False, prefix='del').id}", None
    if kind == "global role":
        r = ok(admin.post("/admin/global-roles", json={"name": unique("DEL_"), "permissions": []}), 201)
        return f"/admin/global-roles/{r['id']}", _msg("global role deleted")
    if kind == "project":
        return f"/projects/{pid}", _msg("project deleted")
    if kind == "member":
        u = create_user(server, admin, prefix="delm")
        add_member(admin, pid, u.id, "Viewer")
        return P(pid, f"/members/{member_id(admin, pid, u.id)}"), _msg("member removed")
    if kind == "member by user id":
        u = create_user(server, admin, prefix="delu")
        add_member(admin, pid, u.id, "Viewer")
        return P(pid, f"/members/{u.id}"), _msg("member removed")
    if kind == "project role":
        r = ok(admin.post(P(pid, "/roles"), json={"role_name": "Temp", "permissions": {"tasks.read": True}}), 201)
        return P(pid, f"/roles/{r['id']}"), _msg("project role deleted")
    if kind == "task type":
        t = ok(admin.post(P(pid, "/task-types"), json={"name": "Temp"}), 201)
        return P(pid, f"/task-types/{t['id']}"), _msg("task type deleted")
    if kind == "task status":
        s = ok(admin.post(P(pid, "/task-statuses"), json={"name": "Temp", "category": "todo"}), 201)
        return P(pid, f"/task-statuses/{s['id']}"), _msg("task status deleted")
    if kind == "custom field":
        return P(pid, f"/custom-fields/{create_field(admin, pid, 'tmp', 'text')['id']}"), _msg("custom field deleted")
    if kind == "sprint":
        return P(pid, f"/sprints/{create_sprint(admin, pid, 'Temp')['id']}"), _msg("sprint deleted")
    if kind == "view":
        v = ok(admin.post(P(pid, "/views"), params={"context": "backlog"}, json={"name": "Temp", "view_type": "table"}),
               201)
        return P(pid, f"/views/{v['id']}"), None
    if kind == "task":
        return P(pid, f"/tasks/{create_task(admin, pid, 'Temp')['id']}"), _msg("task deleted")
    if kind == "comment":
        t = create_task(admin, pid, "commented")
        c = ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("bye")}), 201)
        return P(pid, f"/tasks/{t['id']}/activities/comments/{c['id']}"), None
    if kind == "task link":
        t1, t2 = create_task(admin, pid, "from"), create_task(admin, pid, "to")
        link = ok(admin.post(P(pid, f"/tasks/{t1['id']}/links"), json={"target_task_id": t2["id"],
                                                                         "link_type": "blocks"}), 201)
        return P(pid, f"/tasks/{t1['id']}/links/{link['id']}"), None
    raise AssertionError(kind)


DELETES = ["api key", "user", "global role", "project", "member", "member by user id", "project role", "task type",
           "task status", "custom field", "sprint", "view", "task", "comment", "task link"]


@pytest.mark.parametrize("kind", DELETES)
def test_delete_answers_like_paca(server, admin, kind):
    path, expected = setup_delete(kind, admin, server)
    r = admin.delete(path, headers={"X-Request-ID": "bb-del-" + kind.replace(" ", "-")})
    if expected is None:
        no_content(r)
    else:
        assert ok(r) == expected, describe(r)
        assert r.json()["request_id"] == r.headers.get("X-Request-ID")
    # gone: a second DELETE is a 404 in the envelope
    r2 = admin.delete(path)
    assert r2.status_code == 404, f"deleting {kind} twice" + describe(r2)
    err(r2, 404)


# --------------------------------------------------------------------------- permissions map
def role_map(admin, pid, name):
    roles = {r["role_name"]: r for r in ok(admin.get(P(pid, "/roles")))}
    perms = roles[name]["permissions"]
    return perms if isinstance(perms, dict) else {p: True for p in perms}


def test_my_project_permissions_is_the_roles_map(server, admin, make_project):
    pid = make_project()["id"]
    qa_perms = {"projects.read": True, "tasks.read": True, "sprints.read": True}
    qa = ok(admin.post(P(pid, "/roles"), json={"role_name": "QA", "permissions": qa_perms}), 201)
    u = create_user(server, admin, prefix="permmap")
    ok(admin.post(P(pid, "/members"), json={"user_id": u.id, "project_role_id": qa["id"]}), 201)
    # the role's map, as Paca's MCP server reads it (not the user's global permissions too)
    assert ok(u.client.get(P(pid, "/members/me/permissions"))) == {"permissions": qa_perms}

    v = create_user(server, admin, prefix="permview")
    add_member(admin, pid, v.id, "Viewer")
    data = ok(v.client.get(P(pid, "/members/me/permissions")))
    assert data == {"permissions": role_map(admin, pid, "Viewer")}, data
    assert data["permissions"].get("tasks.read") is True

    mine = ok(admin.get(P(pid, "/members/me/permissions")))["permissions"]
    assert isinstance(mine, dict) and all(v is True for v in mine.values()), mine
    assert role_map(admin, pid, "Admin").items() <= mine.items(), mine


def test_global_permissions_stay_an_array(server, admin):
    assert isinstance(ok(admin.get("/users/me/global-permissions"))["permissions"], list)
    u = create_user(server, admin, prefix="glarr")
    assert isinstance(ok(u.client.get("/users/me/global-permissions"))["permissions"], list)


# --------------------------------------------------------------------------- assignee_id / reporter_id
@pytest.fixture
def team(server, admin, make_project):
    pid = make_project()["id"]
    u = create_user(server, admin, prefix="assignee")
    add_member(admin, pid, u.id, "Editor")
    return pid, member_id(admin, pid, admin.me()["id"]), member_id(admin, pid, u.id)


def test_task_responses_carry_assignee_id_and_reporter_id(admin, team):
    pid, m_admin, m_user = team
    bare = create_task(admin, pid, "nobody")
    assert "assignee_id" in bare and bare["assignee_id"] is None, bare
    assert "reporter_id" in bare and bare["reporter_id"] is None, bare
    many = create_task(admin, pid, "two", assignee_ids=[m_user, m_admin], reporter_id=m_admin)
    assert many["assignee_ids"] == [m_user, m_admin] and many["assignee_id"] == m_user, many
    assert many["reporter_id"] == m_admin, many
    assert ok(admin.get(P(pid, f"/tasks/{many['id']}"))) == many
    listed = {t["id"]: t for t in ok(admin.get(P(pid, "/tasks")))["items"]}
    assert listed[bare["id"]]["assignee_id"] is None and "reporter_id" in listed[bare["id"]]
    assert listed[many["id"]]["assignee_id"] == m_user


def test_assignee_id_is_an_alias_of_one_element_assignee_ids(admin, team):
    pid, m_admin, m_user = team
    t = create_task(admin, pid, "via alias", assignee_id=m_user)
    assert t["assignee_ids"] == [m_user] and t["assignee_id"] == m_user, t
    same = create_task(admin, pid, "both agree", assignee_id=m_user, assignee_ids=[m_user])
    assert same["assignee_ids"] == [m_user], same

    got = ok(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"assignee_id": m_admin}))
    assert got["assignee_ids"] == [m_admin] and got["assignee_id"] == m_admin, got
    got = ok(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"assignee_id": None}))
    assert got["assignee_ids"] == [] and got["assignee_id"] is None, got


def test_assignee_id_disagreeing_with_assignee_ids_is_400(admin, team):
    pid, m_admin, m_user = team
    before = {x["id"] for x in ok(admin.get(P(pid, "/tasks"), params={"page_size": 200}))["items"]}
    err(admin.post(P(pid, "/tasks"), json={"title": "conflict", "assignee_id": m_user, "assignee_ids": [m_admin]}),
        400)
    assert {x["id"] for x in ok(admin.get(P(pid, "/tasks"), params={"page_size": 200}))["items"]} == before
    t = create_task(admin, pid, "patched conflict", assignee_ids=[m_admin])
    err(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"assignee_id": m_user, "assignee_ids": [m_admin, m_user]}),
        400)
    assert ok(admin.get(P(pid, f"/tasks/{t['id']}")))["assignee_ids"] == [m_admin]


# --------------------------------------------------------------------------- task links
@pytest.fixture(scope="module")
def linkworld(module_server):
    srv = module_server
    a = srv.admin()
    pid = ok(a.post("/projects", json={"name": "Links"}), 201)["id"]
    other = ok(a.post("/projects", json={"name": "Other links"}), 201)["id"]
    tasks = [create_task(a, pid, f"L{i}") for i in range(5)]
    foreign = create_task(a, other, "elsewhere")
    return srv, a, pid, tasks, foreign


LINK_FIELDS = {"id", "source_task_id", "target_task_id", "link_type", "display_link_type", "linked_task",
               "created_at"}


def links_of(a, pid, tid):
    return items(a.get(P(pid, f"/tasks/{tid}/links")))


@pytest.mark.parametrize("link_type,inverse", [("blocks", "is_blocked_by"), ("duplicates", "is_duplicated_by"),
                                               ("relates_to", "relates_to")])
def test_link_shapes_and_display_types(linkworld, link_type, inverse):
    srv, a, pid, tasks, _ = linkworld
    src, dst = create_task(a, pid, f"src {link_type}"), create_task(a, pid, f"dst {link_type}")
    r = a.post(P(pid, f"/tasks/{src['id']}/links"), json={"target_task_id": dst["id"], "link_type": link_type})
    link = ok(r, 201)
    assert set(link) >= LINK_FIELDS, describe(r)
    assert is_uuid(link["id"]) and link["source_task_id"] == src["id"] and link["target_task_id"] == dst["id"]
    assert link["link_type"] == link_type and link["display_link_type"] == link_type, link
    lt = link["linked_task"]
    assert lt["id"] == dst["id"] and lt["task_number"] == dst["task_number"] and lt["title"] == dst["title"], link
    assert lt.get("status_id") == dst.get("status_id") and lt.get("task_type_id") == dst.get("task_type_id"), link
    assert link.get("created_by") == a.me()["id"], link

    from_src = links_of(a, pid, src["id"])
    assert [(x["id"], x["display_link_type"], x["linked_task"]["id"]) for x in from_src] == \
        [(link["id"], link_type, dst["id"])]
    from_dst = links_of(a, pid, dst["id"])
    assert [(x["id"], x["display_link_type"], x["linked_task"]["id"], x["link_type"], x["source_task_id"])
            for x in from_dst] == [(link["id"], inverse, src["id"], link_type, src["id"])]


def test_link_errors(linkworld):
    srv, a, pid, tasks, foreign = linkworld
    t0, t1 = tasks[0], tasks[1]
    ok(a.post(P(pid, f"/tasks/{t0['id']}/links"), json={"target_task_id": t1["id"], "link_type": "blocks"}), 201)
    base = event_count(srv)
    cases = [
        ({"target_task_id": t0["id"], "link_type": "blocks"}, 400, "TASK_LINK_CANNOT_LINK_TO_SELF"),
        ({"target_task_id": t1["id"], "link_type": "blocks"}, 409, "TASK_LINK_ALREADY_EXISTS"),
        ({"target_task_id": foreign["id"], "link_type": "relates_to"}, 400, "TASK_LINK_CROSS_PROJECT"),
        ({"target_task_id": t1["id"], "link_type": "parent_of"}, 400, "BAD_REQUEST"),
        ({"target_task_id": t1["id"]}, 400, "BAD_REQUEST"),
        ({"link_type": "blocks"}, 400, "BAD_REQUEST"),
        ({"target_task_id": str(uuid.uuid4()), "link_type": "blocks"}, 404, "TASK_NOT_FOUND"),
    ]
    for body, status, code in cases:
        err(a.post(P(pid, f"/tasks/{t0['id']}/links"), json=body), status, code)
    err(a.post(P(pid, f"/tasks/{uuid.uuid4()}/links"), json={"target_task_id": t1["id"], "link_type": "blocks"}),
        404, "TASK_NOT_FOUND")
    err(a.get(P(pid, f"/tasks/{uuid.uuid4()}/links")), 404, "TASK_NOT_FOUND")
    err(a.delete(P(pid, f"/tasks/{t0['id']}/links/{uuid.uuid4()}")), 404, "TASK_LINK_NOT_FOUND")
    assert event_count(srv) == base, "refused link requests must append no event"


def test_link_delete_and_activities(linkworld):
    srv, a, pid, tasks, _ = linkworld
    src, dst = tasks[2], tasks[3]
    link = ok(a.post(P(pid, f"/tasks/{src['id']}/links"), json={"target_task_id": dst["id"],
                                                                 "link_type": "blocks"}), 201)
    no_content(a.delete(P(pid, f"/tasks/{src['id']}/links/{link['id']}")))
    assert links_of(a, pid, src["id"]) == [] and links_of(a, pid, dst["id"]) == []
    err(a.delete(P(pid, f"/tasks/{src['id']}/links/{link['id']}")), 404, "TASK_LINK_NOT_FOUND")

    acts = activities(a, pid, src["id"])
    added = [x for x in acts if x["activity_type"] == "task.link.added"]
    removed = [x for x in acts if x["activity_type"] == "task.link.removed"]
    assert len(added) == 1 and added[0]["content"] == {"target_task_id": dst["id"], "link_type": "blocks"}, acts
    assert len(removed) == 1 and removed[0]["content"] == {"link_id": link["id"]}, acts
    assert added[0]["actor_id"] == member_id(a, pid, a.me()["id"]), "actor_id is the member id (test_25)"
    assert [x["activity_type"] for x in acts].index("task.link.added") < \
        [x["activity_type"] for x in acts].index("task.link.removed")


def test_link_permissions(linkworld):
    srv, a, pid, tasks, _ = linkworld
    t0, t4 = tasks[0], tasks[4]
    viewer = create_user(srv, a, prefix="linkview")
    add_member(a, pid, viewer.id, "Viewer")
    assert isinstance(links_of(viewer.client, pid, t0["id"]), list)
    err(viewer.client.post(P(pid, f"/tasks/{t0['id']}/links"), json={"target_task_id": t4["id"],
                                                                       "link_type": "relates_to"}), 403, "FORBIDDEN")
    r = requests.get(srv.url(P(pid, f"/tasks/{t0['id']}/links")), timeout=30)
    err(r, 401, "AUTH_MISSING_TOKEN")


def test_links_survive_a_rebuild(linkworld):
    srv, a, pid, tasks, _ = linkworld
    ok(a.post(P(pid, f"/tasks/{tasks[4]['id']}/links"), json={"target_task_id": tasks[0]["id"],
                                                               "link_type": "duplicates"}), 201)
    before = {t["id"]: links_of(a, pid, t["id"]) for t in tasks}
    assert any(before.values()), "no links to compare"
    rebuild_and_verify(srv)
    a = srv.admin()
    assert {t["id"]: links_of(a, pid, t["id"]) for t in tasks} == before

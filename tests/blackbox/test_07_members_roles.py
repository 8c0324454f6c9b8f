"""Project members and project roles."""

import uuid

import pytest

from conftest import describe, err, is_uuid, no_content, ok

MEMBER_FIELDS = {"id", "project_id", "user_id", "project_role_id", "username", "full_name", "role_name", "member_type"}
ROLE_FIELDS = {"id", "project_id", "role_name", "permissions", "created_at", "updated_at"}


def roles_of(client, pid):
    return {r["role_name"]: r for r in ok(client.get(f"/projects/{pid}/roles"))}


def members_of(client, pid):
    return ok(client.get(f"/projects/{pid}/members"))


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def test_default_roles_and_creator_membership(admin, admin_id, project):
    pid = project["id"]
    r = admin.get(f"/projects/{pid}/roles")
    roles = ok(r)
    assert isinstance(roles, list), describe(r)
    by_name = {x["role_name"]: x for x in roles}
    assert {"Admin", "Editor", "Viewer"} <= set(by_name)
    for role in roles:
        assert set(role) >= ROLE_FIELDS, role
        assert role["project_id"] == pid and isinstance(role["permissions"], dict)
    assert by_name["Viewer"]["permissions"].get("projects.read") is True
    assert not by_name["Viewer"]["permissions"].get("projects.write")

    members = members_of(admin, pid)
    assert isinstance(members, list) and len(members) == 1
    m = members[0]
    assert set(m) >= MEMBER_FIELDS, m
    assert m["user_id"] == admin_id and m["project_id"] == pid
    assert m["role_name"] == "Admin" and m["project_role_id"] == by_name["Admin"]["id"]
    assert m["username"] == "admin" and m["member_type"] == "human"


def test_add_member_and_duplicates(admin, project, make_user):
    pid = project["id"]
    u = make_user(prefix="mem")
    viewer = roles_of(admin, pid)["Viewer"]
    r = admin.post(f"/projects/{pid}/members", json={"user_id": u.id, "project_role_id": viewer["id"]})
    m = ok(r, 201)
    assert set(m) >= MEMBER_FIELDS, describe(r)
    assert is_uuid(m["id"]) and m["user_id"] == u.id and m["project_id"] == pid
    assert m["role_name"] == "Viewer" and m["project_role_id"] == viewer["id"]
    assert m["username"] == u.username and m["member_type"] == "human"
    assert u.id in {x["user_id"] for x in members_of(admin, pid)}

    editor = roles_of(admin, pid)["Editor"]
    err(admin.post(f"/projects/{pid}/members", json={"user_id": u.id, "project_role_id": editor["id"]}),
        409, "PROJECT_MEMBER_ALREADY_ADDED")
    assert len([x for x in members_of(admin, pid) if x["user_id"] == u.id]) == 1


def test_add_member_validation(admin, project, make_project, make_user):
    pid = project["id"]
    viewer = roles_of(admin, pid)["Viewer"]
    err(admin.post(f"/projects/{pid}/members", json={"user_id": str(uuid.uuid4()), "project_role_id": viewer["id"]}),
        404, "USER_NOT_FOUND")
    # a role of another project cannot be used
    other = make_project()
    other_viewer = roles_of(admin, other["id"])["Viewer"]
    stranger = make_user(change_password=False, prefix="mv")
    # the role is looked up among this project's roles only
    err(admin.post(f"/projects/{pid}/members", json={"user_id": stranger.id, "project_role_id": other_viewer["id"]}),
        404, "ROLE_NOT_FOUND")
    assert stranger.id not in {x["user_id"] for x in members_of(admin, pid)}
    err(admin.post(f"/projects/{pid}/members", json={"project_role_id": viewer["id"]}), 400)


def test_viewer_can_read_but_not_write(server, admin, project, make_user):
    pid = project["id"]
    u = make_user(prefix="viewer")
    viewer = roles_of(admin, pid)["Viewer"]
    ok(admin.post(f"/projects/{pid}/members", json={"user_id": u.id, "project_role_id": viewer["id"]}), 201)

    c = u.client
    assert ok(c.get(f"/projects/{pid}"))["id"] == pid
    assert pid in {x["id"] for x in ok(c.get("/projects"))["items"]}
    perms = ok(c.get(f"/projects/{pid}/members/me/permissions"))["permissions"]
    assert isinstance(perms, dict) and perms.get("projects.read") is True
    assert not ({"projects.write", "projects.*", "*"} & {k for k, v in perms.items() if v}), perms

    err(c.patch(f"/projects/{pid}", json={"name": "viewer edit"}), 403, "FORBIDDEN")
    err(c.delete(f"/projects/{pid}"), 403, "FORBIDDEN")
    err(c.post(f"/projects/{pid}/members", json={"user_id": u.id, "project_role_id": viewer["id"]}), 403, "FORBIDDEN")
    err(c.post(f"/projects/{pid}/roles", json={"role_name": "Sneaky", "permissions": {"*": True}}), 403, "FORBIDDEN")
    assert ok(admin.get(f"/projects/{pid}"))["name"] == project["name"]


def test_my_permissions_as_project_admin(admin, project):
    perms = ok(admin.get(f"/projects/{project['id']}/members/me/permissions"))["permissions"]
    assert isinstance(perms, dict) and perms and all(v is True for v in perms.values())


def test_change_member_role_by_member_id_and_user_id(server, admin, project, make_user):
    pid = project["id"]
    u = make_user(prefix="promote")
    roles = roles_of(admin, pid)
    m = ok(admin.post(f"/projects/{pid}/members", json={"user_id": u.id, "project_role_id": roles["Viewer"]["id"]}),
           201)
    err(u.client.patch(f"/projects/{pid}", json={"description": "edit 1"}), 403, "FORBIDDEN")

    # by member id
    data = ok(admin.patch(f"/projects/{pid}/members/{m['id']}", json={"project_role_id": roles["Admin"]["id"]}))
    assert data["role_name"] == "Admin" and data["user_id"] == u.id
    c = server.login(u.username, u.password)
    assert ok(c.patch(f"/projects/{pid}", json={"description": "edit 2"}))["description"] == "edit 2"

    # by user id
    data = ok(admin.patch(f"/projects/{pid}/members/{u.id}", json={"project_role_id": roles["Viewer"]["id"]}))
    assert data["role_name"] == "Viewer" and data["user_id"] == u.id
    c = server.login(u.username, u.password)
    err(c.patch(f"/projects/{pid}", json={"description": "edit 3"}), 403, "FORBIDDEN")
    member = next(x for x in members_of(admin, pid) if x["user_id"] == u.id)
    assert member["role_name"] == "Viewer" and member["project_role_id"] == roles["Viewer"]["id"]


def test_remove_member(server, admin, project, make_user):
    pid = project["id"]
    viewer = roles_of(admin, pid)["Viewer"]
    a = make_user(prefix="rm_a")
    b = make_user(prefix="rm_b")
    ma = ok(admin.post(f"/projects/{pid}/members", json={"user_id": a.id, "project_role_id": viewer["id"]}), 201)
    ok(admin.post(f"/projects/{pid}/members", json={"user_id": b.id, "project_role_id": viewer["id"]}), 201)
    assert ok(admin.delete(f"/projects/{pid}/members/{ma['id']}")) == {"message": "member removed"}  # by member id
    assert ok(admin.delete(f"/projects/{pid}/members/{b.id}")) == {"message": "member removed"}  # by user id
    remaining = {x["user_id"] for x in members_of(admin, pid)}
    assert a.id not in remaining and b.id not in remaining
    err(a.client.get(f"/projects/{pid}"), 403, "FORBIDDEN")
    assert pid not in {x["id"] for x in ok(b.client.get("/projects"))["items"]}
    r = admin.delete(f"/projects/{pid}/members/{a.id}")
    err(r, 404)


def test_project_role_crud(admin, project, make_user):
    pid = project["id"]
    r = admin.post(f"/projects/{pid}/roles", json={"role_name": "QA", "permissions": {"tasks.read": True,
                                                                                      "projects.read": True}})
    role = ok(r, 201)
    assert set(role) >= ROLE_FIELDS, describe(r)
    assert role["project_id"] == pid and role["role_name"] == "QA"
    assert role["permissions"] == {"tasks.read": True, "projects.read": True}
    err(admin.post(f"/projects/{pid}/roles", json={"role_name": "QA", "permissions": {}}), 409, "ROLE_NAME_TAKEN")
    err(admin.post(f"/projects/{pid}/roles", json={"role_name": "Viewer", "permissions": {}}), 409, "ROLE_NAME_TAKEN")

    data = ok(admin.patch(f"/projects/{pid}/roles/{role['id']}",
                          json={"role_name": "QA Lead", "permissions": {"projects.read": True, "projects.write": True}}))
    assert data["role_name"] == "QA Lead"
    assert data["permissions"] == {"projects.read": True, "projects.write": True}
    assert roles_of(admin, pid)["QA Lead"]["id"] == role["id"]

    # a role still assigned cannot be deleted
    u = make_user(prefix="qa")
    ok(admin.post(f"/projects/{pid}/members", json={"user_id": u.id, "project_role_id": role["id"]}), 201)
    # the custom role's permissions apply: projects.write lets the member edit
    assert ok(u.client.patch(f"/projects/{pid}", json={"description": "by QA"}))["description"] == "by QA"
    err(admin.delete(f"/projects/{pid}/roles/{role['id']}"), 409, "ROLE_IN_USE")
    assert ok(admin.delete(f"/projects/{pid}/members/{u.id}")) == {"message": "member removed"}
    assert ok(admin.delete(f"/projects/{pid}/roles/{role['id']}")) == {"message": "project role deleted"}
    assert "QA Lead" not in roles_of(admin, pid)

    # same role name in another project is fine
    ok(admin.post(f"/projects/{pid}/roles", json={"role_name": "QA", "permissions": {}}), 201)


def test_roles_are_per_project(admin, make_project):
    a = make_project()
    b = make_project()
    ra, rb = roles_of(admin, a["id"]), roles_of(admin, b["id"])
    assert ra["Admin"]["id"] != rb["Admin"]["id"]
    err(admin.delete(f"/projects/{a['id']}/roles/{rb['Viewer']['id']}"), 404)


def test_members_and_roles_of_public_project_readable_anonymously(server, make_project):
    p = make_project(is_public=True)
    anon = server.client()
    assert isinstance(ok(anon.get(f"/projects/{p['id']}/members")), list)
    assert {"Admin", "Editor", "Viewer"} <= {r["role_name"] for r in ok(anon.get(f"/projects/{p['id']}/roles"))}
    q = make_project(is_public=False)
    err(anon.get(f"/projects/{q['id']}/members"), 401, "AUTH_MISSING_TOKEN")

"""Admin: user management and global roles."""

import uuid

from conftest import describe, err, is_uuid, new_password, no_content, ok, unique

USER_FIELDS = {"id", "username", "full_name", "role", "must_change_password", "created_at"}


def all_users(admin):
    items, page = [], 1
    while True:
        data = ok(admin.get("/admin/users", params={"page": page, "page_size": 100}))
        items += data["items"]
        if len(items) >= data["total"] or not data["items"]:
            return items, data["total"]
        page += 1


def role_by_name(admin, name):
    roles = ok(admin.get("/admin/global-roles"))
    return next((r for r in roles if r["name"] == name), None)


# --------------------------------------------------------------------------- users
def test_create_user_defaults(server, admin):
    username = unique("adm_")
    pw = new_password()
    server.secrets.add(pw)
    r = admin.post("/admin/users", json={"username": username, "password": pw, "full_name": "New Person"})
    u = ok(r, 201)
    assert set(u) >= USER_FIELDS, describe(r)
    assert is_uuid(u["id"])
    assert u["username"] == username and u["full_name"] == "New Person"
    assert u["role"] == "USER"
    assert u["must_change_password"] is True
    assert pw not in r.text and "$argon2" not in r.text
    # readable back
    assert ok(admin.get(f"/admin/users/{u['id']}")) == u


def test_create_user_with_role_by_name(server, admin):
    pw = new_password()
    server.secrets.add(pw)
    u = ok(admin.post("/admin/users", json={"username": unique("adm2_"), "password": pw, "full_name": "Boss",
                                            "role": "ADMIN"}), 201)
    assert u["role"] == "ADMIN" and u["must_change_password"] is True


def test_create_user_validation(server, admin):
    name = unique("dup_")
    pw = new_password()
    server.secrets.add(pw)
    ok(admin.post("/admin/users", json={"username": name, "password": pw, "full_name": "One"}), 201)
    err(admin.post("/admin/users", json={"username": name, "password": pw, "full_name": "Two"}),
        409, "USER_USERNAME_TAKEN")
    err(admin.post("/admin/users", json={"username": unique("short_"), "password": "short", "full_name": "S"}), 400)
    err(admin.post("/admin/users", json={"password": pw, "full_name": "No Name"}), 400)
    err(admin.post("/admin/users", data="{not json", headers={"Content-Type": "application/json"}),
        400, "BAD_REQUEST")


def test_list_users_paginated(server, admin, make_user):
    make_user(change_password=False, prefix="list")
    make_user(change_password=False, prefix="list")
    first = ok(admin.get("/admin/users", params={"page": 1, "page_size": 2}))
    assert set(first) >= {"items", "total", "page", "page_size"}
    assert first["page"] == 1 and first["page_size"] == 2
    assert len(first["items"]) == 2 and first["total"] >= 3
    second = ok(admin.get("/admin/users", params={"page": 2, "page_size": 2}))
    assert second["page"] == 2
    assert {u["id"] for u in first["items"]}.isdisjoint({u["id"] for u in second["items"]})
    for u in first["items"]:
        assert set(u) >= USER_FIELDS, u
    items, total = all_users(admin)
    assert len(items) == total
    assert "admin" in {u["username"] for u in items}


def test_list_users_page_size_out_of_range_clamps_to_20(server, admin):
    for bad in (0, 101, 1000):
        data = ok(admin.get("/admin/users", params={"page": 1, "page_size": bad}))
        assert data["page_size"] == 20, (bad, data["page_size"])
    data = ok(admin.get("/admin/users"))
    assert data["page"] == 1 and data["page_size"] == 20


def test_get_unknown_user_is_404(admin):
    err(admin.get(f"/admin/users/{uuid.uuid4()}"), 404, "USER_NOT_FOUND")


def test_patch_user(server, admin, make_user):
    u = make_user(change_password=False, prefix="patch")
    data = ok(admin.patch(f"/admin/users/{u.id}", json={"full_name": "Renamed"}))
    assert data["full_name"] == "Renamed" and data["role"] == "USER"
    data = ok(admin.patch(f"/admin/users/{u.id}", json={"role": "ADMIN"}))
    assert data["role"] == "ADMIN" and data["full_name"] == "Renamed"
    assert ok(admin.get(f"/admin/users/{u.id}"))["role"] == "ADMIN"
    err(admin.patch(f"/admin/users/{uuid.uuid4()}", json={"full_name": "x"}), 404, "USER_NOT_FOUND")


def test_delete_user_is_soft_and_blocks_login(server, admin, make_user):
    u = make_user(prefix="del")
    key = ok(u.client.post("/users/me/api-keys", json={"name": "k"}), 201)["key"]
    server.secrets.add(key)
    no_content(admin.delete(f"/admin/users/{u.id}"))
    err(admin.get(f"/admin/users/{u.id}"), 404, "USER_NOT_FOUND")
    err(server.client().post("/auth/login", json={"username": u.username, "password": u.password}), 401)
    assert u.id not in {x["id"] for x in all_users(admin)[0]}
    # a deleted user's credentials stop working
    err(server.client(**{"X-API-Key": key}).get("/users/me"), 401)
    err(admin.delete(f"/admin/users/{uuid.uuid4()}"), 404, "USER_NOT_FOUND")


def test_admin_reset_password(server, admin, make_user):
    u = make_user(prefix="reset")
    reset = new_password()
    server.secrets.add(reset)
    no_content(admin.patch(f"/admin/users/{u.id}/password", json={"new_password": reset}))
    assert ok(admin.get(f"/admin/users/{u.id}"))["must_change_password"] is True
    err(server.client().post("/auth/login", json={"username": u.username, "password": u.password}),
        401, "AUTH_INVALID_CREDENTIALS")
    c = server.login(u.username, reset)
    err(c.get("/users/me"), 403, "AUTH_PASSWORD_CHANGE_REQUIRED")
    err(admin.patch(f"/admin/users/{u.id}/password", json={"new_password": "short"}), 400)


def test_plain_user_cannot_use_admin_routes(server, make_user):
    u = make_user(prefix="plain")
    c = u.client
    # (GET /admin/users is not checked: the seeded USER role holds users.read, which that route requires)
    err(c.post("/admin/users", json={"username": unique("x"), "password": "long-enough-1", "full_name": "X"}),
        403, "FORBIDDEN")
    err(c.patch(f"/admin/users/{u.id}", json={"role": "SUPER_ADMIN"}), 403, "FORBIDDEN")
    err(c.delete(f"/admin/users/{u.id}"), 403, "FORBIDDEN")
    err(c.get("/admin/global-roles"), 403, "FORBIDDEN")
    err(c.post("/admin/global-roles", json={"name": unique("R"), "permissions": ["*"]}), 403, "FORBIDDEN")
    err(c.put(f"/admin/users/{u.id}/global-roles", json={"role_ids": [str(uuid.uuid4())]}), 403, "FORBIDDEN")
    assert c.me()["role"] == "USER"


# --------------------------------------------------------------------------- global roles
def test_system_global_roles_listed(admin):
    roles = ok(admin.get("/admin/global-roles"))
    assert isinstance(roles, list)
    by_name = {r["name"]: r for r in roles}
    assert {"SUPER_ADMIN", "ADMIN", "USER"} <= set(by_name)
    for r in roles:
        assert set(r) >= {"id", "name", "permissions", "created_at", "updated_at"}, r
        assert isinstance(r["permissions"], dict)
    assert by_name["SUPER_ADMIN"]["permissions"] == {"*": True}
    assert by_name["USER"]["permissions"].get("users.read") is True


def test_global_role_crud(server, admin):
    name = unique("ROLE_")
    r = admin.post("/admin/global-roles", json={"name": name, "permissions": ["projects.create", "users.read"]})
    role = ok(r, 201)
    assert is_uuid(role["id"]) and role["name"] == name
    assert role["permissions"] == {"projects.create": True, "users.read": True}

    map_role = ok(admin.post("/admin/global-roles", json={"name": unique("MAP_"),
                                                          "permissions": {"projects.read": True}}), 201)
    assert map_role["permissions"] == {"projects.read": True}

    err(admin.post("/admin/global-roles", json={"name": name, "permissions": []}), 409, "ROLE_NAME_TAKEN")

    renamed = name + "_X"
    data = ok(admin.patch(f"/admin/global-roles/{role['id']}",
                          json={"name": renamed, "permissions": {"projects.create": True}}))
    assert data["name"] == renamed and data["permissions"] == {"projects.create": True}
    assert role_by_name(admin, renamed)["id"] == role["id"]

    assert ok(admin.delete(f"/admin/global-roles/{role['id']}")) == {"message": "global role deleted"}
    assert role_by_name(admin, renamed) is None
    assert ok(admin.delete(f"/admin/global-roles/{map_role['id']}")) == {"message": "global role deleted"}


def test_system_global_roles_are_protected(admin):
    for name in ("SUPER_ADMIN", "ADMIN", "USER"):
        role = role_by_name(admin, name)
        err(admin.patch(f"/admin/global-roles/{role['id']}", json={"name": name + "_2"}), 409, "ROLE_IS_SYSTEM")
        err(admin.delete(f"/admin/global-roles/{role['id']}"), 409, "ROLE_IS_SYSTEM")
    assert {"SUPER_ADMIN", "ADMIN", "USER"} <= {r["name"] for r in ok(admin.get("/admin/global-roles"))}


def test_assign_global_role_grants_permissions(server, admin, make_user):
    u = make_user(prefix="creator")
    err(u.client.post("/projects", json={"name": unique("Nope ")}), 403, "FORBIDDEN")

    rname = unique("CREATOR_")
    role = ok(admin.post("/admin/global-roles", json={"name": rname, "permissions": {"projects.create": True}}), 201)
    data = ok(admin.put(f"/admin/users/{u.id}/global-roles", json={"role_ids": [role["id"]]}))
    assert data["id"] == u.id and data["role"] == rname
    assert ok(admin.get(f"/admin/users/{u.id}"))["role"] == rname

    # the new permission applies (fresh login, in case permissions are baked into the token)
    c = server.login(u.username, u.password)
    assert "projects.create" in ok(c.get("/users/me/global-permissions"))["permissions"]
    p = ok(c.post("/projects", json={"name": unique("Mine ")}), 201)
    assert p["created_by"] == u.id
    # the creator sees it, as a member
    assert p["id"] in {x["id"] for x in ok(c.get("/projects"))["items"]}
    # still no admin powers
    err(c.get("/admin/global-roles"), 403, "FORBIDDEN")
    err(c.post("/admin/users", json={"username": unique("y"), "password": "long-enough-2", "full_name": "Y"}),
        403, "FORBIDDEN")


def test_assign_unknown_role_is_rejected(server, admin, make_user):
    u = make_user(change_password=False, prefix="badrole")
    err(admin.put(f"/admin/users/{u.id}/global-roles", json={"role_ids": [str(uuid.uuid4())]}), 404,
        "ROLE_NOT_FOUND")
    assert ok(admin.get(f"/admin/users/{u.id}"))["role"] == "USER"

"""Self-service user routes and the fresh-password gate."""

from conftest import err, is_uuid, new_password, no_content, ok, unique


def test_me_of_seeded_admin(server, admin):
    me = admin.me()
    assert is_uuid(me["id"])
    assert me["username"] == "admin"
    assert me["role"] == "SUPER_ADMIN"
    assert me["must_change_password"] is False
    assert isinstance(me["full_name"], str)
    assert isinstance(me["created_at"], str) and me["created_at"]
    assert not any("hash" in k or k == "password" for k in me), me


def test_patch_me_full_name(server, make_user):
    u = make_user(prefix="rename")
    data = ok(u.client.patch("/users/me", json={"full_name": "Ada Lovelace"}))
    assert data["full_name"] == "Ada Lovelace" and data["id"] == u.id
    assert u.client.me()["full_name"] == "Ada Lovelace"
    # unknown fields are ignored, and username cannot be changed this way
    data = ok(u.client.patch("/users/me", json={"full_name": "Ada L.", "username": "hacker", "nickname": "x"}))
    assert data["full_name"] == "Ada L." and data["username"] == u.username


def test_global_permissions_admin_is_star(admin):
    assert ok(admin.get("/users/me/global-permissions")) == {"permissions": ["*"]}


def test_global_permissions_plain_user(server, make_user):
    u = make_user(prefix="perm")
    perms = ok(u.client.get("/users/me/global-permissions"))["permissions"]
    assert isinstance(perms, list)
    assert "users.read" in perms
    assert "*" not in perms and "projects.create" not in perms


def test_change_password_flow(server, make_user):
    u = make_user(prefix="chpw")
    # wrong current password
    err(u.client.patch("/users/me/password", json={"current_password": "not-my-password",
                                                   "new_password": "another-long-pw"}),
        422, "USER_INVALID_CURRENT_PASSWORD")
    # new password too short
    err(u.client.patch("/users/me/password", json={"current_password": u.password, "new_password": "short"}),
        400)
    # missing field
    err(u.client.patch("/users/me/password", json={"new_password": "another-long-pw"}), 400)
    # success
    newer = new_password()
    server.secrets.add(newer)
    no_content(u.client.patch("/users/me/password", json={"current_password": u.password, "new_password": newer}))
    err(server.client().post("/auth/login", json={"username": u.username, "password": u.password}),
        401, "AUTH_INVALID_CREDENTIALS")
    c = server.login(u.username, newer)
    assert c.me()["must_change_password"] is False


def test_change_password_requires_auth(server):
    err(server.client().patch("/users/me/password", json={"current_password": "whatever-123",
                                                          "new_password": "whatever-456"}),
        401, "AUTH_MISSING_TOKEN")


def test_fresh_password_gate(server, admin, make_project):
    project = make_project(is_public=False)
    username = unique("fresh_")
    initial = new_password()
    server.secrets.add(initial)
    created = ok(admin.post("/admin/users", json={"username": username, "password": initial,
                                                  "full_name": "Fresh User"}), 201)
    assert created["must_change_password"] is True

    c = server.login(username, initial)  # login itself is allowed
    gated = [
        ("GET", "/users/me", None),
        ("PATCH", "/users/me", {"full_name": "x"}),
        ("GET", "/users/me/global-permissions", None),
        ("GET", "/users/me/api-keys", None),
        ("POST", "/users/me/api-keys", {"name": "k"}),
        ("GET", "/projects", None),
        ("POST", "/projects", {"name": unique("Gate ")}),
        ("GET", f"/projects/{project['id']}", None),
        ("GET", "/admin/users", None),
    ]
    for method, path, body in gated:
        err(c.request(method, path, json=body), 403, "AUTH_PASSWORD_CHANGE_REQUIRED")

    # the exception: changing the password
    final = new_password()
    server.secrets.add(final)
    no_content(c.patch("/users/me/password", json={"current_password": initial, "new_password": final}))

    c2 = server.login(username, final)
    me = c2.me()
    assert me["username"] == username and me["must_change_password"] is False
    page = ok(c2.get("/projects"))
    assert page["items"] == [] and page["total"] == 0  # not a member of anything
    assert isinstance(ok(c2.get("/users/me/api-keys")), list)


def test_fresh_password_gate_applies_to_bearer(server, admin):
    username = unique("freshb_")
    initial = new_password()
    server.secrets.add(initial)
    ok(admin.post("/admin/users", json={"username": username, "password": initial, "full_name": "F B"}), 201)
    c = server.login(username, initial)
    b = server.client(Authorization=f"Bearer {c.access_token}")
    err(b.get("/users/me"), 403, "AUTH_PASSWORD_CHANGE_REQUIRED")
    final = new_password()
    server.secrets.add(final)
    no_content(b.patch("/users/me/password", json={"current_password": initial, "new_password": final}))

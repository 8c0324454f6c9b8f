"""Data survives a server restart on the same database."""

import requests

from conftest import api_key_client, create_user, err, new_password, ok


def strip(resp):
    body = resp.json()
    body.pop("request_id", None)
    return body


def test_data_survives_restart(restartable_server):
    srv = restartable_server
    admin = srv.admin()
    admin_id = admin.me()["id"]

    project = ok(admin.post("/projects", json={"name": "Durable Project", "description": "keep me",
                                               "is_public": False}), 201)
    pid = project["id"]
    public = ok(admin.post("/projects", json={"name": "Durable Public", "is_public": True}), 201)
    ok(admin.patch(f"/projects/{pid}", json={"description": "kept across restarts"}))
    user = create_user(srv, admin, prefix="durable")
    roles = {r["role_name"]: r for r in ok(admin.get(f"/projects/{pid}/roles"))}
    qa = ok(admin.post(f"/projects/{pid}/roles", json={"role_name": "QA", "permissions": {"projects.read": True}}),
            201)
    member = ok(admin.post(f"/projects/{pid}/members", json={"user_id": user.id,
                                                             "project_role_id": roles["Viewer"]["id"]}), 201)
    ok(admin.patch(f"/projects/{pid}/members/{member['id']}", json={"project_role_id": qa["id"]}))
    grole = ok(admin.post("/admin/global-roles", json={"name": "DURABLE_CREATOR",
                                                       "permissions": {"projects.create": True}}), 201)
    ok(admin.put(f"/admin/users/{user.id}/global-roles", json={"role_ids": [grole["id"]]}))
    key = ok(admin.post("/users/me/api-keys", json={"name": "durable key"}), 201)
    srv.secrets.add(key["key"])
    gone = ok(admin.post("/projects", json={"name": "Deleted Before Restart"}), 201)
    ok(admin.delete(f"/projects/{gone['id']}"))
    refresh_before = admin.refresh_token
    access_before = admin.access_token

    def snapshot(c):
        paths = [
            "/users/me",
            "/projects?page=1&page_size=100",
            f"/projects/{pid}",
            f"/projects/{pid}/members",
            f"/projects/{pid}/roles",
            f"/admin/users/{user.id}",
            "/admin/users?page=1&page_size=100",
            "/admin/global-roles",
            "/users/me/api-keys",
        ]
        out = {}
        for p in paths:
            r = c.get(p)
            ok(r)
            out[p] = strip(r)
        return out

    before = snapshot(admin)
    user_view_before = strip(user.client.get(f"/projects/{pid}"))

    old_password = srv.admin_password
    srv.restart(ADMIN_PASSWORD=new_password())  # asserts a clean exit within 10 s of SIGTERM

    # the seeded admin keeps its original password (ADMIN_PASSWORD only seeds a missing admin)
    err(requests.post(srv.url("/auth/login"), json={"username": "admin", "password": srv.admin_password}, timeout=30),
        401, "AUTH_INVALID_CREDENTIALS")
    admin2 = srv.login("admin", old_password)
    assert admin2.me()["id"] == admin_id

    after = snapshot(admin2)
    for p in before:
        assert after[p] == before[p], f"GET {p} changed across restart:\nbefore={before[p]}\nafter={after[p]}"
    assert sum(1 for u in after["/admin/users?page=1&page_size=100"]["data"]["items"] if u["username"] == "admin") == 1
    err(admin2.get(f"/projects/{gone['id']}"), 404, "PROJECT_NOT_FOUND")

    # credentials issued before the restart still work
    assert ok(api_key_client(srv, key["key"]).get("/users/me"))["id"] == admin_id
    u2 = srv.login(user.username, user.password)
    assert strip(u2.get(f"/projects/{pid}")) == user_view_before
    assert u2.me()["role"] == "DURABLE_CREATOR"
    r = requests.post(srv.url("/auth/refresh"), headers={"Cookie": f"refresh_token={refresh_before}"}, timeout=30)
    assert ok(r) == {"message": "token refreshed"}
    r = requests.get(srv.url("/users/me"), headers={"Authorization": f"Bearer {access_before}"}, timeout=30)
    assert ok(r)["id"] == admin_id

    # anonymous access to the public project still works
    assert ok(srv.client().get(f"/projects/{public['id']}"))["name"] == "Durable Public"

    # writes continue after the restart, on top of the old history
    p2 = ok(admin2.post("/projects", json={"name": "After Restart"}), 201)
    ok(admin2.patch(f"/projects/{pid}", json={"name": "Durable Project v2"}))
    srv.restart()
    admin3 = srv.login("admin", old_password)
    names = {p["name"] for p in ok(admin3.get("/projects", params={"page_size": 100}))["items"]}
    assert names == {"Durable Project v2", "Durable Public", "After Restart"}
    assert ok(admin3.get(f"/projects/{p2['id']}"))["task_id_prefix"] == "AR"
    assert ok(admin3.get(f"/projects/{pid}"))["description"] == "kept across restarts"

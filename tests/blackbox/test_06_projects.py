"""Projects: create/read/update/delete, prefixes, visibility, listing."""

import uuid

import pytest

from conftest import describe, err, is_uuid, ok, unique

PROJECT_FIELDS = {"id", "name", "description", "task_id_prefix", "is_public", "settings", "created_by", "created_at"}


def list_all(client):
    items, page = [], 1
    while True:
        data = ok(client.get("/projects", params={"page": page, "page_size": 100}))
        items += data["items"]
        if len(items) >= data["total"] or not data["items"]:
            return items, data["total"]
        page += 1


def test_create_project_fields(server, admin, admin_id):
    name = unique("Fields ")
    r = admin.post("/projects", json={"name": name, "description": "d", "task_id_prefix": "fld1", "is_public": True})
    p = ok(r, 201)
    assert set(p) >= PROJECT_FIELDS, describe(r)
    assert is_uuid(p["id"])
    assert p["name"] == name and p["description"] == "d"
    assert p["task_id_prefix"] == "FLD1"  # trimmed and upper-cased
    assert p["is_public"] is True and p["settings"] == {}
    assert p["created_by"] == admin_id
    assert ok(admin.get(f"/projects/{p['id']}")) == p


def test_create_project_minimal_defaults(admin):
    p = ok(admin.post("/projects", json={"name": "Minimal"}), 201)
    assert p["description"] == "" and p["is_public"] is False and p["settings"] == {}
    assert p["task_id_prefix"] == "MINI"


@pytest.mark.parametrize(
    "name, prefix",
    [
        ("My Fine Project", "MFP"),
        ("Paca", "PACA"),
        ("ab", "AB"),
        ("alpha beta gamma delta epsilon", "ABGD"),
        ("Hello, World!", "HW"),
        ("!!!", "PROJ"),
    ],
)
def test_derived_prefix(admin, name, prefix):
    p = ok(admin.post("/projects", json={"name": name}), 201)
    assert p["task_id_prefix"] == prefix, p


def test_explicit_prefix_trimmed_and_uppercased(admin):
    p = ok(admin.post("/projects", json={"name": unique("Pfx "), "task_id_prefix": "  paca "}), 201)
    assert p["task_id_prefix"] == "PACA"


@pytest.mark.parametrize("prefix", ["PA-CA", "PA CA", "ABCDEFGHIJK", "P_1"])
def test_invalid_prefix_is_400(admin, prefix):
    err(admin.post("/projects", json={"name": unique("Bad "), "task_id_prefix": prefix}), 400, "PROJECT_PREFIX_INVALID")


def test_empty_name_is_400(admin):
    err(admin.post("/projects", json={"name": ""}), 400, "PROJECT_NAME_INVALID")


def test_missing_name_is_400(admin):
    err(admin.post("/projects", json={"description": "no name"}), 400)


def test_malformed_json_is_400(admin):
    err(admin.post("/projects", data='{"name": "x"', headers={"Content-Type": "application/json"}), 400, "BAD_REQUEST")


def test_unknown_fields_ignored(admin):
    p = ok(admin.post("/projects", json={"name": unique("Extra "), "colour": "red", "owner_id": str(uuid.uuid4())}),
           201)
    assert "colour" not in p


def test_user_without_projects_create_is_forbidden(make_user):
    u = make_user(prefix="nocreate")
    err(u.client.post("/projects", json={"name": unique("Forbidden ")}), 403, "FORBIDDEN")


def test_patch_project(admin, make_project):
    p = make_project(description="before")
    data = ok(admin.patch(f"/projects/{p['id']}", json={"name": p["name"] + " v2", "description": "after"}))
    assert data["name"] == p["name"] + " v2" and data["description"] == "after"
    assert data["id"] == p["id"] and data["task_id_prefix"] == p["task_id_prefix"]
    data = ok(admin.patch(f"/projects/{p['id']}", json={"is_public": True}))
    assert data["is_public"] is True and data["description"] == "after"
    got = ok(admin.get(f"/projects/{p['id']}"))
    assert got == data
    err(admin.patch(f"/projects/{p['id']}", json={"task_id_prefix": "NO-NO"}), 400, "PROJECT_PREFIX_INVALID")
    err(admin.patch(f"/projects/{uuid.uuid4()}", json={"name": "x"}), 404, "PROJECT_NOT_FOUND")


def test_delete_project(admin, make_project):
    p = make_project()
    assert ok(admin.delete(f"/projects/{p['id']}")) == {"message": "project deleted"}
    err(admin.get(f"/projects/{p['id']}"), 404, "PROJECT_NOT_FOUND")
    assert p["id"] not in {x["id"] for x in list_all(admin)[0]}
    err(admin.delete(f"/projects/{p['id']}"), 404, "PROJECT_NOT_FOUND")


def test_get_project_errors(server, admin, make_project, make_user):
    private = make_project(is_public=False)
    public = make_project(is_public=True)
    anon = server.client()
    # anonymous
    got = ok(anon.get(f"/projects/{public['id']}"))
    assert got["id"] == public["id"] and got["is_public"] is True
    err(anon.get(f"/projects/{private['id']}"), 401, "AUTH_MISSING_TOKEN")
    # authenticated non-member
    outsider = make_user(prefix="outsider")
    err(outsider.client.get(f"/projects/{private['id']}"), 403, "FORBIDDEN")
    assert ok(outsider.client.get(f"/projects/{public['id']}"))["id"] == public["id"]
    # unknown / malformed id
    err(admin.get(f"/projects/{uuid.uuid4()}"), 404, "PROJECT_NOT_FOUND")
    err(admin.get("/projects/not-a-uuid"), 400, "BAD_REQUEST")
    # anonymous writes are refused even on public projects
    err(anon.patch(f"/projects/{public['id']}", json={"name": "hijack"}), 401, "AUTH_MISSING_TOKEN")
    err(anon.delete(f"/projects/{public['id']}"), 401, "AUTH_MISSING_TOKEN")
    assert ok(admin.get(f"/projects/{public['id']}"))["name"] == public["name"]


def test_outsider_cannot_modify(make_project, make_user):
    p = make_project(is_public=True)
    outsider = make_user(prefix="outsider2")
    err(outsider.client.patch(f"/projects/{p['id']}", json={"name": "mine now"}), 403, "FORBIDDEN")
    err(outsider.client.delete(f"/projects/{p['id']}"), 403, "FORBIDDEN")


def test_list_visibility(server, admin, make_project, make_user):
    p1 = make_project()
    p2 = make_project()
    everything, total = list_all(admin)
    ids = {x["id"] for x in everything}
    assert {p1["id"], p2["id"]} <= ids  # admin sees all
    assert len(everything) == total
    for item in everything:
        assert set(item) >= PROJECT_FIELDS, item

    u = make_user(prefix="vis")
    viewer = next(r for r in ok(admin.get(f"/projects/{p1['id']}/roles")) if r["role_name"] == "Viewer")
    ok(admin.post(f"/projects/{p1['id']}/members", json={"user_id": u.id, "project_role_id": viewer["id"]}), 201)
    mine = ok(u.client.get("/projects"))
    assert [x["id"] for x in mine["items"]] == [p1["id"]]
    assert mine["total"] == 1


def test_list_pagination(admin, make_project):
    for _ in range(3):
        make_project()
    a = ok(admin.get("/projects", params={"page": 1, "page_size": 2}))
    b = ok(admin.get("/projects", params={"page": 2, "page_size": 2}))
    assert a["page"] == 1 and a["page_size"] == 2 and len(a["items"]) == 2
    assert b["page"] == 2 and b["page_size"] == 2 and len(b["items"]) >= 1
    assert a["total"] == b["total"] >= 3
    assert {x["id"] for x in a["items"]}.isdisjoint({x["id"] for x in b["items"]})
    d = ok(admin.get("/projects"))
    assert d["page"] == 1 and d["page_size"] == 20
    assert ok(admin.get("/projects", params={"page_size": 500}))["page_size"] == 20

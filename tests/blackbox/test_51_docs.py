"""Project documentation (issue 9; seed page 15 docs rows, CONTRACT-NOTES §11): folders (tree, three-state
parent_id, self-parent and cycles refused), documents CRUD, snapshots = versions from the log, diff and restore
of snapshots, the doc feed and doc comments (author-only edit/delete); every step is an event, bad input
appends nothing, and a rebuild reproduces the read models exactly."""

import uuid

import pytest

from conftest import create_user, err, is_uuid, no_content, ok, psql, unique
from test_2_support import P, add_member, block_texts, blocks, items, rebuild_and_verify

FOLDER_FIELDS = {"id", "project_id", "name", "position", "created_at", "updated_at"}
DOC_FIELDS = {"id", "project_id", "title", "content", "position", "created_at", "updated_at"}
SNAPSHOT_FIELDS = {"id", "document_id", "title", "content", "snapshot_number", "created_at"}
ACTIVITY_FIELDS = {"id", "document_id", "actor_id", "actor_name", "actor_username", "activity_type", "content",
                   "created_at", "updated_at"}


def events(srv, where: str = "true") -> int:
    return int(psql(f"SELECT count(*) FROM events WHERE {where}", srv.database_url).strip())


def D(pid, path=""):
    return P(pid, "/docs" + path)


@pytest.fixture
def project(make_project):
    return make_project()


def test_folders_tree_and_moves(server, admin, project):
    pid = project["id"]
    eng = ok(admin.post(D(pid, "/folders"), json={"name": "Engineering"}), 201)
    assert set(eng) >= FOLDER_FIELDS and is_uuid(eng["id"]) and eng.get("parent_id") is None
    api = ok(admin.post(D(pid, "/folders"), json={"name": "API", "parent_id": eng["id"]}), 201)
    assert api["parent_id"] == eng["id"]
    v1 = ok(admin.post(D(pid, "/folders"), json={"name": "v1", "parent_id": api["id"]}), 201)
    ops = ok(admin.post(D(pid, "/folders"), json={"name": "Ops", "position": 1}), 201)
    tree = items(admin.get(D(pid, "/folders")))
    assert [f["name"] for f in tree] == ["Engineering", "API", "v1", "Ops"]  # parents before children

    before = events(server)
    # self-parent and cycles -> 400, nothing appended
    err(admin.patch(D(pid, f"/folders/{eng['id']}"), json={"parent_id": eng["id"]}), 400, "DOC_FOLDER_SELF_PARENT")
    err(admin.patch(D(pid, f"/folders/{eng['id']}"), json={"parent_id": v1["id"]}), 400, "DOC_FOLDER_CYCLE")
    err(admin.patch(D(pid, f"/folders/{eng['id']}"), json={"parent_id": str(uuid.uuid4())}), 404,
        "DOC_FOLDER_NOT_FOUND")
    err(admin.post(D(pid, "/folders"), json={"name": "  "}), 400, "DOC_FOLDER_NAME_INVALID")
    err(admin.post(D(pid, "/folders"), json={}), 400)
    err(admin.patch(D(pid, f"/folders/{uuid.uuid4()}"), json={"name": "x"}), 404, "DOC_FOLDER_NOT_FOUND")
    assert events(server) == before

    # rename + move (three-state parent_id: absent keeps, null moves to the root)
    moved = ok(admin.patch(D(pid, f"/folders/{v1['id']}"), json={"name": "Version 1", "parent_id": ops["id"]}))
    assert moved["name"] == "Version 1" and moved["parent_id"] == ops["id"]
    kept = ok(admin.patch(D(pid, f"/folders/{v1['id']}"), json={"position": 3}))
    assert kept["parent_id"] == ops["id"] and kept["position"] == 3
    root = ok(admin.patch(D(pid, f"/folders/{v1['id']}"), json={"parent_id": None}))
    assert root.get("parent_id") is None

    # deleting a folder deletes its subtree (as Paca), each entry with its own event
    doc = ok(admin.post(D(pid), json={"title": "In API", "folder_id": api["id"]}), 201)
    sub = ok(admin.post(D(pid, "/folders"), json={"name": "Sub", "parent_id": api["id"]}), 201)
    deep = ok(admin.post(D(pid), json={"title": "Deep", "folder_id": sub["id"]}), 201)
    outside = ok(admin.post(D(pid), json={"title": "Outside", "folder_id": eng["id"]}), 201)
    before = events(server)
    no_content(admin.delete(D(pid, f"/folders/{api['id']}")))
    assert events(server) == before + 4  # two documents, two folders
    tree = {f["id"]: f for f in items(admin.get(D(pid, "/folders")))}
    assert api["id"] not in tree and sub["id"] not in tree and eng["id"] in tree
    err(admin.get(D(pid, f"/{doc['id']}")), 404, "DOC_NOT_FOUND")
    err(admin.get(D(pid, f"/{deep['id']}")), 404, "DOC_NOT_FOUND")
    assert ok(admin.get(D(pid, f"/{outside['id']}")))["folder_id"] == eng["id"]
    err(admin.delete(D(pid, f"/folders/{api['id']}")), 404, "DOC_FOLDER_NOT_FOUND")
    # a deleted folder is not a valid parent or home
    err(admin.patch(D(pid, f"/folders/{v1['id']}"), json={"parent_id": api["id"]}), 404, "DOC_FOLDER_NOT_FOUND")
    err(admin.post(D(pid), json={"title": "x", "folder_id": sub["id"]}), 404, "DOC_FOLDER_NOT_FOUND")


def test_documents_crud(server, admin, project, make_project):
    pid = project["id"]
    f = ok(admin.post(D(pid, "/folders"), json={"name": "Specs"}), 201)
    d = ok(admin.post(D(pid), json={"title": "Login spec", "folder_id": f["id"],
                                    "content": blocks("Users log in.", "With a password.")}), 201)
    assert set(d) >= DOC_FIELDS and d["folder_id"] == f["id"] and d["title"] == "Login spec"
    assert block_texts(d["content"]) == ["Users log in.", "With a password."]
    assert d.get("created_by")
    bare = ok(admin.post(D(pid), json={"title": "Empty"}), 201)
    assert bare["content"] == [] and bare.get("folder_id") is None

    listed = items(admin.get(D(pid)))
    assert {x["id"] for x in listed} == {d["id"], bare["id"]} and all("content" not in x for x in listed)
    assert [x["id"] for x in items(admin.get(D(pid), params={"folder_id": f["id"]}))] == [d["id"]]
    assert [x["id"] for x in items(admin.get(D(pid), params={"folder_id": "root"}))] == [bare["id"]]
    assert ok(admin.get(D(pid, f"/{d['id']}"))) == d

    other = make_project()
    of = ok(admin.post(D(other["id"], "/folders"), json={"name": "Theirs"}), 201)
    t = ok(admin.post(P(pid, "/tasks"), json={"title": "a task"}), 201)
    before = events(server)
    err(admin.post(D(pid), json={"title": ""}), 400, "DOC_TITLE_INVALID")
    err(admin.post(D(pid), json={"content": []}), 400)
    err(admin.post(D(pid), json={"title": "x", "content": "plain text"}), 400)
    err(admin.post(D(pid), json={"title": "x", "folder_id": str(uuid.uuid4())}), 404, "DOC_FOLDER_NOT_FOUND")
    err(admin.post(D(pid), json={"title": "bad\u0000nul"}), 400)
    err(admin.get(D(pid, f"/{uuid.uuid4()}")), 404, "DOC_NOT_FOUND")
    err(admin.patch(D(pid, f"/{uuid.uuid4()}"), json={"title": "x"}), 404, "DOC_NOT_FOUND")
    # a document of another project is not found there; a task id is not a document
    err(admin.get(D(other["id"], f"/{d['id']}")), 404, "DOC_NOT_FOUND")
    err(admin.patch(D(other["id"], f"/{d['id']}"), json={"title": "x"}), 404, "DOC_NOT_FOUND")
    err(admin.patch(D(pid, f"/{t['id']}"), json={"title": "x"}), 404, "DOC_NOT_FOUND")
    # folders of another project cannot hold this project's docs
    err(admin.patch(D(pid, f"/{d['id']}"), json={"folder_id": of["id"]}), 404, "DOC_FOLDER_NOT_FOUND")
    assert events(server) == before

    # PATCH: absent keeps, null clears content / moves to the root
    p1 = ok(admin.patch(D(pid, f"/{d['id']}"), json={"title": "Login"}))
    assert p1["title"] == "Login" and p1["folder_id"] == f["id"] and p1["content"] == d["content"]
    p2 = ok(admin.patch(D(pid, f"/{d['id']}"), json={"folder_id": None, "position": 2.5}))
    assert p2.get("folder_id") is None and p2["position"] == 2.5 and p2["title"] == "Login"
    p3 = ok(admin.patch(D(pid, f"/{d['id']}"), json={"content": None}))
    assert p3["content"] == []
    no_content(admin.delete(D(pid, f"/{d['id']}")))
    err(admin.get(D(pid, f"/{d['id']}")), 404, "DOC_NOT_FOUND")
    err(admin.delete(D(pid, f"/{d['id']}")), 404, "DOC_NOT_FOUND")
    assert d["id"] not in {x["id"] for x in items(admin.get(D(pid)))}
    # every step is in the log, on the document's stream
    types = psql(f"SELECT string_agg(event_type, ',' ORDER BY version) FROM events WHERE stream_id = '{d['id']}'",
                 server.database_url).strip()
    assert types == "doc.created,doc.updated,doc.updated,doc.moved,doc.updated,doc.deleted", types


def test_snapshots_diff_and_restore(server, admin, project):
    pid = project["id"]
    d = ok(admin.post(D(pid), json={"title": "Plan", "content": blocks("one", "two")}), 201)
    ok(admin.patch(D(pid, f"/{d['id']}"), json={"content": blocks("one", "two", "three")}))
    ok(admin.patch(D(pid, f"/{d['id']}"), json={"position": 7}))  # not a new version
    ok(admin.patch(D(pid, f"/{d['id']}"), json={"title": "Plan B", "content": blocks("uno", "three")}))
    snaps = items(admin.get(D(pid, f"/{d['id']}/snapshots")))
    assert [s["snapshot_number"] for s in snaps] == [3, 2, 1]  # newest first
    for s in snaps:
        assert set(s) >= SNAPSHOT_FIELDS and s["document_id"] == d["id"]
    s3, s2, s1 = snaps
    assert (s1["title"], block_texts(s1["content"])) == ("Plan", ["one", "two"])
    assert (s2["title"], block_texts(s2["content"])) == ("Plan", ["one", "two", "three"])
    assert (s3["title"], block_texts(s3["content"])) == ("Plan B", ["uno", "three"])
    assert s1.get("created_by_name") and s1.get("created_by")
    assert ok(admin.get(D(pid, f"/{d['id']}/snapshots/{s2['id']}"))) == s2
    err(admin.get(D(pid, f"/{d['id']}/snapshots/{uuid.uuid4()}")), 404, "DOC_SNAPSHOT_NOT_FOUND")
    # the snapshot id is the event that made the version
    assert psql(f"SELECT event_type FROM events WHERE event_id = '{s2['id']}'", server.database_url).strip() \
        == "doc.updated"

    diff = ok(admin.get(D(pid, f"/{d['id']}/snapshots/diff"), params={"from": s1["id"], "to": s3["id"]}))
    assert diff["from"]["snapshot_number"] == 1 and diff["to"]["snapshot_number"] == 3
    assert diff["title"] == {"old": "Plan", "new": "Plan B"} and diff["content_changed"]
    assert "-one" in diff["content_diff"] and "+uno" in diff["content_diff"] and "+three" in diff["content_diff"]
    latest = ok(admin.get(D(pid, f"/{d['id']}/snapshots/diff"), params={"from": s2["id"]}))
    assert latest["to"]["id"] == s3["id"]
    same = ok(admin.get(D(pid, f"/{d['id']}/snapshots/diff"), params={"from": s2["id"], "to": s2["id"]}))
    assert same["title"] is None and not same["content_changed"] and same["content_diff"] == ""
    err(admin.get(D(pid, f"/{d['id']}/snapshots/diff")), 400)
    err(admin.get(D(pid, f"/{d['id']}/snapshots/diff"), params={"from": str(uuid.uuid4())}), 404,
        "DOC_SNAPSHOT_NOT_FOUND")

    # restore: a new version naming what it restores
    before = events(server)
    restored = ok(admin.post(D(pid, f"/{d['id']}/snapshots/{s1['id']}/restore")))
    assert restored["title"] == "Plan" and block_texts(restored["content"]) == ["one", "two"]
    assert restored["position"] == 7
    snaps = items(admin.get(D(pid, f"/{d['id']}/snapshots")))
    assert snaps[0]["snapshot_number"] == 4 and snaps[0]["restored_from_snapshot_number"] == 1
    assert snaps[0]["restored_from_snapshot_id"] == s1["id"]
    meta = psql(f"SELECT metadata->>'causation_id' || ' ' || (metadata->'extra'->>'restores') FROM events "
                f"WHERE event_id = '{snaps[0]['id']}'", server.database_url).strip()
    assert meta == f"{s1['id']} {s1['id']}" or meta.split()[0] == s1["id"], meta
    assert events(server) == before + 1
    err(admin.post(D(pid, f"/{d['id']}/snapshots/{uuid.uuid4()}/restore")), 404, "DOC_SNAPSHOT_NOT_FOUND")
    # a snapshot of another document cannot be restored here
    other = ok(admin.post(D(pid), json={"title": "Other"}), 201)
    err(admin.post(D(pid, f"/{other['id']}/snapshots/{s1['id']}/restore")), 404, "DOC_SNAPSHOT_NOT_FOUND")
    assert events(server) == before + 2


def test_feed_and_comments(server, admin, project):
    pid = project["id"]
    ann = create_user(server, admin, prefix="ann")
    bob = create_user(server, admin, prefix="bob")
    add_member(admin, pid, ann.id)
    add_member(admin, pid, bob.id)
    f = ok(admin.post(D(pid, "/folders"), json={"name": "Notes"}), 201)
    d = ok(ann.client.post(D(pid), json={"title": "Retro", "content": blocks("went well")}), 201)
    ok(ann.client.patch(D(pid, f"/{d['id']}"), json={"title": "Retro 1", "folder_id": f["id"]}))
    c = ok(bob.client.post(D(pid, f"/{d['id']}/comments"), json={"content": blocks("nice")}), 201)
    assert set(c) >= ACTIVITY_FIELDS and c["activity_type"] == "comment"
    assert c["actor_username"] == bob.username and c["actor_id"] and c["document_id"] == d["id"]

    feed = items(admin.get(D(pid, f"/{d['id']}/activities")))
    assert [a["activity_type"] for a in feed] == ["doc.created", "doc.updated", "doc.moved", "comment"]
    assert feed[0]["content"] == {"title": "Retro"} and feed[0]["actor_username"] == ann.username
    assert feed[1]["content"]["changes"] == [{"field": "title", "old": "Retro", "new": "Retro 1"}]
    assert feed[2]["content"] == {"old_folder_id": None, "new_folder_id": f["id"]}

    # author-only edit / delete
    before = events(server)
    err(ann.client.patch(D(pid, f"/{d['id']}/comments/{c['id']}"), json={"content": blocks("mine now")}), 403,
        "DOC_ACTIVITY_FORBIDDEN")
    err(ann.client.delete(D(pid, f"/{d['id']}/comments/{c['id']}")), 403, "DOC_ACTIVITY_FORBIDDEN")
    err(bob.client.patch(D(pid, f"/{d['id']}/comments/{feed[0]['id']}"), json={"content": blocks("x")}), 400,
        "DOC_ACTIVITY_NOT_A_COMMENT")
    err(bob.client.patch(D(pid, f"/{d['id']}/comments/{uuid.uuid4()}"), json={"content": blocks("x")}), 404,
        "DOC_ACTIVITY_NOT_FOUND")
    err(bob.client.post(D(pid, f"/{d['id']}/comments"), json={"content": []}), 400, "DOC_COMMENT_CONTENT_INVALID")
    err(bob.client.post(D(pid, f"/{d['id']}/comments"), json={}), 400, "DOC_COMMENT_CONTENT_INVALID")
    assert events(server) == before
    edited = ok(bob.client.patch(D(pid, f"/{d['id']}/comments/{c['id']}"), json={"content": blocks("very nice")}))
    assert block_texts(edited["content"]) == ["very nice"]
    no_content(bob.client.delete(D(pid, f"/{d['id']}/comments/{c['id']}")))
    assert "comment" not in [a["activity_type"] for a in items(admin.get(D(pid, f"/{d['id']}/activities")))]


def test_permissions(server, admin, make_project):
    p = make_project(is_public=True)
    pid = p["id"]
    viewer = create_user(server, admin, prefix="viewer")
    add_member(admin, pid, viewer.id, "Viewer")
    d = ok(admin.post(D(pid), json={"title": "Public doc"}), 201)
    # readers read, writers write
    assert ok(viewer.client.get(D(pid, f"/{d['id']}")))["title"] == "Public doc"
    items(viewer.client.get(D(pid, "/folders")))
    err(viewer.client.post(D(pid), json={"title": "nope"}), 403, "FORBIDDEN")
    err(viewer.client.patch(D(pid, f"/{d['id']}"), json={"title": "nope"}), 403, "FORBIDDEN")
    err(viewer.client.post(D(pid, "/folders"), json={"name": "nope"}), 403, "FORBIDDEN")
    # anonymous callers read a public project's docs, and cannot write
    anon = server.client()
    assert ok(anon.get(D(pid, f"/{d['id']}")))["id"] == d["id"]
    err(anon.post(D(pid), json={"title": "nope"}), 401)
    private = make_project()
    err(anon.get(D(private["id"])), 401, "AUTH_MISSING_TOKEN")
    outsider = create_user(server, admin, prefix="out")
    err(outsider.client.get(D(private["id"])), 403, "FORBIDDEN")


def test_rebuild_reproduces_docs(module_server):
    srv = module_server
    adm = srv.admin()
    p = ok(adm.post("/projects", json={"name": unique("Docs ")}), 201)
    pid = p["id"]
    a = ok(adm.post(D(pid, "/folders"), json={"name": "A"}), 201)
    b = ok(adm.post(D(pid, "/folders"), json={"name": "B", "parent_id": a["id"]}), 201)
    d = ok(adm.post(D(pid), json={"title": "T", "folder_id": b["id"], "content": blocks("x")}), 201)
    ok(adm.patch(D(pid, f"/{d['id']}"), json={"content": blocks("y")}))
    s1 = items(adm.get(D(pid, f"/{d['id']}/snapshots")))[-1]
    ok(adm.post(D(pid, f"/{d['id']}/snapshots/{s1['id']}/restore")))
    c = ok(adm.post(D(pid, f"/{d['id']}/comments"), json={"content": blocks("c")}), 201)
    ok(adm.patch(D(pid, f"/{d['id']}/comments/{c['id']}"), json={"content": blocks("c2")}))
    gone = ok(adm.post(D(pid, "/folders"), json={"name": "Gone", "parent_id": a["id"]}), 201)
    ok(adm.post(D(pid), json={"title": "Gone too", "folder_id": gone["id"]}), 201)
    no_content(adm.delete(D(pid, f"/folders/{gone['id']}")))
    ok(adm.patch(D(pid, f"/folders/{b['id']}"), json={"parent_id": None, "name": "B2"}))
    before = (items(adm.get(D(pid, "/folders"))), ok(adm.get(D(pid, f"/{d['id']}"))),
              items(adm.get(D(pid, f"/{d['id']}/snapshots"))), items(adm.get(D(pid, f"/{d['id']}/activities"))))
    rebuild_and_verify(srv)
    adm = srv.admin()
    after = (items(adm.get(D(pid, "/folders"))), ok(adm.get(D(pid, f"/{d['id']}"))),
             items(adm.get(D(pid, f"/{d['id']}/snapshots"))), items(adm.get(D(pid, f"/{d['id']}/activities"))))
    assert after == before


def test_search(admin, project):
    pid = project["id"]
    a = ok(admin.post(D(pid), json={"title": "Deploy guide", "content": blocks("Run the installer.")}), 201)
    b = ok(admin.post(D(pid), json={"title": "Notes", "content": blocks("How to deploy on Fridays: don't.",
                                                                        "100% sure")}), 201)
    ok(admin.post(D(pid), json={"title": "Other", "content": blocks("nothing here")}), 201)
    hits = items(admin.get(D(pid, "/search"), params={"q": "DEPLOY"}))
    assert [h["id"] for h in hits] == [a["id"], b["id"]]  # title matches first
    assert hits[0]["matched_in"] == "title" and hits[1]["matched_in"] == "content"
    assert "deploy on Fridays" in hits[1]["snippet"]
    # JSON structure is not text, and patterns are literal
    assert items(admin.get(D(pid, "/search"), params={"q": "paragraph"})) == []
    assert [h["id"] for h in items(admin.get(D(pid, "/search"), params={"q": "100%"}))] == [b["id"]]
    assert [h["id"] for h in items(admin.get(D(pid, "/search"), params={"q": "%"}))] == [b["id"]]
    err(admin.get(D(pid, "/search")), 400)


def test_concurrent_folder_delete_and_writes_into_it(server, admin, project):
    """A folder deleted while documents and subfolders are being created in it: every write either lands before
    the delete (and is deleted with the folder) or is refused; nothing survives inside a deleted folder."""
    from test_2_support import clone, parallel
    pid = project["id"]
    for round_ in range(3):
        f = ok(admin.post(D(pid, "/folders"), json={"name": f"Busy {round_}"}), 201)
        clients = [clone(admin) for _ in range(8)]

        def create_doc(c, i):
            return lambda: c.post(D(pid), json={"title": f"d{i}", "folder_id": f["id"]})

        def create_folder(c, i):
            return lambda: c.post(D(pid, "/folders"), json={"name": f"s{i}", "parent_id": f["id"]})

        fns = [create_doc(c, i) if i % 2 else create_folder(c, i) for i, c in enumerate(clients[:6])]
        fns.insert(3, lambda: clients[6].delete(D(pid, f"/folders/{f['id']}")))
        results = parallel(fns, workers=8)
        # The delete is the only one: it always succeeds.
        no_content(results.pop(3))
        # Each create races the delete, so which of two outcomes it gets depends on the interleaving; both are
        # exact: created before the delete (201, and then the delete took it along with the folder), or
        # refused because the folder was already gone (404 DOC_FOLDER_NOT_FOUND).
        landed_docs, landed_folders = [], []
        for i, r in enumerate(results):
            if r.status_code == 201:
                (landed_docs if i % 2 else landed_folders).append(ok(r, 201)["id"])
            else:
                err(r, 404, "DOC_FOLDER_NOT_FOUND")
        for doc_id in landed_docs:
            err(admin.get(D(pid, f"/{doc_id}")), 404, "DOC_NOT_FOUND")
        live_folders = {x["id"]: x for x in items(admin.get(D(pid, "/folders")))}
        assert not set(landed_folders) & set(live_folders), "a subfolder created before the delete survived it"
        assert f["id"] not in live_folders
        assert not [x for x in live_folders.values() if x.get("parent_id") == f["id"]]
        assert not [x for x in items(admin.get(D(pid))) if x.get("folder_id") == f["id"]]

"""GraphQL at /api/graphql: queries, mutations through the same command
handlers as REST (same events, same checks), limits, and `graphql-ws`
subscriptions fed by the same relay as Socket.IO (real graphql-ws client
under Node).
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import ok
from rt_client import Driver
from test_2_support import P, activities, add_member, blocks, create_task, member_id


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def gql(client, query: str, variables: dict | None = None) -> dict:
    r = client.s.post(client.server.base + "/api/graphql", json={"query": query, "variables": variables or {}},
                      timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def data(client, query: str, variables: dict | None = None) -> dict:
    body = gql(client, query, variables)
    assert not body.get("errors"), json.dumps(body)[:2000]
    return body["data"]


def error_code(body: dict) -> str:
    assert body.get("errors"), body
    return body["errors"][0]["extensions"]["code"]


def test_queries(server, admin, admin_id, project):
    pid = project["id"]
    t = create_task(admin, pid, "GraphQL one")
    ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("gq comment")}), 201)
    d = data(admin, "{ me }")
    assert d["me"]["id"] == admin_id and d["me"]["username"] == "admin"
    d = data(admin, """
      query($pid: ID!) {
        projects { id name }
        project(id: $pid) {
          id name data members roles taskTypes statuses customFields sprints views(context: "backlog")
          tasks(pageSize: 10) { nextCursor items { id title version activities history } }
        }
      }""", {"pid": pid})
    assert pid in [p["id"] for p in d["projects"]]
    p = d["project"]
    assert p["name"] == project["name"] and p["data"]["id"] == pid
    assert member_id(admin, pid, admin_id) in [m["id"] for m in p["members"]]
    assert {r["role_name"] for r in p["roles"]} >= {"Admin", "Editor", "Viewer"}
    assert p["taskTypes"] and p["statuses"]
    task = next(x for x in p["tasks"]["items"] if x["id"] == t["id"])
    assert task["title"] == "GraphQL one" and task["version"] == 2
    assert [a["activity_type"] for a in task["activities"]] == ["task.created", "comment"]
    assert task["activities"] == json.loads(json.dumps(activities(admin, pid, t["id"])))
    assert [h["event_type"] for h in task["history"]][0] == "task.created"


def test_task_as_of_and_same_events_as_rest(server, admin, project):
    pid = project["id"]
    d = data(admin, """mutation($pid: ID!, $input: JSON!) { createTask(projectId: $pid, input: $input) { id title version } }""",
             {"pid": pid, "input": {"title": "made by graphql", "importance": 2}})
    tid = d["createTask"]["id"]
    rest = ok(admin.get(P(pid, f"/tasks/{tid}")))
    assert rest["title"] == "made by graphql" and rest["importance"] == 2
    d = data(admin, """mutation($pid: ID!, $id: ID!) { updateTask(projectId: $pid, id: $id, input: {title: "renamed"}, expectedVersion: 1) { title version } }""",
             {"pid": pid, "id": tid})
    assert d["updateTask"] == {"title": "renamed", "version": 2}
    acts = activities(admin, pid, tid)
    assert [a["activity_type"] for a in acts] == ["task.created", "task.updated"]
    d = data(admin, """query($pid: ID!, $id: ID!) { old: task(projectId: $pid, id: $id, asOf: "1") { title version }
                                                   now: task(projectId: $pid, id: $id) { title version } }""",
             {"pid": pid, "id": tid})
    assert d["old"] == {"title": "made by graphql", "version": 1} and d["now"]["title"] == "renamed"
    # a stale expectedVersion is a conflict, nothing appended
    body = gql(admin, """mutation($pid: ID!, $id: ID!) { updateTask(projectId: $pid, id: $id, input: {title: "x"}, expectedVersion: 1) { title } }""",
               {"pid": pid, "id": tid})
    assert error_code(body) == "CONFLICT"
    c = data(admin, """mutation($pid: ID!, $id: ID!) { addComment(projectId: $pid, taskId: $id, content: {text: "hi"}) }""",
             {"pid": pid, "id": tid})["addComment"]
    assert c["activity_type"] == "comment"
    assert data(admin, """mutation($pid: ID!, $id: ID!, $c: ID!) { deleteComment(projectId: $pid, taskId: $id, id: $c) }""",
                {"pid": pid, "id": tid, "c": c["id"]})["deleteComment"] is True
    assert len(activities(admin, pid, tid)) == 2


def test_sprint_and_view_mutations(server, admin, project):
    pid = project["id"]
    s = data(admin, """mutation($p: ID!) { createSprint(projectId: $p, input: {name: "S1", goal: "ship"}) }""",
             {"p": pid})["createSprint"]
    assert s["name"] == "S1" and s["goal"] == "ship"
    rest = ok(admin.get(P(pid, f"/sprints/{s['id']}")))
    assert rest["name"] == "S1"
    s2 = data(admin, """mutation($p: ID!, $id: ID!) { updateSprint(projectId: $p, id: $id, input: {name: "S1b"}) }""",
              {"p": pid, "id": s["id"]})["updateSprint"]
    assert s2["name"] == "S1b"
    v = data(admin, """mutation($p: ID!) { createView(projectId: $p, context: "backlog", input: {name: "Mine", view_type: "board"}) }""",
             {"p": pid})["createView"]
    assert v["name"] == "Mine"
    d = data(admin, """query($p: ID!) { project(id: $p) { sprints views(context: "backlog") } }""", {"p": pid})
    assert s["id"] in [x["id"] for x in d["project"]["sprints"]]
    assert v["id"] in [x["id"] for x in d["project"]["views"]]
    assert data(admin, """mutation($p: ID!, $id: ID!) { deleteView(projectId: $p, id: $id) }""",
                {"p": pid, "id": v["id"]})["deleteView"] is True
    assert data(admin, """mutation($p: ID!, $id: ID!) { deleteSprint(projectId: $p, id: $id) }""",
                {"p": pid, "id": s["id"]})["deleteSprint"] is True
    body = gql(admin, """mutation($p: ID!) { createSprint(projectId: $p, input: {goal: "no name"}) }""", {"p": pid})
    assert error_code(body) == "BAD_REQUEST"


def test_checks_and_limits(server, admin, project, make_user):
    pid = project["id"]
    anon = server.client()
    assert error_code(gql(anon, "{ me }")) == "AUTH_MISSING_TOKEN"
    outsider = make_user(prefix="gqout")
    assert error_code(gql(outsider.client, "query($p: ID!) { project(id: $p) { id } }", {"p": pid})) == "FORBIDDEN"
    body = gql(outsider.client, """mutation($p: ID!) { createTask(projectId: $p, input: {title: "no"}) { id } }""",
               {"p": pid})
    assert error_code(body) == "FORBIDDEN"
    # Bad input: the REST checks, and nothing appended.
    before = ok(admin.get(P(pid, "/tasks")))["items"]
    body = gql(admin, """mutation($p: ID!, $i: JSON!) { createTask(projectId: $p, input: $i) { id } }""",
               {"p": pid, "i": {"title": "nul\u0000here"}})
    assert error_code(body) == "VALIDATION_ERROR"
    body = gql(admin, """mutation($p: ID!, $i: JSON!) { createTask(projectId: $p, input: $i) { id } }""",
               {"p": pid, "i": {"title": "ok", "due_date": "10000-01-01"}})
    assert error_code(body) == "VALIDATION_ERROR"
    assert ok(admin.get(P(pid, "/tasks")))["items"] == before
    # Depth limit.
    deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }"
    body = gql(admin, deep)
    assert body.get("errors") and "deep" in body["errors"][0]["message"].lower(), body
    # GraphiQL on GET.
    r = admin.s.get(server.base + "/api/graphql", timeout=10)
    assert r.status_code == 200 and "graphiql" in r.text.lower()


def test_subscriptions(server, admin, admin_id, project, make_user):
    pid = project["id"]
    member = make_user(prefix="gqsub")
    add_member(admin, pid, member.id, "Editor")
    outsider = make_user(prefix="gqsubout")
    ws = server.base.replace("http://", "ws://") + "/api/graphql"
    with Driver() as rt:
        rt.gql("events", ws, member.client.access_token,
               "subscription($p: ID!) { projectEvents(projectId: $p) { type payload } }", {"p": pid})
        rt.gql("mine", ws, member.client.access_token, "subscription { notifications { type payload } }")
        rt.gql("denied", ws, outsider.client.access_token,
               "subscription($p: ID!) { projectEvents(projectId: $p) { type payload } }", {"p": pid})
        denied = rt.wait_for(
            lambda m: m.get("name") == "denied" and (m.get("kind") == "gql_error" or m.get("kind") == "gql_next"),
            what="denied error")
        assert denied["kind"] == "gql_next" and denied["data"]["errors"][0]["extensions"]["code"] == "FORBIDDEN", denied
        for name in ("events", "mine"):
            rt.wait_for(lambda m, n=name: m.get("name") == n and m.get("kind") == "gql_connected", what=name)
        time.sleep(0.3)  # the server registers the subscriptions after the handshake

        t = create_task(admin, pid, "sub one", assignee_ids=[member_id(admin, pid, member.id)])
        ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("sub comment")}), 201)

        def got(name, type_, pred=lambda p: True):
            return rt.wait_for(
                lambda m: m.get("name") == name and m.get("kind") == "gql_next"
                and (ev := (m["data"].get("data") or {}).get("projectEvents") or (m["data"].get("data") or {}).get("notifications"))
                and ev["type"] == type_ and pred(ev["payload"]),
                what=f"{name} {type_}")

        got("events", "task.created", lambda p: p["task_id"] == t["id"])
        got("events", "task.comment.added", lambda p: p["task_id"] == t["id"])
        n = got("mine", "notification.created", lambda p: p["task_id"] == t["id"])
        assert n["data"]["data"]["notifications"]["payload"]["recipient_user_id"] == member.id


def test_project_docs_and_doc(server, admin, project, make_user):
    """`Project.docs` lists what REST lists (root and by folder) and
    `Project.doc` reads one with its content; both need docs.read."""
    pid = project["id"]
    folder = ok(admin.post(P(pid, "/docs/folders"), json={"name": "GQL folder"}), 201)
    top = ok(admin.post(P(pid, "/docs"), json={"title": "GQL top", "content": [{"type": "paragraph"}]}), 201)
    inner = ok(admin.post(P(pid, "/docs"), json={"title": "GQL inner", "folder_id": folder["id"]}), 201)
    q = """query($p: ID!, $f: String, $d: ID!) { project(id: $p) {
             all: docs  root: docs(folderId: "root")  inFolder: docs(folderId: $f)  doc(id: $d) } }"""
    got = data(admin, q, {"p": pid, "f": folder["id"], "d": top["id"]})["project"]
    rest_all = ok(admin.get(P(pid, "/docs")))["items"]
    assert got["all"] == rest_all and {top["id"], inner["id"]} <= {d["id"] for d in got["all"]}
    assert top["id"] in {d["id"] for d in got["root"]} and inner["id"] not in {d["id"] for d in got["root"]}
    assert [d["id"] for d in got["inFolder"]] == [inner["id"]]
    assert got["doc"] == ok(admin.get(P(pid, f"/docs/{top['id']}")))
    # an unknown document and a bad folder id are the REST errors.
    body = gql(admin, "query($p: ID!) { project(id: $p) { doc(id: \"00000000-0000-0000-0000-000000000000\") } }",
               {"p": pid})
    assert error_code(body) == "DOC_NOT_FOUND"
    body = gql(admin, "query($p: ID!) { project(id: $p) { docs(folderId: \"nope\") } }", {"p": pid})
    assert error_code(body) == "BAD_REQUEST"
    outsider = make_user(prefix="gqdoc")
    body = gql(outsider.client, "query($p: ID!) { project(id: $p) { docs } }", {"p": pid})
    assert error_code(body) == "FORBIDDEN"

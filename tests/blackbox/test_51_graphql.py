"""GraphQL at /api/graphql: typed read models (every field equal to the
REST response's, field by field), queries, mutations through the same
command handlers as REST (same events, same checks), limits, and
`graphql-ws` subscriptions fed by the same relay as Socket.IO (real
graphql-ws client under Node).
"""

from __future__ import annotations

import json
import re
import time

import pytest

from conftest import ok
from rt_client import Driver
from test_2_support import (P, activities, add_member, blocks, create_field, create_sprint, create_task, items,
                            member_id)


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


# ----------------------------------------------------------------- typed objects vs REST
TYPE_REF = "kind name ofType { kind name ofType { kind name ofType { kind name } } }"


def type_fields(client, name: str) -> dict:
    """`{field: (type chain, args)}` of an object type, by introspection."""
    d = data(client, "query($n: String!) { __type(name: $n) { kind fields { name args { name } type { %s } } } }"
             % TYPE_REF, {"n": name})
    assert d["__type"] and d["__type"]["kind"] == "OBJECT", (name, d)
    return {f["name"]: (f["type"], [a["name"] for a in f["args"]]) for f in d["__type"]["fields"]}


def chain(t: dict) -> list:
    """`[NON_NULL, LIST, NON_NULL, OBJECT:Member]`-style description of a type ref."""
    out = []
    while t:
        out.append(t["kind"] if t["kind"] in ("NON_NULL", "LIST") else f"{t['kind']}:{t['name']}")
        t = t.get("ofType")
    return out


def leaves(client, name: str, skip: tuple = ("data",)) -> str:
    """A selection of every scalar field of an object type (without args)."""
    out = []
    for field, (t, args) in type_fields(client, name).items():
        if field in skip or args:
            continue
        if chain(t)[-1].split(":")[0] in ("SCALAR", "ENUM"):
            out.append(field)
    assert out, name
    return " ".join(out)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def same_as_rest(typed: dict, rest: dict, what: str) -> None:
    """Every typed field equals the REST field of the same (snake_case) name
    (absent in REST = null), and every REST field has its typed field."""
    assert isinstance(typed, dict) and isinstance(rest, dict), (what, typed, rest)
    for field, value in typed.items():
        assert value == rest.get(snake(field)), f"{what}.{field}: graphql {value!r} != rest {rest.get(snake(field))!r}"
    missing = set(rest) - {snake(f) for f in typed}
    assert not missing, f"{what}: REST fields without a typed field: {sorted(missing)}"


def same_list_as_rest(typed: list, rest: list, what: str) -> None:
    assert [x["id"] for x in typed] == [x["id"] for x in rest], what
    for t, r in zip(typed, rest):
        same_as_rest(t, r, f"{what}[{r['id']}]")


def test_queries(server, admin, admin_id, project):
    pid = project["id"]
    t = create_task(admin, pid, "GraphQL one")
    ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("gq comment")}), 201)
    d = data(admin, "{ me { id username role } }")
    assert d["me"]["id"] == admin_id and d["me"]["username"] == "admin"
    d = data(admin, """
      query($pid: ID!) {
        projects { id name }
        project(id: $pid) {
          id name data
          members { id userId username roleName }
          roles { id roleName permissions }
          taskTypes { id name } statuses { id name category } customFields { id fieldKey }
          sprints { id name status startDate } views(context: "backlog") { id name viewType }
          tasks(pageSize: 10) { nextCursor items { id title version data
                                                   activities { id activityType actorId createdAt content }
                                                   history { version eventType } } }
        }
      }""", {"pid": pid})
    assert pid in [p["id"] for p in d["projects"]]
    p = d["project"]
    assert p["name"] == project["name"] and p["data"]["id"] == pid
    assert member_id(admin, pid, admin_id) in [m["id"] for m in p["members"]]
    assert {r["roleName"] for r in p["roles"]} >= {"Admin", "Editor", "Viewer"}
    assert all(isinstance(r["permissions"], dict) for r in p["roles"])
    assert p["taskTypes"] and p["statuses"]
    task = next(x for x in p["tasks"]["items"] if x["id"] == t["id"])
    assert task["title"] == "GraphQL one" and task["version"] == 2
    assert task["data"] == ok(admin.get(P(pid, f"/tasks/{t['id']}")))
    assert [a["activityType"] for a in task["activities"]] == ["task.created", "comment"]
    rest_acts = activities(admin, pid, t["id"])
    assert [(a["id"], a["activityType"], a["actorId"], a["createdAt"], a["content"]) for a in task["activities"]] == \
        [(a["id"], a["activity_type"], a["actor_id"], a["created_at"], a["content"]) for a in rest_acts]
    assert [h["eventType"] for h in task["history"]][0] == "task.created"


def test_typed_fields_equal_rest(server, admin, admin_id, project):
    """Every scalar field of every typed object equals the REST response's
    field of the same name (and no REST field is missing)."""
    pid = project["id"]
    create_field(admin, pid, "gq_points", "number")
    sprint = create_sprint(admin, pid, "GQ sprint", goal="typed", start_date="2025-03-01", end_date="2025-03-14")
    ok(admin.post(P(pid, "/views") + "?context=backlog", json={"name": "GQ board", "view_type": "board"}), 201)
    t = create_task(admin, pid, "GraphQL typed", importance=3, tags=["a", "b"], sprint_id=sprint["id"],
                    description=blocks("typed description"), due_date="2025-03-10",
                    assignee_ids=[member_id(admin, pid, admin_id)], custom_fields={"gq_points": 5})
    ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("typed")}), 201)
    ok(admin.patch(P(pid, f"/tasks/{t['id']}"), json={"title": "GraphQL typed 2"}))

    sel = {n: leaves(admin, n) for n in ("User", "Project", "Member", "Role", "TaskType", "TaskStatus",
                                         "CustomField", "Sprint", "View", "Task", "Activity", "HistoryEntry")}
    q = f"""query($pid: ID!, $tid: ID!) {{
      me {{ {sel["User"]} }}
      project(id: $pid) {{
        {sel["Project"]}
        members {{ {sel["Member"]} }} roles {{ {sel["Role"]} }} taskTypes {{ {sel["TaskType"]} }}
        statuses {{ {sel["TaskStatus"]} }} customFields {{ {sel["CustomField"]} }} sprints {{ {sel["Sprint"]} }}
        views(context: "backlog") {{ {sel["View"]} }}
        tasks(pageSize: 50) {{ items {{ {sel["Task"]} }} }}
      }}
      task(projectId: $pid, id: $tid) {{ {sel["Task"]} activities {{ {sel["Activity"]} }}
                                         history {{ {sel["HistoryEntry"]} }} }}
    }}"""
    d = data(admin, q, {"pid": pid, "tid": t["id"]})
    same_as_rest(d["me"], ok(admin.get("/users/me")), "me")
    p = d["project"]
    same_as_rest({k: p[k] for k in sel["Project"].split()}, ok(admin.get(P(pid))), "project")
    same_list_as_rest(p["members"], ok(admin.get(P(pid, "/members"))), "members")
    same_list_as_rest(p["roles"], ok(admin.get(P(pid, "/roles"))), "roles")
    same_list_as_rest(p["taskTypes"], items(admin.get(P(pid, "/task-types"))), "taskTypes")
    same_list_as_rest(p["statuses"], items(admin.get(P(pid, "/task-statuses"))), "statuses")
    same_list_as_rest(p["customFields"], items(admin.get(P(pid, "/custom-fields"))), "customFields")
    same_list_as_rest(p["sprints"], items(admin.get(P(pid, "/sprints"))), "sprints")
    same_list_as_rest(p["views"], items(admin.get(P(pid, "/views"), params={"context": "backlog"})), "views")
    same_list_as_rest(p["tasks"]["items"], items(admin.get(P(pid, "/tasks"), params={"page_size": 50})), "tasks")
    task = d["task"]
    same_as_rest({k: task[k] for k in sel["Task"].split()}, ok(admin.get(P(pid, f"/tasks/{t['id']}"))), "task")
    same_list_as_rest(task["activities"], activities(admin, pid, t["id"]), "activities")
    rest_history = items(admin.get(P(pid, f"/tasks/{t['id']}/history")))
    assert [h["version"] for h in task["history"]] == [h["version"] for h in rest_history]
    for g, r in zip(task["history"], rest_history):
        same_as_rest(g, r, f"history[{r['version']}]")
    # the fields the issue names, spelled out
    assert task["dueDate"] == "2025-03-10T00:00:00Z" and task["tags"] == ["a", "b"] and task["importance"] == 3
    assert task["customFields"] == {"gq_points": 5} and task["sprintId"] == sprint["id"]
    s = next(x for x in p["sprints"] if x["id"] == sprint["id"])
    assert (s["name"], s["status"], s["goal"]) == ("GQ sprint", sprint["status"], "typed")
    assert s["startDate"] == sprint["start_date"]
    assert [h["eventType"] for h in task["history"]] == ["task.created", "task.comment_added", "task.updated"]


def test_schema_is_typed(server, admin):
    """The read models are OBJECT types (lists of them), not the JSON scalar."""
    def objects(name):
        return ["NON_NULL", "LIST", "NON_NULL", f"OBJECT:{name}"]

    def one(name):
        return ["NON_NULL", f"OBJECT:{name}"]

    project = type_fields(admin, "Project")
    for field, name in (("members", "Member"), ("roles", "Role"), ("taskTypes", "TaskType"),
                        ("statuses", "TaskStatus"), ("customFields", "CustomField"), ("sprints", "Sprint"),
                        ("views", "View"), ("docs", "DocSummary")):
        assert chain(project[field][0]) == objects(name), (field, project[field])
    assert chain(project["doc"][0]) == one("Doc")
    assert chain(project["data"][0]) == ["NON_NULL", "SCALAR:JSON"]
    task = type_fields(admin, "Task")
    assert chain(task["activities"][0]) == objects("Activity")
    assert chain(task["history"][0]) == objects("HistoryEntry")
    assert chain(task["assigneeIds"][0]) == ["NON_NULL", "LIST", "NON_NULL", "SCALAR:ID"]
    assert chain(task["createdAt"][0]) == ["NON_NULL", "SCALAR:String"]
    assert chain(type_fields(admin, "Query")["me"][0]) == one("User")
    mutation = type_fields(admin, "Mutation")
    for field, name in (("createTask", "Task"), ("updateTask", "Task"), ("addComment", "Comment"),
                        ("editComment", "Comment"), ("createSprint", "Sprint"), ("updateSprint", "Sprint"),
                        ("completeSprint", "Sprint"), ("createView", "View"), ("updateView", "View")):
        assert chain(mutation[field][0]) == one(name), (field, mutation[field])
    # only free-form values stay JSON
    for type_name, allowed in (("Project", {"data", "settings"}), ("Member", set()), ("Sprint", set()),
                               ("Task", {"data", "description", "customFields", "origin", "pluginSummaries"}),
                               ("Activity", {"content"}), ("DocSummary", set()), ("Doc", {"content"})):
        json_fields = {f for f, (t, _) in type_fields(admin, type_name).items() if chain(t)[-1] == "SCALAR:JSON"}
        assert json_fields == allowed, (type_name, json_fields)


def test_task_as_of_and_same_events_as_rest(server, admin, project):
    pid = project["id"]
    task_fields = leaves(admin, "Task")
    # createTask answers from the create's own events: every field as REST's GET serves it
    d = data(admin, """mutation($pid: ID!, $input: JSON!) { createTask(projectId: $pid, input: $input) { %s } }"""
             % task_fields, {"pid": pid, "input": {"title": "made by graphql", "importance": 2, "tags": ["b", "a"],
                                                    "description": blocks("x", "y"), "story_points": 3}})
    tid = d["createTask"]["id"]
    rest = ok(admin.get(P(pid, f"/tasks/{tid}")))
    assert rest["title"] == "made by graphql" and rest["importance"] == 2
    same_as_rest(d["createTask"], rest, "createTask")
    d = data(admin, """mutation($pid: ID!, $id: ID!) { updateTask(projectId: $pid, id: $id, input: {title: "renamed"}, expectedVersion: 1) { title version } }""",
             {"pid": pid, "id": tid})
    assert d["updateTask"] == {"title": "renamed", "version": 2}
    acts = activities(admin, pid, tid)
    assert [a["activity_type"] for a in acts] == ["task.created", "task.updated"]
    d = data(admin, """query($pid: ID!, $id: ID!) { old: task(projectId: $pid, id: $id, asOf: "1") { %s }
                                                   now: task(projectId: $pid, id: $id) { %s } }"""
             % (task_fields, task_fields), {"pid": pid, "id": tid})
    assert (d["old"]["title"], d["old"]["version"]) == ("made by graphql", 1) and d["now"]["title"] == "renamed"
    same_as_rest(d["old"], ok(admin.get(P(pid, f"/tasks/{tid}"), params={"as_of": "1"})), "task asOf 1")
    same_as_rest(d["now"], ok(admin.get(P(pid, f"/tasks/{tid}"))), "task")
    # a stale expectedVersion is a conflict, nothing appended
    body = gql(admin, """mutation($pid: ID!, $id: ID!) { updateTask(projectId: $pid, id: $id, input: {title: "x"}, expectedVersion: 1) { title } }""",
               {"pid": pid, "id": tid})
    assert error_code(body) == "CONFLICT"
    comment_fields = leaves(admin, "Comment")
    c = data(admin, """mutation($pid: ID!, $id: ID!) { addComment(projectId: $pid, taskId: $id, content: {text: "hi"}) { %s } }"""
             % comment_fields, {"pid": pid, "id": tid})["addComment"]
    assert c["activityType"] == "comment" and c["content"] == {"text": "hi"} and c["taskId"] == tid
    same_as_rest(c, next(a for a in activities(admin, pid, tid) if a["id"] == c["id"]), "addComment")
    e = data(admin, """mutation($pid: ID!, $id: ID!, $c: ID!) { editComment(projectId: $pid, taskId: $id, id: $c, content: {text: "ho"}) { %s } }"""
             % comment_fields, {"pid": pid, "id": tid, "c": c["id"]})["editComment"]
    assert e["id"] == c["id"] and e["content"] == {"text": "ho"}
    same_as_rest(e, next(a for a in activities(admin, pid, tid) if a["id"] == c["id"]), "editComment")
    assert data(admin, """mutation($pid: ID!, $id: ID!, $c: ID!) { deleteComment(projectId: $pid, taskId: $id, id: $c) }""",
                {"pid": pid, "id": tid, "c": c["id"]})["deleteComment"] is True
    assert len(activities(admin, pid, tid)) == 2


def test_sprint_and_view_mutations(server, admin, project):
    pid = project["id"]
    sprint_fields, view_fields = leaves(admin, "Sprint"), leaves(admin, "View")
    s = data(admin, """mutation($p: ID!) { createSprint(projectId: $p, input: {name: "S1", goal: "ship"}) { %s } }"""
             % sprint_fields, {"p": pid})["createSprint"]
    assert s["name"] == "S1" and s["goal"] == "ship" and s["projectId"] == pid
    rest = ok(admin.get(P(pid, f"/sprints/{s['id']}")))
    assert rest["name"] == "S1"
    same_as_rest(s, rest, "createSprint")
    s2 = data(admin, """mutation($p: ID!, $id: ID!) { updateSprint(projectId: $p, id: $id, input: {name: "S1b", start_date: "2025-05-01"}) { %s } }"""
              % sprint_fields, {"p": pid, "id": s["id"]})["updateSprint"]
    assert s2["name"] == "S1b" and s2["startDate"].startswith("2025-05-01")
    same_as_rest(s2, ok(admin.get(P(pid, f"/sprints/{s['id']}"))), "updateSprint")
    v = data(admin, """mutation($p: ID!) { createView(projectId: $p, context: "backlog", input: {name: "Mine", view_type: "board"}) { %s } }"""
             % view_fields, {"p": pid})["createView"]
    assert v["name"] == "Mine" and v["viewType"] == "board"
    same_as_rest(v, ok(admin.get(P(pid, f"/views/{v['id']}"))), "createView")
    v2 = data(admin, """mutation($p: ID!, $id: ID!) { updateView(projectId: $p, id: $id, input: {name: "Ours", config: {group_by: "status"}}) { %s } }"""
              % view_fields, {"p": pid, "id": v["id"]})["updateView"]
    assert v2["name"] == "Ours" and v2["config"]["group_by"] == "status"
    same_as_rest(v2, ok(admin.get(P(pid, f"/views/{v['id']}"))), "updateView")
    d = data(admin, """query($p: ID!) { project(id: $p) { sprints { %s } views(context: "backlog") { %s } } }"""
             % (sprint_fields, view_fields), {"p": pid})
    assert s["id"] in [x["id"] for x in d["project"]["sprints"]]
    assert v["id"] in [x["id"] for x in d["project"]["views"]]
    same_list_as_rest(d["project"]["sprints"], items(admin.get(P(pid, "/sprints"))), "sprints")
    same_list_as_rest(d["project"]["views"], items(admin.get(P(pid, "/views"), params={"context": "backlog"})), "views")
    assert data(admin, """mutation($p: ID!, $id: ID!) { deleteView(projectId: $p, id: $id) }""",
                {"p": pid, "id": v["id"]})["deleteView"] is True
    done = data(admin, """mutation($p: ID!, $id: ID!) { completeSprint(projectId: $p, id: $id) { id status } }""",
                {"p": pid, "id": s["id"]})["completeSprint"]
    assert done == {"id": s["id"], "status": "completed"}
    assert data(admin, """mutation($p: ID!, $id: ID!) { deleteSprint(projectId: $p, id: $id) }""",
                {"p": pid, "id": s["id"]})["deleteSprint"] is True
    body = gql(admin, """mutation($p: ID!) { createSprint(projectId: $p, input: {goal: "no name"}) { id } }""", {"p": pid})
    assert error_code(body) == "BAD_REQUEST"


def test_checks_and_limits(server, admin, project, make_user):
    pid = project["id"]
    anon = server.client()
    assert error_code(gql(anon, "{ me { id } }")) == "AUTH_MISSING_TOKEN"
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
    summary, full = leaves(admin, "DocSummary"), leaves(admin, "Doc")
    assert "content" in full.split() and "content" not in summary.split()
    q = """query($p: ID!, $f: String, $d: ID!, $i: ID!) { project(id: $p) {
             all: docs { %s }  root: docs(folderId: "root") { id }  inFolder: docs(folderId: $f) { id folderId }
             doc(id: $d) { %s }  innerDoc: doc(id: $i) { %s } } }""" % (summary, full, full)
    got = data(admin, q, {"p": pid, "f": folder["id"], "d": top["id"], "i": inner["id"]})["project"]
    rest_all = ok(admin.get(P(pid, "/docs")))["items"]
    same_list_as_rest(got["all"], rest_all, "docs")
    assert {top["id"], inner["id"]} <= {d["id"] for d in got["all"]}
    assert top["id"] in {d["id"] for d in got["root"]} and inner["id"] not in {d["id"] for d in got["root"]}
    assert got["inFolder"] == [{"id": inner["id"], "folderId": folder["id"]}]
    rest_top = ok(admin.get(P(pid, f"/docs/{top['id']}")))
    same_as_rest(got["doc"], rest_top, "doc")
    assert got["doc"]["title"] == "GQL top" and got["doc"]["content"] == rest_top["content"]
    same_as_rest(got["innerDoc"], ok(admin.get(P(pid, f"/docs/{inner['id']}"))), "inner doc")
    # an unknown document and a bad folder id are the REST errors.
    body = gql(admin, "query($p: ID!) { project(id: $p) { doc(id: \"00000000-0000-0000-0000-000000000000\") { id } } }",
               {"p": pid})
    assert error_code(body) == "DOC_NOT_FOUND"
    body = gql(admin, "query($p: ID!) { project(id: $p) { docs(folderId: \"nope\") { id } } }", {"p": pid})
    assert error_code(body) == "BAD_REQUEST"
    outsider = make_user(prefix="gqdoc")
    body = gql(outsider.client, "query($p: ID!) { project(id: $p) { docs { id } } }", {"p": pid})
    assert error_code(body) == "FORBIDDEN"

"""Issue 16 §2: the OpenAPI document, and a schemathesis campaign over it.

`GET /api/openapi.json` is generated from the route table and the handlers'
signatures (gateways/src/openapi.rs). These tests check it from the outside:

- it is a valid OpenAPI 3.1 document, every route the fuzz table of test_31 lists
  (kept by hand, from the source) is in it, and nothing in it is a route the
  server does not have (a request to each documented path is never the router's
  own `404 NOT_FOUND "no such route"`);
- schemathesis (`$SCHEMATHESIS_BIN`, installed by scripts/test.sh in its own
  environment) runs against the real server, authenticated, over every operation,
  bounded in examples and time, with real ids for the path parameters so that
  requests reach the handlers: no response >= 500, every status documented, every
  body valid against its schema, every content type as documented.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import pytest
import requests

from conftest import ROOT, create_user, describe, ok
from test_2_support import P, blocks, create_field, create_sprint, create_task, member_id
from test_31_fuzz_routes import ROUTES

HTTP_TIMEOUT = 30
ST_BIN = os.environ.get("SCHEMATHESIS_BIN") or str(ROOT / "target" / "stenv" / "bin" / "st")
# Bounds of the campaign: examples per operation, and the whole run's time.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))
MAX_SECONDS = int(os.environ.get("SCHEMATHESIS_SECONDS", "240"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


@pytest.fixture(scope="module")
def doc(module_server):
    r = requests.get(module_server.url("/api/openapi.json"), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, describe(r)
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def test_document_is_openapi_31(doc):
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"]
    ops = list(operations(doc))
    assert len(ops) > 150, len(ops)
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids)), "operationIds repeat"
    for method, path, op in ops:
        where = f"{method} {path}"
        names = re.findall(r"\{([^}]+)\}", path)
        declared = [p["name"] for p in op["parameters"] if p["in"] == "path"]
        assert sorted(declared) == sorted(names), where
        assert op["responses"], where
        for status, resp in op["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status), where
            if int(status) >= 400:
                schema = resp["content"]["application/json"]["schema"]
                assert schema["allOf"] == [{"$ref": "#/components/schemas/Error"}], where
                assert schema["properties"]["error_code"]["enum"], f"{where} {status}: no error codes"


def test_document_describes_bodies_and_permissions(doc):
    """The signatures show through: typed bodies, query parameters, permissions."""
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    body = login["requestBody"]["content"]["application/json"]["schema"]
    target = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert {"username", "password"} <= set(target["properties"]), target
    assert login["security"] == []

    create_sprint_op = doc["paths"]["/api/v1/projects/{project_id}/sprints"]["post"]
    assert create_sprint_op["x-permission"] == "sprints.write"
    assert "201" in create_sprint_op["responses"] and "200" not in create_sprint_op["responses"]
    assert "403" in create_sprint_op["responses"]
    project_param = [p for p in create_sprint_op["parameters"] if p["name"] == "project_id"][0]
    assert project_param["schema"] == {"type": "string", "format": "uuid"}

    deleted = doc["paths"]["/api/v1/projects/{project_id}/sprints/{sprint_id}"]["delete"]
    assert deleted["x-permission"] == "sprints.write"

    users = doc["paths"]["/api/v1/admin/users"]["get"]
    assert {"page", "page_size", "search"} <= {p["name"] for p in users["parameters"] if p["in"] == "query"}

    not_found = doc["paths"]["/api/v1/projects/{project_id}/tasks/{task_id}"]["get"]["responses"]["404"]
    codes = not_found["content"]["application/json"]["schema"]["properties"]["error_code"]["enum"]
    assert "TASK_NOT_FOUND" in codes and "PROJECT_NOT_FOUND" in codes


def test_every_route_is_documented(doc):
    """Every route of the hand-kept fuzz table (test_31) is in the generated document."""
    # `{key}`, `{path}` and `{tail}` are actix tail matches (`{key:.*}`).
    def pattern(path):
        escaped = re.sub(r"\\\{(key|path|tail)\\\}", ".+", re.escape(path))
        return re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", escaped))

    documented = [(m, pattern(p)) for m, p, _ in operations(doc)]
    missing = sorted({(r.method, "/api/v1" + r.path) for r in ROUTES
                      if not any(m == r.method and rx.fullmatch("/api/v1" + r.path) for m, rx in documented)})
    assert not missing, f"routes missing from /api/openapi.json: {missing}"


def test_every_documented_route_exists(module_server, doc):
    """No phantom operations: each documented path reaches a handler, never the
    router's fallback `404 NOT_FOUND`."""
    phantom = []
    for method, path, _ in operations(doc):
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        if method == "GET" and path == "/api/graphql":
            continue  # GraphiQL or a websocket upgrade; answered below
        r = requests.request(method, module_server.base + concrete, timeout=HTTP_TIMEOUT, data=b"{}",
                             headers={"Content-Type": "application/json"})
        if r.status_code == 404 and r.headers.get("content-type", "").startswith("application/json"):
            body = r.json()
            if body.get("error_code") == "NOT_FOUND" and body.get("error") == "no such route":
                phantom.append(f"{method} {path}")
    assert not phantom, phantom
    # And the router's fallback is what an undocumented path gets.
    r = requests.get(module_server.base + "/api/v1/no-such-route", timeout=HTTP_TIMEOUT)
    assert r.status_code == 404 and r.json()["error"] == "no such route", describe(r)


# --------------------------------------------------------------------------- the campaign
def seed(srv, a, tag: str) -> dict:
    """A project with one of everything; returns path-parameter name -> id."""
    w = {}
    u = create_user(srv, a, prefix=f"st{tag}")
    w["user_id"] = u.id
    w["global_role_id"] = ok(a.post("/admin/global-roles", json={"name": f"ST_{tag}", "permissions": []}),
                             201)["id"]
    w["key_id"] = ok(a.post("/users/me/api-keys", json={"name": f"st {tag}"}), 201)["id"]
    pid = ok(a.post("/projects", json={"name": f"Schemathesis {tag}"}), 201)["id"]
    w["project_id"] = pid
    roles = {r["role_name"]: r for r in ok(a.get(P(pid, "/roles")))}
    w["role_id"] = ok(a.post(P(pid, "/roles"), json={"role_name": f"st {tag}", "permissions": {}}), 201)["id"]
    ok(a.post(P(pid, "/members"), json={"user_id": u.id, "project_role_id": roles["Editor"]["id"]}), 201)
    w["member_id"] = member_id(a, pid, u.id)
    w["type_id"] = ok(a.post(P(pid, "/task-types"), json={"name": f"st type {tag}"}), 201)["id"]
    w["status_id"] = ok(a.post(P(pid, "/task-statuses"), json={"name": f"st {tag}", "category": "todo"}),
                        201)["id"]
    w["field_id"] = create_field(a, pid, f"st_{tag}", "text")["id"]
    w["sprint_id"] = create_sprint(a, pid, f"st sprint {tag}")["id"]
    w["view_id"] = ok(a.post(P(pid, "/views"), params={"context": "backlog"},
                             json={"name": f"st view {tag}", "view_type": "table"}), 201)["id"]
    task = create_task(a, pid, f"st task {tag}")
    other = create_task(a, pid, f"st other {tag}")
    w["task_id"] = task["id"]
    w["number"] = str(task["task_number"])
    ok(a.patch(P(pid, f"/tasks/{task['id']}"), json={"title": f"st task {tag} renamed"}))
    acts = ok(a.get(P(pid, f"/tasks/{task['id']}/activities")))["items"]
    w["activity_id"] = [x for x in acts if x["activity_type"] == "task.updated"][0]["id"]
    w["comment_id"] = ok(a.post(P(pid, f"/tasks/{task['id']}/activities/comments"),
                                json={"content": blocks("hi")}), 201)["id"]
    r = a.post(P(pid, f"/tasks/{task['id']}/links"), json={"target_task_id": other["id"], "link_type": "blocks"})
    w["link_id"] = ok(r, 201)["id"]
    w["folder_id"] = ok(a.post(P(pid, "/docs/folders"), json={"name": f"st folder {tag}"}), 201)["id"]
    w["doc_id"] = ok(a.post(P(pid, "/docs"), json={"title": f"st doc {tag}", "content": blocks("x")}), 201)["id"]
    w["snapshot_id"] = ok(a.get(P(pid, f"/docs/{w['doc_id']}/snapshots")))["items"][0]["id"]
    agent = ok(a.post(P(pid, "/agents"), json={
        "name": f"st bot {tag}", "handle": f"st-bot-{tag}", "llm_provider": "anthropic",
        "llm_model": "claude-sonnet-4-6", "llm_api_key": "sk-ant-" + uuid.uuid4().hex,
        "project_role_id": roles["Editor"]["id"]}), 201)
    w["agent_id"] = agent["id"]
    w["server_id"] = ok(a.post(P(pid, f"/agents/{agent['id']}/mcp-servers"), json={
        "server_name": f"st-{tag}", "transport": "stdio", "command": "npx", "args": ["-y", "x"]}), 201)["id"]
    w["skill_id"] = ok(a.post(P(pid, f"/agents/{agent['id']}/skills"), json={
        "skill_name": f"st-{tag}", "skill_source": "inline", "skill_content": "# st"}), 201)["id"]
    return w


@pytest.fixture(scope="module")
def campaign(module_server, doc, tmp_path_factory):
    if not os.path.exists(ST_BIN):
        pytest.fail(f"schemathesis not found at {ST_BIN} (scripts/test.sh installs it)")
    srv = module_server
    a = srv.admin()
    keep = seed(srv, a, "keep")
    # DELETEs get a world of their own, so they do not pull the ids from under
    # the other operations mid-run.
    victim = seed(srv, a, "victim")
    token = a.access_token
    assert token
    api_key = ok(a.post("/users/me/api-keys", json={"name": "schemathesis"}), 201)["key"]

    names = sorted({n for _, path, _ in operations(doc) for n in re.findall(r"\{([^}]+)\}", path)})
    unknown = [n for n in names if n not in keep]

    def params(world):
        return {f"path.{k}": v for k, v in world.items() if k in names}

    # Every scheme the document declares gets a real credential. The access
    # cookie wins when several arrive, so session-only routes are reached too.
    lines = [
        "[auth.openapi.bearer]", f"bearer = {json.dumps(token)}",
        "[auth.openapi.cookie]", f"api_key = {json.dumps(token)}",
        "[auth.openapi.apiKey]", f"api_key = {json.dumps('ApiKey ' + api_key)}",
        "[auth.openapi.apiKeyHeader]", f"api_key = {json.dumps(api_key)}",
        "",
        "[parameters]",
    ]
    lines += [f'"{k}" = {json.dumps(v)}' for k, v in params(keep).items()]
    # `role_id` names a project role under /projects and a global role under /admin.
    lines += ["", "[[operations]]", 'include-path-regex = "^/api/v1/admin/global-roles"',
              f'parameters = {{ "path.role_id" = {json.dumps(keep["global_role_id"])} }}']
    victim_params = ", ".join(f'"{k}" = {json.dumps(v)}' for k, v in params(victim).items())
    lines += ["", "[[operations]]", 'include-method = "DELETE"', f"parameters = {{ {victim_params} }}"]
    out = tmp_path_factory.mktemp("schemathesis")
    config = out / "schemathesis.toml"
    config.write_text("\n".join(lines) + "\n")
    report = out / "report.json"
    cmd = [
        ST_BIN, "--config-file", str(config), "run", srv.url("/api/openapi.json"),
        "--url", srv.base,
        "--checks", CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
        "--max-time", str(MAX_SECONDS),
        "--seed", "81",
        "--workers", "2",
        "--request-timeout", "20",
        # A request sent on a keep-alive connection just as the server
        # closes it for idleness (actix: 5 s) comes back "closed without
        # response": CI met it twice at the same point of the seeded run (a
        # POST after an idle gap; it succeeds when replayed). urllib3 never
        # retries a POST, so each request gets a connection of its own.
        "--header", "Connection: close",
        "--phases", "examples,coverage,fuzzing",
        # Logging out would end the campaign's own session.
        "--exclude-operation-id", "session_logout",
        "--report", "json", "--report-json-path", str(report),
        "--no-color",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_SECONDS + 240, cwd=out)
    return res, report, unknown


def server_trouble(srv, limit: int = 40) -> str:
    """The server log's warnings, errors, panics and requests that ended
    without a response (the edge middleware logs those): what the server saw
    of a request schemathesis reports as failed."""
    try:
        with open(srv.log_path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "<no server log>"
    hits = [line for line in lines
            if re.search(r" (WARN|ERROR) |panicked at|without a response", line)]
    return "\n--- server log: warnings, errors, panics, unanswered requests ---\n" + "\n".join(hits[-limit:])


def test_schemathesis_campaign_finds_nothing(campaign, doc, module_server):
    res, report, unknown = campaign
    output = res.stdout[-30000:] + res.stderr[-4000:]
    if res.returncode != 0:
        output += server_trouble(module_server)
    assert report.exists(), output
    data = json.loads(report.read_text())
    accepted = sorted(op for op, rates in data["valid_rates"].items()
                      if any(phase["accepted"] for phase in rates.values()))
    # The counts, for the record (pytest -s, or the report of a failure).
    print(json.dumps({
        "operations": data["operations"], "test_cases": data["test_cases"], "stop_reason": data["stop_reason"],
        "running_time": round(data["running_time"], 1), "operations_with_2xx": len(accepted),
        "ids_generated_for": unknown,
    }, indent=1))
    assert data["failures"] == [], output
    assert data["errors"] == [], output
    assert res.returncode == 0, output
    total = sum(1 for _ in operations(doc))
    counts = data["operations"]
    # Every operation schemathesis loaded was tested, all but logout; it loads
    # all of the document's but (at most) the document itself.
    assert counts["tested"] == counts["selected"] == counts["total"] - 1, counts
    assert counts["total"] >= total - 1, (counts, total)
    assert data["test_cases"]["generated"] >= 2 * total, data["test_cases"]
    # Real ids and credentials take most operations past authentication and
    # lookup, into their handlers' success path.
    assert len(accepted) >= total // 3, (len(accepted), total)

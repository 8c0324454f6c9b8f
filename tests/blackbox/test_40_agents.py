"""AI agents as project teammates (issue 11), against the real `paca serve` with a
real Redis: agents are members, triggers come from the log exactly once into
`paca:agent:triggers`, conversations and chat over REST, secrets never readable,
and the shared agent key acting as an agent member.

The server here runs without an agent runner (PACA_AGENT_RUNNER=off), so the
tests read the trigger stream themselves with XREADGROUP.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time

import pytest
import redis

from conftest import (
    _make_server,
    _teardown_server,
    create_user,
    err,
    is_uuid,
    no_content,
    ok,
    psql,
    unique,
)

REDIS_DB = 11
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
STREAM = "paca:agent:triggers"
GROUP = "ai-agent-workers"
AGENT_KEY = "agent-key-" + secrets.token_hex(16)


def rds() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, decode_responses=True)


def wait_for(fn, timeout=15.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def agent_env(**extra) -> dict:
    env = {"REDIS_URL": REDIS_URL, "AGENT_API_KEY": AGENT_KEY, "PACA_AGENT_RUNNER": "off"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def srv():
    rds().flushdb()
    s, dbname = _make_server("agents", extra_env=agent_env())
    s.secrets.add(AGENT_KEY)
    try:
        s.start()
        yield s
    finally:
        _teardown_server(s, dbname)


@pytest.fixture(scope="module")
def adm(srv):
    return srv.admin()


def entries(conversation_id: str | None = None) -> list[dict]:
    """Every entry of the trigger stream (XRANGE), optionally for one conversation."""
    out = []
    for _id, fields in rds().xrange(STREAM):
        if conversation_id is None or fields.get("conversation_id") == conversation_id:
            out.append(fields)
    return out


def roles(client, project_id) -> dict:
    return {r["role_name"]: r["id"] for r in ok(client.get(f"/projects/{project_id}/roles"))}


def new_agent(client, project_id, role="Editor", **fields) -> dict:
    body = {
        "name": fields.pop("name", "Dev Bot"),
        "handle": fields.pop("handle", unique("bot-")),
        "llm_provider": "anthropic",
        "llm_model": "claude-sonnet-4-6",
        "llm_api_key": fields.pop("llm_api_key", "sk-ant-" + secrets.token_hex(8)),
        "project_role_id": roles(client, project_id)[role],
    }
    body.update(fields)
    return ok(client.post(f"/projects/{project_id}/agents", json=body), 201)


def new_project(client) -> dict:
    return ok(client.post("/projects", json={"name": unique("Agents ")}), 201)


def new_task(client, project_id, **fields) -> dict:
    body = {"title": fields.pop("title", unique("Task "))}
    body.update(fields)
    return ok(client.post(f"/projects/{project_id}/tasks", json=body), 201)


def conversations(client, project_id, **params) -> list[dict]:
    return ok(client.get(f"/projects/{project_id}/conversations", params=params))["items"]


def db_url(srv) -> str:
    return srv.database_url


# --------------------------------------------------------------------------- agents


def test_agent_is_a_member_created_in_one_transaction(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"], handle="@Dev-Bot-1")
    assert is_uuid(a["id"]) and is_uuid(a["member_id"])
    assert a["handle"] == "dev-bot-1"
    assert a["has_llm_api_key"] is True and "llm_api_key" not in a
    assert a["max_iterations"] == 500 and a["timeout_minutes"] == 30
    assert a["git_committer_name"] == "paca-agent"
    assert a["role_name"] == "Editor"
    members = ok(adm.get(f"/projects/{p['id']}/members"))
    mine = [m for m in members if m["id"] == a["member_id"]]
    assert len(mine) == 1, members
    assert mine[0]["member_type"] == "agent" and mine[0]["agent_id"] == a["id"]
    assert mine[0]["user_id"] is None and mine[0]["username"] == "dev-bot-1"
    # agent.created and project.agent_member_added: one transaction.
    txs = psql(
        "SELECT DISTINCT tx_id FROM events WHERE "
        f"(stream_id = '{a['id']}' AND event_type = 'agent.created') OR "
        f"(stream_id = '{p['id']}' AND event_type = 'project.agent_member_added')",
        db_url(srv),
    ).split()
    assert len(txs) == 1, txs
    listed = ok(adm.get(f"/projects/{p['id']}/agents"))
    assert [x["id"] for x in listed] == [a["id"]]
    got = ok(adm.get(f"/projects/{p['id']}/agents/{a['id']}"))
    assert got["mcp_servers"] == [] and got["skills"] == []


def test_handles_are_unique_per_project_and_validated(srv, adm):
    p = new_project(adm)
    new_agent(adm, p["id"], handle="planner")
    before = psql("SELECT count(*) FROM events", db_url(srv)).strip()
    role = roles(adm, p["id"])["Editor"]
    base = {"name": "X", "llm_provider": "openai", "llm_model": "gpt-5", "llm_api_key": "k", "project_role_id": role}
    err(adm.post(f"/projects/{p['id']}/agents", json={**base, "handle": "Planner"}), 409, "AGENT_HANDLE_TAKEN")
    for bad in ["a", "-x", "has space", "x" * 41]:
        err(adm.post(f"/projects/{p['id']}/agents", json={**base, "handle": bad}), 400, "AGENT_HANDLE_INVALID")
    err(adm.post(f"/projects/{p['id']}/agents", json={**base, "handle": "ok-bot", "project_role_id": None}), 400)
    err(adm.post(f"/projects/{p['id']}/agents", json={**base, "handle": "ok-bot", "llm_api_key": ""}), 400)
    err(adm.post(f"/projects/{p['id']}/agents", json={**base, "handle": "ok-bot", "max_iterations": 501}), 400)
    err(adm.post(f"/projects/{p['id']}/agents", json={**base, "handle": "ok-bot", "name": "  "}), 400, "AGENT_NAME_INVALID")
    err(adm.post(f"/projects/{p['id']}/agents", data="{", headers={"Content-Type": "application/json"}), 400, "BAD_REQUEST")
    assert psql("SELECT count(*) FROM events", db_url(srv)).strip() == before, "rejected commands appended events"
    # Another project may use the same handle.
    new_agent(adm, new_project(adm)["id"], handle="planner")


def test_patch_and_permissions(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"])
    got = ok(adm.patch(f"/projects/{p['id']}/agents/{a['id']}",
                       json={"timeout_minutes": 60, "handle": "renamed-bot", "project_role_id": roles(adm, p["id"])["Viewer"]}))
    assert got["timeout_minutes"] == 60 and got["handle"] == "renamed-bot" and got["role_name"] == "Viewer"
    # The old handle is free again.
    new_agent(adm, p["id"], handle=a["handle"])
    err(adm.get(f"/projects/{p['id']}/agents/not-a-uuid"), 400)
    err(adm.get(f"/projects/{p['id']}/agents/00000000-0000-0000-0000-000000000001"), 404, "AGENT_NOT_FOUND")
    viewer = create_user(srv, adm)
    ok(adm.post(f"/projects/{p['id']}/members", json={"user_id": viewer.id, "project_role_id": roles(adm, p["id"])["Viewer"]}), 201)
    err(viewer.client.get(f"/projects/{p['id']}/agents"), 403, "FORBIDDEN")
    editor = create_user(srv, adm)
    ok(adm.post(f"/projects/{p['id']}/members", json={"user_id": editor.id, "project_role_id": roles(adm, p["id"])["Editor"]}), 201)
    ok(editor.client.get(f"/projects/{p['id']}/agents"))
    err(editor.client.post(f"/projects/{p['id']}/agents", json={"handle": "zz"}), 403, "FORBIDDEN")
    # Agent members leave through agent deletion only.
    err(adm.delete(f"/projects/{p['id']}/members/{a['member_id']}"), 400)


def test_templates_and_models(srv, adm):
    slugs = {t["slug"] for t in ok(adm.get("/agents/skill-templates"))}
    assert {"po-assistant", "ba", "developer", "manual-tester"} <= slugs
    models = ok(adm.get("/agents/llm-models"))
    assert "claude-sonnet-4-6" in models["anthropic"]


def test_llm_models_unreachable_provider_falls_back(tmp_path):
    rds()  # noqa: connectivity only
    s, dbname = _make_server("models", extra_env=agent_env(LLM_MODELS_URL="http://127.0.0.1:9/v1"))
    try:
        s.start()
        models = ok(s.admin().get("/agents/llm-models"))
        assert "anthropic" in models and models["openai"]
    finally:
        _teardown_server(s, dbname)


def test_delete_agent_unassigns_explicitly(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"], handle="leaver")
    me = [m for m in ok(adm.get(f"/projects/{p['id']}/members")) if m["member_type"] == "human"][0]
    t = new_task(adm, p["id"], assignee_ids=[a["member_id"], me["id"]])
    no_content(adm.delete(f"/projects/{p['id']}/agents/{a['id']}"))
    task = ok(adm.get(f"/projects/{p['id']}/tasks/{t['id']}"))
    assert task["assignee_ids"] == [me["id"]], task
    acts = ok(adm.get(f"/projects/{p['id']}/tasks/{t['id']}/activities"))["items"]
    changes = [c for x in acts if x["activity_type"] == "task.updated" for c in x["content"].get("changes", [x["content"]])]
    assert any(c.get("field") == "assignee" for c in changes), acts
    assert a["member_id"] not in [m["id"] for m in ok(adm.get(f"/projects/{p['id']}/members"))]
    err(adm.get(f"/projects/{p['id']}/agents/{a['id']}"), 404, "AGENT_NOT_FOUND")
    new_agent(adm, p["id"], handle="leaver")  # the handle is free


# --------------------------------------------------------------------------- triggers


def test_assignment_triggers_exactly_one_conversation(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"], handle="assignee-bot")
    t = new_task(adm, p["id"])
    ok(adm.patch(f"/projects/{p['id']}/tasks/{t['id']}", json={"assignee_ids": [a["member_id"]]}))
    convs = wait_for(lambda: conversations(adm, p["id"]), what="a conversation")
    assert len(convs) == 1, convs
    c = convs[0]
    assert c["status"] == "queued" and c["trigger_type"] == "task_assigned"
    assert c["task_id"] == t["id"] and c["agent_id"] == a["id"]
    admin_member = [m for m in ok(adm.get(f"/projects/{p['id']}/members")) if m["member_type"] == "human"][0]
    assert c["triggered_by_member_id"] == admin_member["id"]
    # Exactly one XREADGROUP-visible entry with the seed's flat fields.
    r = rds()
    consumer = "test-" + secrets.token_hex(4)
    seen = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not seen:
        got = r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=100, block=500) or []
        for _stream, items in got:
            for entry_id, fields in items:
                r.xack(STREAM, GROUP, entry_id)
                if fields.get("conversation_id") == c["id"]:
                    seen.append(fields)
    assert len(seen) == 1, seen
    assert seen[0] == {
        "type": "agent.task_assigned",
        "trigger_type": "task_assigned",
        "conversation_id": c["id"],
        "agent_id": a["id"],
        "project_id": p["id"],
        "task_id": t["id"],
        "actor_member_id": admin_member["id"],
        "repo_plugin_ids": "",
    }
    # agent.session.started on the task timeline, the agent as actor.
    acts = ok(adm.get(f"/projects/{p['id']}/tasks/{t['id']}/activities"))["items"]
    started = [x for x in acts if x["activity_type"] == "agent.session.started"]
    assert len(started) == 1, acts
    assert started[0]["content"]["conversation_id"] == c["id"] and started[0]["content"]["agent_id"] == a["id"]
    assert started[0]["actor_member_type"] == "agent" and started[0]["actor_username"] == "assignee-bot"
    # Re-saving the same assignees, or unrelated edits, trigger nothing new.
    ok(adm.patch(f"/projects/{p['id']}/tasks/{t['id']}", json={"assignee_ids": [a["member_id"]], "title": "renamed"}))
    time.sleep(1.0)
    assert len(conversations(adm, p["id"])) == 1
    assert len(entries(c["id"])) == 1
    # Assigning on creation triggers too.
    t2 = new_task(adm, p["id"], assignee_ids=[a["member_id"]])
    wait_for(lambda: conversations(adm, p["id"], task_id=t2["id"]), what="conversation for a task created assigned")


def test_mention_triggers_comment_mention_with_message(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"], handle="reviewer")
    other = new_agent(adm, p["id"], handle="bystander")
    t = new_task(adm, p["id"])
    body = {"content": [{"type": "paragraph", "content": [{"type": "text", "text": "@reviewer please check the login flow (not bystander)"}]}]}
    comment = ok(adm.post(f"/projects/{p['id']}/tasks/{t['id']}/activities/comments", json=body), 201)
    convs = wait_for(lambda: conversations(adm, p["id"], trigger_type="comment_mention"), what="comment_mention")
    assert len(convs) == 1 and convs[0]["agent_id"] == a["id"], convs
    c = convs[0]
    assert "please check the login flow" in c["message"] and c["comment_id"] == comment["id"]
    fields = wait_for(lambda: entries(c["id"]), what="trigger entry")
    assert len(fields) == 1
    assert fields[0]["type"] == "agent.comment_mention" and fields[0]["comment_id"] == comment["id"]
    assert fields[0]["task_id"] == t["id"] and "please check the login flow" in fields[0]["message"]
    assert not conversations(adm, p["id"], agent_id=other["id"])


def test_mention_in_a_doc_comment_triggers_comment_mention(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"], handle="doc-writer")
    d = ok(adm.post(f"/projects/{p['id']}/docs", json={"title": "Runbook"}), 201)
    body = {"content": [{"type": "paragraph", "content": [
        {"type": "text", "text": "could "},
        {"type": "mention", "props": {"handle": "doc-writer"}},
        {"type": "text", "text": " add the restore steps"}]}]}
    comment = ok(adm.post(f"/projects/{p['id']}/docs/{d['id']}/comments", json=body), 201)
    convs = wait_for(lambda: conversations(adm, p["id"], trigger_type="comment_mention"), what="doc comment_mention")
    assert len(convs) == 1 and convs[0]["agent_id"] == a["id"], convs
    c = convs[0]
    assert "@doc-writer" in c["message"] and "add the restore steps" in c["message"], c
    assert c["comment_id"] == comment["id"] and c["task_id"] is None
    fields = wait_for(lambda: entries(c["id"]), what="trigger entry")
    assert len(fields) == 1, fields
    f = fields[0]
    assert f["type"] == "agent.comment_mention" and f["trigger_type"] == "comment_mention"
    assert f["comment_id"] == comment["id"] and f["doc_id"] == d["id"] and "task_id" not in f
    assert f["project_id"] == p["id"] and "add the restore steps" in f["message"]
    # a doc comment with no agent handle, or an edit, triggers nothing more
    ok(adm.post(f"/projects/{p['id']}/docs/{d['id']}/comments", json={"content": {"text": "no mention here"}}), 201)
    time.sleep(1.0)
    assert len(conversations(adm, p["id"])) == 1


def test_stop_and_follow_up_status_codes(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"])
    t = new_task(adm, p["id"], assignee_ids=[a["member_id"]])
    c = wait_for(lambda: conversations(adm, p["id"], task_id=t["id"]), what="conversation")[0]
    err(adm.post(f"/projects/{p['id']}/conversations/{c['id']}/messages", json={"message": "more"}), 409,
        "AGENT_CONVERSATION_NOT_RUNNING")
    err(adm.post(f"/projects/{p['id']}/conversations/{c['id']}/messages", json={}), 400)
    assert ok(adm.post(f"/projects/{p['id']}/conversations/{c['id']}/stop")) == {"message": "conversation stopped"}
    assert ok(adm.get(f"/projects/{p['id']}/conversations/{c['id']}"))["status"] == "stopped"
    stops = wait_for(lambda: [e for e in entries(c["id"]) if e["type"] == "agent.stop"], what="agent.stop entry")
    assert stops == [{"type": "agent.stop", "conversation_id": c["id"], "project_id": p["id"]}]
    err(adm.post(f"/projects/{p['id']}/conversations/{c['id']}/stop"), 409, "AGENT_CONVERSATION_ALREADY_STOPPED")
    err(adm.post(f"/projects/{p['id']}/conversations/{c['id']}/messages", json={"message": "x"}), 409,
        "AGENT_CONVERSATION_NOT_RUNNING")
    err(adm.get(f"/projects/{p['id']}/conversations/00000000-0000-0000-0000-000000000009"), 404,
        "AGENT_CONVERSATION_NOT_FOUND")
    # Filters and their validation.
    assert [x["id"] for x in conversations(adm, p["id"], status="stopped")] == [c["id"]]
    assert conversations(adm, p["id"], status="running") == []
    err(adm.get(f"/projects/{p['id']}/conversations", params={"status": "bogus"}), 400)
    err(adm.get(f"/projects/{p['id']}/conversations", params={"cursor": "!!"}), 400, "AGENT_CONVERSATION_INVALID_CURSOR")
    page = ok(adm.get(f"/projects/{p['id']}/conversations/{c['id']}/events"))
    assert page["items"] == [] and page["total"] == 0
    err(adm.get(f"/projects/{p['id']}/conversations/{c['id']}/events", params={"limit": 0}), 400)
    err(adm.get(f"/projects/{p['id']}/conversations/{c['id']}/events", params={"after": "1", "before": "2"}), 400)


def test_chat_and_write_with_ai(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"], handle="chatty")
    started = ok(adm.post(f"/projects/{p['id']}/agents/{a['id']}/chat-sessions", json={"message": "Plan the sprint\nplease"}), 201)
    assert started["title"] == "Plan the sprint"
    c1 = started["conversation"]
    assert c1["trigger_type"] == "chat_message" and c1["chat_session_id"] == started["id"] and c1["status"] == "queued"
    sent = ok(adm.post(f"/projects/{p['id']}/agents/{a['id']}/chat-sessions/{started['id']}/messages",
                       json={"message": "and the next one"}), 201)
    assert sent["conversation"]["chat_session_id"] == started["id"] and sent["conversation_id"] != c1["id"]
    sessions = ok(adm.get(f"/projects/{p['id']}/agents/{a['id']}/chat-sessions"))
    assert [s["id"] for s in sessions] == [started["id"]]
    for cid, msg in [(c1["id"], "Plan the sprint\nplease"), (sent["conversation_id"], "and the next one")]:
        f = wait_for(lambda: entries(cid), what="chat trigger entry")
        assert len(f) == 1 and f[0]["type"] == "agent.chat_message" and f[0]["message"] == msg
        assert f[0]["chat_session_id"] == started["id"]
    err(adm.post(f"/projects/{p['id']}/agents/{a['id']}/chat-sessions/{a['id']}/messages", json={"message": "x"}), 404,
        "AGENT_CHAT_SESSION_NOT_FOUND")
    t = new_task(adm, p["id"], title="Login page")
    w = ok(adm.post(f"/projects/{p['id']}/tasks/{t['id']}/write-with-ai", json={"agent_id": a["id"]}), 201)["conversation"]
    assert w["trigger_type"] == "description_write" and w["task_id"] == t["id"]
    f = wait_for(lambda: entries(w["id"]), what="description_write entry")
    assert len(f) == 1 and f[0]["type"] == "agent.description_write" and "Login page" in f[0]["message"]
    acts = ok(adm.get(f"/projects/{p['id']}/tasks/{t['id']}/activities"))["items"]
    assert [x["content"]["conversation_id"] for x in acts if x["activity_type"] == "agent.session.started"] == [w["id"]]
    err(adm.post(f"/projects/{p['id']}/tasks/{t['id']}/write-with-ai", json={}), 400)
    err(adm.post(f"/projects/{p['id']}/tasks/{t['id']}/write-with-ai", json={"agent_id": p["id"]}), 404, "AGENT_NOT_FOUND")


# --------------------------------------------------------------------------- secrets


def test_secrets_never_readable_back(srv, adm):
    p = new_project(adm)
    llm_key = "sk-live-" + secrets.token_hex(12)
    rotated = "sk-rot-" + secrets.token_hex(12)
    mcp_secret = "ghp_" + secrets.token_hex(12)
    for s in (llm_key, rotated, mcp_secret):
        srv.secrets.add(s)
    a = new_agent(adm, p["id"], llm_api_key=llm_key)
    mcp = ok(adm.post(f"/projects/{p['id']}/agents/{a['id']}/mcp-servers", json={
        "server_name": "github", "transport": "stdio", "command": "npx", "args": ["-y", "gh-mcp"],
        "env": {"GITHUB_TOKEN": mcp_secret, "REGION": "eu"}}), 201)
    assert mcp["env"] == {"GITHUB_TOKEN": "***", "REGION": "eu"}
    # Sending the mask back keeps the stored secret; a new value replaces it.
    ok(adm.patch(f"/projects/{p['id']}/agents/{a['id']}/mcp-servers/{mcp['id']}",
                 json={"env": {"GITHUB_TOKEN": "***", "REGION": "us"}}))
    got = ok(adm.patch(f"/projects/{p['id']}/agents/{a['id']}", json={"llm_api_key": rotated}))
    assert got["has_llm_api_key"] is True
    n_changed = psql(f"SELECT count(*) FROM events WHERE stream_id = '{a['id']}' AND event_type = 'agent.llm_key_changed'",
                     db_url(srv)).strip()
    assert n_changed == "1"
    # Stored encrypted: present, but not as plaintext.
    creds = psql(f"SELECT name, encode(ciphertext, 'escape') FROM agent_credentials WHERE agent_id = '{a['id']}'", db_url(srv))
    assert "llm_api_key" in creds and f"mcp:{mcp['id']}:GITHUB_TOKEN" in creds
    # Nowhere readable: responses, the log, `paca events tail --json`, the server log.
    bodies = [
        adm.get(f"/projects/{p['id']}/agents").text,
        adm.get(f"/projects/{p['id']}/agents/{a['id']}").text,
        adm.get(f"/projects/{p['id']}/agents/{a['id']}/mcp-servers").text,
        adm.get(f"/projects/{p['id']}/agents/{a['id']}/mcp-servers/{mcp['id']}").text,
        adm.get(f"/projects/{p['id']}/members").text,
        creds,
        psql("SELECT payload::text || metadata::text FROM events", db_url(srv)),
    ]
    tail = srv.cli("events", "tail", "--json", "--limit", "100000")
    assert tail.returncode == 0, tail.stderr
    bodies.append(tail.stdout + tail.stderr)
    time.sleep(0.3)
    with open(srv.log_path, encoding="utf-8", errors="replace") as f:
        bodies.append(f.read())
    for secret in (llm_key, rotated, mcp_secret):
        for i, text in enumerate(bodies):
            assert secret not in text, f"secret found in source #{i}"
    # Removing the server erases its secret.
    no_content(adm.delete(f"/projects/{p['id']}/agents/{a['id']}/mcp-servers/{mcp['id']}"))
    assert "mcp:" not in psql(f"SELECT name FROM agent_credentials WHERE agent_id = '{a['id']}'", db_url(srv))


def test_skills_crud(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"])
    tpl = [t for t in ok(adm.get("/agents/skill-templates")) if t["slug"] == "developer"][0]
    s = ok(adm.post(f"/projects/{p['id']}/agents/{a['id']}/skills", json={
        "skill_name": "developer", "skill_source": "inline", "skill_content": tpl["content"], "triggers": tpl["triggers"]}), 201)
    assert s["is_enabled"] is True and s["triggers"] == tpl["triggers"]
    err(adm.post(f"/projects/{p['id']}/agents/{a['id']}/skills", json={"skill_name": "developer", "skill_source": "inline"}), 409)
    err(adm.post(f"/projects/{p['id']}/agents/{a['id']}/skills", json={"skill_name": "x", "skill_source": "ftp"}), 400)
    got = ok(adm.patch(f"/projects/{p['id']}/agents/{a['id']}/skills/{s['id']}", json={"is_enabled": False}))
    assert got["is_enabled"] is False
    assert len(ok(adm.get(f"/projects/{p['id']}/agents/{a['id']}"))["skills"]) == 1
    no_content(adm.delete(f"/projects/{p['id']}/agents/{a['id']}/skills/{s['id']}"))
    err(adm.get(f"/projects/{p['id']}/agents/{a['id']}/skills/{s['id']}"), 404, "AGENT_SKILL_NOT_FOUND")
    err(adm.post(f"/projects/{p['id']}/agents/{a['id']}/mcp-servers", json={"server_name": "x", "transport": "http"}), 400)


# --------------------------------------------------------------------------- agent key


def test_agent_key_acts_as_the_agent_member(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"], handle="worker-bot")
    t = new_task(adm, p["id"])
    bot = srv.client(**{"X-API-Key": AGENT_KEY, "X-Agent-ID": a["id"]})
    c = ok(bot.post(f"/projects/{p['id']}/tasks/{t['id']}/activities/comments", json={"content": {"text": "on it"}}), 201)
    assert c["actor_id"] == a["member_id"] and c["actor_member_type"] == "agent" and c["actor_username"] == "worker-bot"
    statuses = ok(adm.get(f"/projects/{p['id']}/task-statuses"))
    items = statuses["items"] if isinstance(statuses, dict) else statuses
    done = [s for s in items if s["name"] == "Done"][0]
    ok(bot.patch(f"/projects/{p['id']}/tasks/{t['id']}", json={"status_id": done["id"]}))
    acts = ok(adm.get(f"/projects/{p['id']}/tasks/{t['id']}/activities"))["items"]
    moved = [x for x in acts if x["activity_type"] == "task.updated"][-1]
    assert moved["actor_id"] == a["member_id"] and moved["actor_member_type"] == "agent"
    assert [x for x in acts if x["id"] == c["id"]] == [c], "the comment's response is its feed entry"
    meta = psql(f"SELECT metadata::text FROM events WHERE stream_id = '{t['id']}' ORDER BY version DESC LIMIT 1", db_url(srv))
    assert '"kind": "agent"' in meta and a["id"] in meta and '"actor_member_type": "agent"' in meta
    # Its own mention of itself does not trigger it.
    ok(bot.post(f"/projects/{p['id']}/tasks/{t['id']}/activities/comments", json={"content": {"text": "@worker-bot done"}}), 201)
    # The agent acts with its Editor role: no agent management.
    err(bot.post(f"/projects/{p['id']}/agents", json={"handle": "x"}), 403, "FORBIDDEN")
    # A forged X-Agent-ID of another project's agent is refused here.
    q = new_project(adm)
    foreign = new_agent(adm, q["id"])
    forged = srv.client(**{"X-API-Key": AGENT_KEY, "X-Agent-ID": foreign["id"]})
    err(forged.post(f"/projects/{p['id']}/tasks/{t['id']}/activities/comments", json={"content": {"text": "x"}}), 403, "FORBIDDEN")
    err(forged.get(f"/projects/{p['id']}/tasks/{t['id']}"), 403, "FORBIDDEN")
    # The shared key without X-Agent-ID identifies no actor.
    anon = srv.client(**{"X-API-Key": AGENT_KEY})
    err(anon.post(f"/projects/{p['id']}/tasks/{t['id']}/activities/comments", json={"content": {"text": "x"}}), 400,
        "ACTIVITY_COMMENT_ACTOR_UNIDENTIFIED")
    err(srv.client(**{"X-API-Key": AGENT_KEY, "X-Agent-ID": "00000000-0000-0000-0000-000000000000"}).get(
        f"/projects/{p['id']}/tasks"), 401, "AUTH_TOKEN_INVALID")
    time.sleep(1.0)
    assert conversations(adm, p["id"], agent_id=a["id"]) == []


# --------------------------------------------------------------------------- crashes


def _xlen_for(conversation_id: str) -> int:
    return len(entries(conversation_id))


@pytest.mark.parametrize("hook", ["PACA_TEST_OUTBOX_HOLD", "PACA_TEST_CRASH_AFTER_XADD"])
def test_kill_between_conversation_and_xadd(hook):
    s, dbname = _make_server("agents-crash", extra_env=agent_env(**{hook: "1"}))
    try:
        s.start()
        adm = s.admin()
        p = new_project(adm)
        a = new_agent(adm, p["id"])
        t = new_task(adm, p["id"], assignee_ids=[a["member_id"]])
        if hook == "PACA_TEST_OUTBOX_HOLD":
            # The conversation is committed, its message still in the outbox.
            c = wait_for(lambda: conversations(adm, p["id"], task_id=t["id"]), what="queued conversation")[0]
            time.sleep(0.5)
            assert _xlen_for(c["id"]) == 0
            os.killpg(s.proc.pid, signal.SIGKILL)
        else:
            # The relay XADDs, then the process aborts before deleting the row.
            wait_for(lambda: s.proc.poll() is not None, timeout=20, what="the server to abort after XADD")
            mine = [e for e in entries() if e.get("task_id") == t["id"]]
            assert len(mine) == 1, mine
            c = {"id": mine[0]["conversation_id"]}
            assert psql("SELECT count(*) FROM agent_outbox", s.database_url).strip() == "1"
        s.proc.wait(timeout=10)
        s.extra_env.pop(hook)
        s.start()
        wait_for(lambda: _xlen_for(c["id"]) >= 1, what="the entry after restart")
        time.sleep(1.5)  # a second relay pass or trigger replay would show up by now
        assert _xlen_for(c["id"]) == 1
        assert len(conversations(s.admin(), p["id"])) == 1
        assert psql("SELECT count(*) FROM agent_outbox", s.database_url).strip() == "0"
    finally:
        _teardown_server(s, dbname)


def test_replay_after_restart_creates_nothing_new(srv, adm):
    p = new_project(adm)
    a = new_agent(adm, p["id"])
    t = new_task(adm, p["id"], assignee_ids=[a["member_id"]])
    c = wait_for(lambda: conversations(adm, p["id"], task_id=t["id"]), what="conversation")[0]
    wait_for(lambda: entries(c["id"]), what="entry")
    # Rewind the trigger subscription to the start of the log and restart.
    srv.stop()
    psql("UPDATE checkpoints SET last_tx = 0, last_pos = 0 WHERE name = 'agent_triggers'", db_url(srv))
    srv.start()
    time.sleep(2.0)
    assert psql("SELECT last_pos > 0 FROM checkpoints WHERE name = 'agent_triggers'", db_url(srv)).strip() == "t"
    assert len(conversations(srv.admin(), p["id"])) == 1
    assert len(entries(c["id"])) == 1

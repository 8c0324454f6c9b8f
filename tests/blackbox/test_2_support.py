"""Shared helpers for the task / sprint / view / activity black-box tests (test_2*.py).

This module holds no tests; the test_2x files import from it."""

from __future__ import annotations

import json
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

from conftest import Client, describe, err, no_content, ok

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")

TYPE_FIELDS = {"id", "project_id", "name", "is_default", "is_system", "created_at", "updated_at"}
STATUS_FIELDS = {"id", "project_id", "name", "position", "category", "is_default", "created_at", "updated_at"}
FIELD_FIELDS = {"id", "project_id", "field_key", "display_name", "field_type", "options", "is_required",
                "created_at", "updated_at"}
TASK_FIELDS = {"id", "project_id", "task_number", "title", "importance", "assignee_ids", "custom_fields", "tags",
               "version", "created_at", "updated_at"}
SPRINT_FIELDS = {"id", "project_id", "name", "status", "created_at", "updated_at"}
VIEW_FIELDS = {"id", "project_id", "name", "view_type", "config", "position", "created_at", "updated_at"}
ACTIVITY_FIELDS = {"id", "task_id", "actor_id", "actor_name", "actor_username", "activity_type", "content",
                   "created_at", "updated_at"}


def P(pid: str, path: str = "") -> str:
    return f"/projects/{pid}{path}"


def blocks(*texts: str) -> list:
    """A BlockNote document: one paragraph per text."""
    return [
        {
            "id": f"blk-{secrets.token_hex(3)}",
            "type": "paragraph",
            "props": {"textColor": "default", "backgroundColor": "default", "textAlignment": "left"},
            "content": [{"type": "text", "text": t, "styles": {}}],
            "children": [],
        }
        for t in texts
    ]


def block_texts(doc) -> list[str]:
    out = []
    for b in doc or []:
        for inline in b.get("content") or []:
            if isinstance(inline, dict) and inline.get("type") == "text":
                out.append(inline.get("text"))
    return out


def items(resp, status: int = 200) -> list:
    data = ok(resp, status)
    assert isinstance(data, dict) and isinstance(data.get("items"), list), "expected {items:[...]}" + describe(resp)
    return data["items"]


# ----------------------------------------------------------------- configuration
def types_of(c: Client, pid: str) -> dict:
    return {t["name"]: t for t in items(c.get(P(pid, "/task-types")))}


def statuses_of(c: Client, pid: str) -> dict:
    return {s["name"]: s for s in items(c.get(P(pid, "/task-statuses")))}


def fields_of(c: Client, pid: str) -> dict:
    return {f["field_key"]: f for f in items(c.get(P(pid, "/custom-fields")))}


def create_field(c: Client, pid: str, key: str, field_type: str = "text", **kw) -> dict:
    body = {"field_key": key, "display_name": kw.pop("display_name", key.title()), "field_type": field_type}
    body.update(kw)
    return ok(c.post(P(pid, "/custom-fields"), json=body), 201)


# ----------------------------------------------------------------- members
def members_of(c: Client, pid: str) -> list:
    return ok(c.get(P(pid, "/members")))


def member_id(c: Client, pid: str, user_id: str) -> str:
    for m in members_of(c, pid):
        if m["user_id"] == user_id:
            return m["id"]
    raise AssertionError(f"user {user_id} is not a member of project {pid}")


def add_member(admin: Client, pid: str, user_id: str, role_name: str = "Editor") -> dict:
    roles = {r["role_name"]: r for r in ok(admin.get(P(pid, "/roles")))}
    return ok(admin.post(P(pid, "/members"), json={"user_id": user_id, "project_role_id": roles[role_name]["id"]}),
              201)


# ----------------------------------------------------------------- tasks
def create_task(c: Client, pid: str, title: str | None = None, **fields) -> dict:
    body = {"title": title or f"Task {secrets.token_hex(3)}"}
    body.update(fields)
    return ok(c.post(P(pid, "/tasks"), json=body), 201)


def get_task(c: Client, pid: str, tid: str, **params) -> dict:
    return ok(c.get(P(pid, f"/tasks/{tid}"), params=params or None))


def patch_task(c: Client, pid: str, tid: str, body: dict, **kw) -> dict:
    return ok(c.patch(P(pid, f"/tasks/{tid}"), json=body, **kw))


def list_page(c: Client, pid: str, **params) -> dict:
    r = c.get(P(pid, "/tasks"), params=params)
    data = ok(r)
    assert isinstance(data, dict) and isinstance(data.get("items"), list), describe(r)
    assert "next_cursor" in data and "page_size" in data, "list needs page_size and next_cursor" + describe(r)
    return data


def list_all(c: Client, pid: str, max_pages: int = 200, **params) -> list:
    """Walk next_cursor to the end; asserts no task is returned twice."""
    out, seen, cursor = [], set(), None
    for _ in range(max_pages):
        q = dict(params)
        if cursor:
            q["cursor"] = cursor
        data = list_page(c, pid, **q)
        for t in data["items"]:
            assert t["id"] not in seen, f"task {t['id']} returned twice while walking pages (params={params})"
            seen.add(t["id"])
            out.append(t)
        cursor = data["next_cursor"]
        if not cursor:
            return out
    raise AssertionError(f"more than {max_pages} pages (params={params}); next_cursor never became null")


def ids(tasks) -> set:
    return {t["id"] for t in tasks}


def activities(c: Client, pid: str, tid: str) -> list:
    return items(c.get(P(pid, f"/tasks/{tid}/activities")))


def updates(acts) -> list:
    return [a for a in acts if a["activity_type"] == "task.updated"]


def changes_by_field(activity) -> dict:
    ch = (activity.get("content") or {}).get("changes")
    assert isinstance(ch, list), f"task.updated without content.changes: {activity}"
    return {c["field"]: c for c in ch}


# ----------------------------------------------------------------- sprints / views
def create_sprint(c: Client, pid: str, name: str | None = None, **fields) -> dict:
    body = {"name": name or f"Sprint {secrets.token_hex(3)}"}
    body.update(fields)
    return ok(c.post(P(pid, "/sprints"), json=body), 201)


def views_of(c: Client, pid: str, context: str, sprint_id: str | None = None) -> list:
    params = {"context": context}
    if sprint_id:
        params["sprint_id"] = sprint_id
    return items(c.get(P(pid, "/views"), params=params))


# ----------------------------------------------------------------- misc
def clone(c: Client) -> Client:
    """A second HTTP session with the same credentials (for concurrent requests)."""
    n = Client(c.server)
    n.s.headers.update(c.s.headers)
    n.s.cookies.update(c.s.cookies)
    return n


def parallel(fns, workers: int = 20) -> list:
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futs = [ex.submit(f) for f in fns]
        return [f.result() for f in futs]


def strip_envelope(resp) -> object:
    body = resp.json()
    body.pop("request_id", None)
    return body


def rebuild_and_verify(srv) -> None:
    """Stop the server, rebuild every projection from the event log, verify, start again."""
    srv.stop()
    res = srv.cli("projections", "rebuild")
    assert res.returncode == 0, f"projections rebuild exited {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    res = srv.cli("projections", "verify")
    assert res.returncode == 0, f"projections verify exited {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    srv.start()


def jd(v) -> str:
    return json.dumps(v, sort_keys=True)


__all__ = [n for n in dir() if not n.startswith("_")] + ["err", "ok", "no_content", "describe"]

"""Issue 7 §1: live tables equal a replay of the log, whatever the input.

A seeded random generator builds sequences of commands over tasks, sprints, custom
fields, comments and the project, with edge values (dates at and beyond years
1-9999, sub-microsecond and offset timestamps, unicode, quotes, NUL, lone
surrogates, very large and tiny numbers, nulls). Every response must be a non-5xx
(with the envelope for errors); after each sequence `paca projections verify` must
exit 0, i.e. what the live projector wrote equals what a replay writes.

Bounded: PACA_PROP_SEQUENCES sequences (default 30) of PACA_PROP_LENGTH commands
(default 10), seed PACA_PROP_SEED (default fixed, so a failure reproduces).
"""

from __future__ import annotations

import json
import os
import random
import secrets

from conftest import describe, ok
from test_2_support import P, blocks, create_field
from test_3_support import SUB_MICRO, assert_error_envelope

SEED = int(os.environ.get("PACA_PROP_SEED", "20261202"))
SEQUENCES = int(os.environ.get("PACA_PROP_SEQUENCES", "30"))
LENGTH = int(os.environ.get("PACA_PROP_LENGTH", "10"))

STRINGS = [
    "", "plain", "Ünïcödé ✓ 日本語 עברית", "🚀👩‍👩‍👧‍👦", "e\u0301 combining", "\u200b\u202e\ufeff", "it's", '"quoted"',
    "back\\slash", "''; DROP TABLE tasks; --", "$$ $tag$", "%s %d {}", "\t\n\r", "a" * 5000, "nul\u0000byte",
    "lone \ud800 surrogate", "\U0010ffff", "null", "<script>alert(1)</script>",
]
DATES = ["0001-01-01", "9999-12-31", "2024-02-29", "2026-12-31", "0000-01-01", "+10000-01-01", "-0001-01-01",
         "-9999-01-01", "2026-13-01", None]
TIMESTAMPS = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", SUB_MICRO, "2026-06-01T12:00:00+14:00",
              "2026-06-01T12:00:00-12:00", "2026-06-01T12:00:00.5Z", "0000-01-01T00:00:00Z",
              "+10000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "0001-01-01", "9999-12-31", None]
NUMBERS = [0, -1, 1, 2 ** 31 - 1, -(2 ** 31), 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 64, 1e308, -1e308, 5e-324, 0.1, -0.0,
           1.5, None]


class Model:
    """What exists (ids only): the generator picks targets from here."""

    def __init__(self, pid):
        self.pid = pid
        self.tasks: list[str] = []
        self.sprints: list[str] = []
        self.fields: dict[str, str] = {}  # field_key -> field_type
        self.field_ids: dict[str, str] = {}
        self.comments: list[tuple[str, str]] = []


class Gen:
    def __init__(self, rng: random.Random, model: Model):
        self.r, self.m = rng, model

    def s(self):
        return self.r.choice(STRINGS)

    def maybe(self, p=0.5):
        return self.r.random() < p

    def custom_values(self):
        out = {}
        for key, ftype in self.r.sample(sorted(self.m.fields.items()), k=min(2, len(self.m.fields))):
            out[key] = {"text": self.s, "url": self.s, "number": lambda: self.r.choice(NUMBERS),
                        "date": lambda: self.r.choice(DATES), "boolean": lambda: self.r.choice([True, False, None]),
                        "select": lambda: self.r.choice(["a", "b", None, self.s()])}[ftype]()
        return out

    def task_fields(self, patch=False):
        body = {}
        if not patch or self.maybe():
            body["title"] = self.s() or "t"
        if self.maybe():
            body["description"] = None if self.maybe(0.2) else blocks(self.s(), self.s())
        for k in ("start_date", "due_date"):
            if self.maybe(0.6):
                body[k] = self.r.choice(DATES)
        if self.maybe():
            body["importance"] = self.r.choice([n for n in NUMBERS if n is not None] + [3])
        if self.maybe():
            body["story_points"] = self.r.choice(NUMBERS)
        if self.maybe():
            body["tags"] = None if (patch and self.maybe(0.2)) else [self.s() for _ in range(self.r.randint(0, 3))]
        if self.m.fields and self.maybe():
            body["custom_fields"] = self.custom_values()
        if self.m.sprints and self.maybe(0.3):
            body["sprint_id"] = None if self.maybe(0.3) else self.r.choice(self.m.sprints)
        return body

    def sprint_fields(self, patch=False):
        body = {}
        if not patch or self.maybe():
            body["name"] = self.s() or "s"
        for k in ("start_date", "end_date"):
            if self.maybe(0.7):
                body[k] = self.r.choice(TIMESTAMPS)
        if self.maybe():
            body["goal"] = None if self.maybe(0.3) else self.s()
        if self.maybe(0.2):
            body["status"] = self.r.choice(["planned", "active"])
        return body

    def command(self):
        m, pid = self.m, self.m.pid
        choices = ["create_task", "create_sprint", "patch_project"]
        if len(m.fields) < 6:
            choices.append("create_field")
        if m.tasks:
            choices += ["patch_task"] * 3 + ["comment", "delete_task"]
        if m.sprints:
            choices += ["patch_sprint"] * 2
        if m.comments:
            choices += ["edit_comment", "delete_comment"]
        if m.field_ids:
            choices.append("patch_field")
        op = self.r.choice(choices)
        if op == "create_task":
            return op, "POST", P(pid, "/tasks"), self.task_fields()
        if op == "patch_task":
            return op, "PATCH", P(pid, f"/tasks/{self.r.choice(m.tasks)}"), self.task_fields(patch=True)
        if op == "delete_task":
            return op, "DELETE", P(pid, f"/tasks/{self.r.choice(m.tasks)}"), None
        if op == "create_sprint":
            return op, "POST", P(pid, "/sprints"), self.sprint_fields()
        if op == "patch_sprint":
            return op, "PATCH", P(pid, f"/sprints/{self.r.choice(m.sprints)}"), self.sprint_fields(patch=True)
        if op == "create_field":
            ftype = self.r.choice(["text", "number", "date", "select", "boolean", "url"])
            body = {"field_key": f"f{len(m.fields)}_{secrets.token_hex(2)}", "display_name": self.s() or "F",
                    "field_type": ftype}
            if ftype == "select":
                body["options"] = [{"value": "a"}, {"value": "b"}, {"value": self.s() or "c"}]
            return op, "POST", P(pid, "/custom-fields"), body
        if op == "patch_field":
            return op, "PATCH", P(pid, f"/custom-fields/{self.r.choice(sorted(m.field_ids.values()))}"), \
                {"display_name": self.s() or "G"}
        if op == "comment":
            return op, "POST", P(pid, f"/tasks/{self.r.choice(m.tasks)}/activities/comments"), \
                {"content": blocks(self.s(), self.s())}
        if op == "edit_comment":
            tid, cid = self.r.choice(m.comments)
            return op, "PATCH", P(pid, f"/tasks/{tid}/activities/comments/{cid}"), {"content": blocks(self.s())}
        if op == "delete_comment":
            tid, cid = self.r.choice(m.comments)
            return op, "DELETE", P(pid, f"/tasks/{tid}/activities/comments/{cid}"), None
        if op == "patch_project":
            body = {"description": self.s()}
            if self.maybe():
                body["settings"] = {self.s(): self.r.choice([self.s(), self.r.choice(NUMBERS), None, [1, "x"]])}
            return op, "PATCH", f"/projects/{pid}", body
        raise AssertionError(op)

    def observe(self, op, path, body, resp):
        """Keep the model in step with what the server accepted."""
        if resp.status_code >= 300:
            return
        m = self.m
        data = resp.json().get("data") if resp.content else None
        if op == "create_task":
            m.tasks.append(data["id"])
        elif op == "delete_task":
            m.tasks.remove(path.rsplit("/", 1)[1])
            m.comments = [c for c in m.comments if c[0] != path.rsplit("/", 1)[1]]
        elif op == "create_sprint":
            m.sprints.append(data["id"])
        elif op == "create_field":
            m.fields[data["field_key"]] = data["field_type"]
            m.field_ids[data["field_key"]] = data["id"]
        elif op == "comment":
            m.comments.append((path.split("/tasks/")[1].split("/")[0], data["id"]))
        elif op == "delete_comment":
            cid = path.rsplit("/", 1)[1]
            m.comments = [c for c in m.comments if c[1] != cid]


def brief(value):
    """A body for the failure log, with long strings shortened."""
    if isinstance(value, str):
        return value if len(value) <= 40 else f"{value[:20]}…<{len(value)} chars>"
    if isinstance(value, list):
        return [brief(v) for v in value]
    if isinstance(value, dict):
        return {brief(k): brief(v) for k, v in value.items()}
    return value


def test_live_tables_equal_a_replay_after_random_edge_value_sequences(module_server):
    srv = module_server
    admin = srv.admin()
    pid = ok(admin.post("/projects", json={"name": "Property " + secrets.token_hex(3)}), 201)["id"]
    model = Model(pid)
    for key, ftype in (("num", "number"), ("txt", "text"), ("day", "date")):
        f = create_field(admin, pid, key, ftype)
        model.fields[f["field_key"]], model.field_ids[f["field_key"]] = ftype, f["id"]
    rng = random.Random(SEED)
    gen = Gen(rng, model)
    for seq in range(SEQUENCES):
        log = []
        for _ in range(LENGTH):
            op, method, path, body = gen.command()
            kw = {"data": json.dumps(body).encode(), "headers": {"Content-Type": "application/json"}} \
                if body is not None else {}
            r = admin.request(method, path, **kw)
            log.append(f"{op}: {method} {path} {json.dumps(brief(body)) if body is not None else ''} -> "
                       f"{r.status_code} {r.text[:200]}")
            ctx = f"\nseed {SEED}, sequence {seq}; commands so far:\n  " + "\n  ".join(log)
            assert r.status_code < 500, "a client input got a 5xx" + describe(r) + ctx
            if r.status_code >= 400:
                assert_error_envelope(r, op)
            gen.observe(op, path, body, r)
        res = srv.cli("projections", "verify", timeout=180)
        assert res.returncode == 0, (
            f"`paca projections verify` exited {res.returncode} after sequence {seq} (seed {SEED}):\n"
            f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}\ncommands of this sequence:\n  " + "\n  ".join(log))

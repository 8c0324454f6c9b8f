"""The event log seen through the CLI: `paca events tail --json`, and projection
rebuild/verify, after a mixed history made through the HTTP API (own database)."""

import json
from collections import defaultdict

import pytest
import requests

from conftest import api_key_client, create_user, err, new_password, no_content, ok

EVENT_FIELDS = {"event_type", "stream_id", "version", "global_position", "payload", "metadata"}


def tail_events(srv):
    res = srv.cli("events", "tail", "--json", "--limit", "1000")
    assert res.returncode == 0, f"`paca events tail` exited {res.returncode}\nstdout:{res.stdout[-2000:]}\nstderr:{res.stderr[-2000:]}"
    events = []
    for n, line in enumerate(res.stdout.splitlines(), 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            raise AssertionError(f"stdout line {n} of `events tail --json` is not JSON: {line[:300]!r}")
        assert isinstance(ev, dict), line
        events.append(ev)
    return events, res.stdout + res.stderr


def actor_of(ev):
    md = ev.get("metadata") or {}
    actor = md.get("actor") or {}
    return actor.get("user_id") if isinstance(actor, dict) else None


def mentions(ev, ident):
    return ident in str(ev.get("stream_id")) or ident in json.dumps(ev.get("payload"))


@pytest.fixture(scope="module")
def history(module_server):
    """A mixed history of mutations; returns what was done, by whom, and every secret."""
    srv = module_server
    h = {"tokens": set()}
    admin = srv.admin()
    h["admin_id"] = admin_id = admin.me()["id"]

    # users: created by admin, password changed + renamed by themselves
    u = create_user(srv, admin, prefix="hist")
    ok(u.client.patch("/users/me", json={"full_name": "History User"}))
    h["u"] = u
    v = create_user(srv, admin, change_password=False, prefix="gone")
    no_content(admin.delete(f"/admin/users/{v.id}"))
    h["v"] = v

    # global role created and assigned by admin
    cr = ok(admin.post("/admin/global-roles", json={"name": "HIST_CREATOR", "permissions": ["projects.create"]}), 201)
    ok(admin.put(f"/admin/users/{u.id}/global-roles", json={"role_ids": [cr["id"]]}))
    tmp_role = ok(admin.post("/admin/global-roles", json={"name": "HIST_TMP", "permissions": {"users.read": True}}),
                  201)
    ok(admin.patch(f"/admin/global-roles/{tmp_role['id']}", json={"name": "HIST_TMP2"}))
    ok(admin.delete(f"/admin/global-roles/{tmp_role['id']}"))
    h["cr"], h["tmp_role"] = cr, tmp_role

    # projects, roles, members
    uc = srv.login(u.username, u.password)
    pu = ok(uc.post("/projects", json={"name": "User Project"}), 201)
    pa = ok(admin.post("/projects", json={"name": "Admin Project", "is_public": True}), 201)
    ok(admin.patch(f"/projects/{pa['id']}", json={"description": "patched"}))
    roles = {r["role_name"]: r for r in ok(admin.get(f"/projects/{pa['id']}/roles"))}
    qa = ok(admin.post(f"/projects/{pa['id']}/roles", json={"role_name": "QA", "permissions": {"tasks.read": True}}),
            201)
    ok(admin.patch(f"/projects/{pa['id']}/roles/{qa['id']}", json={"role_name": "QA2"}))
    m = ok(admin.post(f"/projects/{pa['id']}/members", json={"user_id": u.id,
                                                             "project_role_id": roles["Viewer"]["id"]}), 201)
    ok(admin.patch(f"/projects/{pa['id']}/members/{m['id']}", json={"project_role_id": qa["id"]}))
    ok(admin.delete(f"/projects/{pa['id']}/members/{m['id']}"))
    ok(admin.delete(f"/projects/{pa['id']}/roles/{qa['id']}"))
    ok(admin.post(f"/projects/{pa['id']}/members", json={"user_id": u.id,
                                                         "project_role_id": roles["Editor"]["id"]}), 201)
    h.update(pu=pu, pa=pa, qa=qa, member=m)

    # API keys: one used to create (and then delete) a project, then revoked
    k = ok(admin.post("/users/me/api-keys", json={"name": "hist key"}), 201)
    srv.secrets.add(k["key"])
    pk = ok(api_key_client(srv, k["key"]).post("/projects", json={"name": "Key Project"}), 201)
    ok(api_key_client(srv, k["key"], "apikey").patch(f"/projects/{pk['id']}", json={"description": "via key"}))
    ok(admin.delete(f"/projects/{pk['id']}"))
    no_content(admin.delete(f"/users/me/api-keys/{k['id']}"))
    uk = ok(uc.post("/users/me/api-keys", json={"name": "user key"}), 201)
    srv.secrets.add(uk["key"])
    ok(api_key_client(srv, uk["key"]).get("/users/me"))
    h.update(k=k, pk=pk, uk=uk)

    # admin resets u's password; u changes it again
    reset = new_password()
    srv.secrets.add(reset)
    no_content(admin.patch(f"/admin/users/{u.id}/password", json={"new_password": reset}))
    c = srv.login(u.username, reset)
    final = new_password()
    srv.secrets.add(final)
    no_content(c.patch("/users/me/password", json={"current_password": reset, "new_password": final}))
    u.password = final

    # failed logins, a refresh and a logout
    wrong = "Wrong-" + new_password()
    srv.secrets.add(wrong)
    err(requests.post(srv.url("/auth/login"), json={"username": u.username, "password": wrong}, timeout=30), 401)
    err(requests.post(srv.url("/auth/login"), json={"username": "admin", "password": wrong}, timeout=30), 401)
    s = srv.admin()
    h["tokens"] |= {s.access_token, s.refresh_token}
    ok(s.post("/auth/refresh"))
    h["tokens"] |= {s.access_token, s.refresh_token}
    ok(s.post("/auth/logout"))
    h["tokens"] |= {admin.access_token, admin.refresh_token, c.access_token, c.refresh_token}
    h["tokens"].discard(None)
    return h


def test_events_tail_format(module_server, history):
    events, _ = tail_events(module_server)
    assert 0 < len(events) < 1000, len(events)
    positions = []
    versions = defaultdict(list)
    for ev in events:
        assert EVENT_FIELDS <= set(ev), f"event lacks fields {EVENT_FIELDS - set(ev)}: {ev}"
        assert isinstance(ev["event_type"], str) and ev["event_type"]
        assert isinstance(ev["global_position"], int) and isinstance(ev["version"], int)
        assert isinstance(ev["metadata"], dict)
        positions.append(ev["global_position"])
        versions[str(ev["stream_id"])].append(ev["version"])
    assert len(set(positions)) == len(positions), "duplicate global positions"
    for stream, vs in versions.items():
        vs = sorted(vs)
        assert vs == list(range(vs[0], vs[0] + len(vs))), f"stream {stream} has version gaps: {vs}"


def test_every_mutation_is_logged_with_its_actor(module_server, history):
    events, _ = tail_events(module_server)
    admin_id, u = history["admin_id"], history["u"]

    def count(ident, actor, also=None):
        return sum(
            1 for ev in events
            if mentions(ev, ident) and actor_of(ev) == actor and (also is None or any(mentions(ev, a) for a in also))
        )

    expectations = [
        # (what, id, actor, minimum number of events)
        ("user u: created, role assigned, password reset (by admin)", u.id, admin_id, 3),
        ("user u: password changed twice, renamed (by u)", u.id, u.id, 3),
        ("user v: created and deleted", history["v"].id, admin_id, 2),
        ("global role HIST_CREATOR created", history["cr"]["id"], admin_id, 1),
        ("global role HIST_TMP created, renamed, deleted", history["tmp_role"]["id"], admin_id, 3),
        ("project created by u", history["pu"]["id"], u.id, 1),
        ("admin project created and patched", history["pa"]["id"], admin_id, 2),
        ("project role QA created, renamed, deleted", history["qa"]["id"], admin_id, 3),
        ("project created, patched (via API keys) and deleted", history["pk"]["id"], admin_id, 3),
        ("admin API key created and revoked", history["k"]["id"], admin_id, 2),
        ("u's API key created", history["uk"]["id"], u.id, 1),
    ]
    missing = []
    for what, ident, actor, n in expectations:
        got = count(ident, actor)
        if got < n:
            missing.append(f"{what}: expected >= {n} events mentioning {ident} by actor {actor}, found {got}")
    # membership: added, role changed, removed, added again -> 4 events naming the member/user in project pa
    got = count(history["pa"]["id"], admin_id, also=[u.id, history["member"]["id"]])
    if got < 4:
        missing.append(f"membership of u in pa: expected >= 4 events by admin, found {got}")
    types = sorted({ev["event_type"] for ev in events})
    assert not missing, "\n".join(missing) + f"\nevent types seen: {types}"


def test_no_secret_in_event_log(module_server, history):
    _, output = tail_events(module_server)
    leaked = [s for s in module_server.secrets if s and s in output]
    assert not leaked, f"{len(leaked)} secret(s) (passwords / raw API keys) appear in `events tail` output"
    assert "$argon2" not in output, "something looking like an argon2 hash appears in the event log"
    assert module_server.jwt_secret not in output, "JWT_SECRET appears in the event log"


def test_no_session_token_in_event_log(module_server, history):
    _, output = tail_events(module_server)
    leaked = [t for t in history["tokens"] if t in output]
    assert not leaked, f"{len(leaked)} raw access/refresh token(s) appear in `events tail` output"


def test_projections_rebuild_and_verify(module_server, history):
    srv = module_server
    u = history["u"]

    def snapshot():
        admin = srv.admin()
        uc = srv.login(u.username, u.password)
        pa, pu = history["pa"]["id"], history["pu"]["id"]
        reqs = [
            (admin, "/users/me"), (uc, "/users/me"),
            (admin, "/users/me/global-permissions"), (uc, "/users/me/global-permissions"),
            (admin, "/projects?page=1&page_size=100"), (uc, "/projects?page=1&page_size=100"),
            (admin, f"/projects/{pa}"), (admin, f"/projects/{pu}"),
            (admin, f"/projects/{pa}/members"), (admin, f"/projects/{pa}/roles"),
            (admin, f"/projects/{pu}/members"), (uc, f"/projects/{pa}/members/me/permissions"),
            (admin, "/admin/users?page=1&page_size=100"), (admin, f"/admin/users/{u.id}"),
            (admin, "/admin/global-roles"),
            (admin, "/users/me/api-keys"), (uc, "/users/me/api-keys"),
        ]
        out = {}
        for who, path in reqs:
            r = who.get(path)
            body = ok(r)
            out[("admin" if who is admin else "u", path)] = body
        # gone things stay gone
        err(admin.get(f"/projects/{history['pk']['id']}"), 404, "PROJECT_NOT_FOUND")
        err(admin.get(f"/admin/users/{history['v'].id}"), 404, "USER_NOT_FOUND")
        return out

    before = snapshot()
    srv.stop()
    res = srv.cli("projections", "rebuild")
    assert res.returncode == 0, f"projections rebuild exited {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    res = srv.cli("projections", "verify")
    assert res.returncode == 0, f"projections verify exited {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    srv.start()
    after = snapshot()
    for key in before:
        assert after[key] == before[key], f"GET {key} changed after rebuild:\nbefore={before[key]}\nafter={after[key]}"
    # and the rebuilt state accepts new writes
    admin = srv.admin()
    p = ok(admin.post("/projects", json={"name": "After Rebuild"}), 201)
    assert ok(admin.get(f"/projects/{p['id']}"))["task_id_prefix"] == "AR"
    res = srv.cli("projections", "verify")
    assert res.returncode == 0, f"projections verify after new writes exited {res.returncode}\n{res.stderr[-2000:]}"


def test_no_plaintext_secret_in_database(module_server, history):
    """Beyond the event log: no password or raw API key is stored anywhere in the database."""
    import subprocess

    res = subprocess.run(["pg_dump", "--data-only", module_server.database_url], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    leaked = [s for s in module_server.secrets if s and s in res.stdout]
    assert not leaked, f"{len(leaked)} plaintext password(s)/raw API key(s) stored in the database"

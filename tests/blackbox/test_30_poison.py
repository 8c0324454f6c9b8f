"""Issue 7 §1: no input can poison the log.

- Values PostgreSQL cannot store (years 0, negative, five digits) are refused with
  400 VALIDATION_ERROR naming the field before any event exists.
- Sub-microsecond timestamps are normalised to microseconds before they enter an
  event, so live tables and a replay agree.
- Edge values that are valid (0001-01-01, 9999-12-31, unicode, quotes, large
  numbers, nulls) replay exactly: `projections verify` and `rebuild` exit 0 and the
  API answers the same after a rebuild.
- A log that already holds poisoned events (written by an older build) rebuilds,
  verifies and starts; a projector failure on start names the event.
- `projections rebuild` / `verify` never print user data at the default log level.
"""

import json
import re
import secrets
import uuid
from datetime import datetime, timezone

import pytest

from conftest import create_user, describe, err, ok, psql
from test_2_support import P, blocks, clone, create_field, create_sprint, create_task, list_all, parallel, views_of
from test_3_support import (POISONED_TIMESTAMPS, SUB_MICRO, body_of, cli_ok, decode_cursor, encode_cursor,
                            event_count, events_of, force_startup_rebuild, rebuild_ok, validation_error, verify_ok)

SPRINT_POISON = POISONED_TIMESTAMPS + ["+10000-01-01", "-0001-01-01", "0000-01-01"]
TASK_POISON = ["-9999-01-01", "0000-01-01", "+10000-01-01", "-0001-01-01"]


@pytest.fixture(scope="module")
def srv(module_server):
    return module_server


@pytest.fixture(scope="module")
def admin7(srv):
    return srv.admin()


@pytest.fixture(scope="module")
def project7(admin7):
    return ok(admin7.post("/projects", json={"name": "Poison " + secrets.token_hex(3)}), 201)


@pytest.fixture(scope="module")
def make_user7(srv, admin7):
    def _make(prefix="user"):
        return create_user(srv, admin7, prefix=prefix)

    return _make


# --------------------------------------------------------------------------- helpers
_TS = re.compile(r"^([+-]?\d{4,6})-(\d\d)-(\d\d)(?:T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?)?$")


def parse_ts(raw: str) -> tuple[datetime, int]:
    """An RFC 3339 timestamp or a date as (UTC datetime to the second, nanoseconds)."""
    m = _TS.match(raw)
    assert m, f"not a timestamp: {raw!r}"
    year, mo, d, hh, mm, ss, frac, tz = m.groups()
    dt = datetime(int(year), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0), tzinfo=timezone.utc)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        dt = dt - sign * (datetime(2000, 1, 1, int(tz[1:3]), int(tz[4:6])) - datetime(2000, 1, 1))
    nanos = int((frac or "0").ljust(9, "0")[:9])
    return dt, nanos


def fraction_digits(raw: str) -> int:
    m = re.search(r"\.(\d+)", raw)
    return len(m.group(1)) if m else 0


def in_year_range(raw) -> bool:
    if raw is None:
        return True
    m = re.match(r"^(\d{4})-", raw)
    return bool(m) and 1 <= int(m.group(1)) <= 9999


# --------------------------------------------------------------------------- refused values
@pytest.mark.parametrize("field", ["start_date", "end_date"])
@pytest.mark.parametrize("value", SPRINT_POISON)
def test_sprint_create_refuses_out_of_range_dates(srv, admin7, project7, field, value):
    pid = project7["id"]
    before = event_count(srv)
    r = admin7.post(P(pid, "/sprints"), json={"name": "poisoned", field: value})
    validation_error(r, field)
    assert event_count(srv) == before, "a refused sprint must append no event"
    assert "poisoned" not in {s["name"] for s in ok(admin7.get(P(pid, "/sprints")))["items"]}


@pytest.mark.parametrize("field", ["start_date", "end_date"])
@pytest.mark.parametrize("value", SPRINT_POISON)
def test_sprint_patch_refuses_out_of_range_dates(srv, admin7, project7, field, value):
    pid = project7["id"]
    s = create_sprint(admin7, pid, "patched " + secrets.token_hex(2), start_date="2026-03-02", end_date="2026-03-13")
    before = event_count(srv)
    r = admin7.patch(P(pid, f"/sprints/{s['id']}"), json={field: value})
    validation_error(r, field)
    assert event_count(srv) == before, "a refused sprint change must append no event"
    assert ok(admin7.get(P(pid, f"/sprints/{s['id']}"))) == s


@pytest.mark.parametrize("value", ["+10000-01-01T00:00:00Z", "+10000-01-01", "-0001-01-01T00:00:00Z",
                                   "0000-01-01T00:00:00Z"])
def test_api_key_refuses_out_of_range_expiry(srv, make_user7, value):
    # any logged-in user could poison the log through this route
    u = make_user7(prefix="keypoison")
    keys_before = ok(u.client.get("/users/me/api-keys"))
    before = event_count(srv)
    r = u.client.post("/users/me/api-keys", json={"name": "k", "expires_at": value})
    if value.startswith("+"):
        validation_error(r, "expires_at")
    else:
        err(r, 400)  # also in the past, which is refused too: either reason will do
    assert event_count(srv) == before, "a refused API key must append no event"
    assert ok(u.client.get("/users/me/api-keys")) == keys_before


@pytest.mark.parametrize("field", ["start_date", "due_date"])
@pytest.mark.parametrize("value", TASK_POISON)
def test_task_create_refuses_out_of_range_dates(srv, admin7, project7, field, value):
    pid = project7["id"]
    before = event_count(srv)
    validation_error(admin7.post(P(pid, "/tasks"), json={"title": "poisoned task", field: value}), field)
    assert event_count(srv) == before, "a refused task must append no event"


@pytest.mark.parametrize("field", ["start_date", "due_date"])
@pytest.mark.parametrize("value", TASK_POISON)
def test_task_patch_refuses_out_of_range_dates(srv, admin7, project7, field, value):
    pid = project7["id"]
    t = create_task(admin7, pid, "dated", start_date="2026-03-02", due_date="2026-03-13")
    before = event_count(srv)
    validation_error(admin7.patch(P(pid, f"/tasks/{t['id']}"), json={field: value}), field)
    assert event_count(srv) == before, "a refused task change must append no event"
    assert ok(admin7.get(P(pid, f"/tasks/{t['id']}"))) == t


@pytest.mark.parametrize("ca", POISONED_TIMESTAMPS + ["0000-01-01T00:00:00+00:00"])
def test_task_cursor_with_out_of_range_timestamp_is_400(admin7, project7, ca):
    """A cursor is the server's own opaque token; one that decodes to a timestamp
    PostgreSQL cannot hold is a bad cursor (400, like any other bad cursor), not a 500.
    The real cursor is JSON {"ca": created_at, "id": task id} in unpadded base64url."""
    pid = project7["id"]
    for _ in range(3):
        create_task(admin7, pid, "for cursor")
    page = ok(admin7.get(P(pid, "/tasks"), params={"page_size": 1}))
    real = decode_cursor(page["next_cursor"])
    assert set(real) >= {"ca", "id"}, real
    forged = encode_cursor(dict(real, ca=ca))
    r = admin7.get(P(pid, "/tasks"), params={"cursor": forged})
    err(r, 400, "BAD_REQUEST")


# --------------------------------------------------------------------------- precision
def test_sub_microsecond_timestamps_are_normalised_before_the_event(restartable_server):
    # its own database: refused-value tests above may have left poisoned events in the
    # module's log when run against a build that still accepts them
    srv = restartable_server
    admin7 = srv.admin()
    pid = ok(admin7.post("/projects", json={"name": "Precision"}), 201)["id"]
    s = create_sprint(admin7, pid, "precise", start_date=SUB_MICRO, end_date="2026-02-01T12:00:00.123456789Z")
    patched = ok(admin7.patch(P(pid, f"/sprints/{s['id']}"), json={"end_date": "2026-03-01T00:00:00.999999999Z"}))
    u = create_user(srv, admin7, prefix="precise")
    key = ok(u.client.post("/users/me/api-keys", json={"name": "precise", "expires_at": "2030-01-01T00:00:00.123456789Z"}),
             201)

    sprint_events = events_of(srv, f"stream_id = '{s['id']}' AND event_type LIKE 'sprint.%'")
    assert sprint_events, "no sprint events found"
    def sides(ev, k):
        # created events carry the field; updated events carry {field, old, new} changes
        p = ev["payload"]
        if isinstance(p.get(k), str):
            yield p[k]
        for c in p.get("changes") or []:
            if c.get("field") == k and isinstance(c.get("new"), str):
                yield c["new"]

    stored = [v for ev in sprint_events for k in ("start_date", "end_date") for v in sides(ev, k)]
    key_events = events_of(srv, "event_type = 'user.api_key_created' AND payload->>'key_id' = '%s'" % key["id"])
    assert len(key_events) == 1, key_events
    stored.append(key_events[0]["payload"]["expires_at"])
    for raw in stored:
        assert fraction_digits(raw) <= 6, f"event payload holds sub-microsecond precision: {raw!r} (normalise first)"

    # what the API answers is exactly what the event holds
    assert parse_ts(patched["start_date"]) == parse_ts(sprint_events[0]["payload"]["start_date"])
    last_end = [v for ev in sprint_events for v in sides(ev, "end_date")][-1]
    assert parse_ts(patched["end_date"]) == parse_ts(last_end)
    assert parse_ts(key["expires_at"]) == parse_ts(key_events[0]["payload"]["expires_at"])

    before_sprint = body_of(admin7.get(P(pid, f"/sprints/{s['id']}")))
    before_keys = body_of(u.client.get("/users/me/api-keys"))
    verify_ok(srv)
    rebuild_ok(srv)
    verify_ok(srv)
    assert body_of(admin7.get(P(pid, f"/sprints/{s['id']}"))) == before_sprint, "a rebuild changed the sprint"
    assert body_of(u.client.get("/users/me/api-keys")) == before_keys, "a rebuild changed the API keys"


# --------------------------------------------------------------------------- edge values replay exactly
UNICODE = "Ünïcödé ✓ 🚀 日本語 עברית \u200b zero-width \u202e rtl"
QUOTES = "it's \"quoted\" \\ back\\slash '' $$ $tag$ ; DROP TABLE tasks; --"


def test_edge_values_replay_exactly(restartable_server):
    srv = restartable_server  # own database (see above)
    a = srv.admin()
    p = ok(a.post("/projects", json={"name": "Edge " + UNICODE[:20] + secrets.token_hex(2),
                                    "description": QUOTES,
                                    "settings": {"k'ey": "v\"al", "ü": [1, None, 1e308], "nested": {"a": None}}}), 201)
    pid = p["id"]
    s_min = create_sprint(a, pid, "min " + QUOTES[:30], start_date="0001-01-01T00:00:00Z",
                          end_date="9999-12-31T23:59:59.999999Z", goal=UNICODE)
    s_day = create_sprint(a, pid, "days", start_date="0001-01-01", end_date="9999-12-31")
    ok(a.patch(P(pid, f"/sprints/{s_day['id']}"), json={"goal": None, "start_date": None}))

    num = create_field(a, pid, "num_" + secrets.token_hex(2), "number")
    txt = create_field(a, pid, "txt_" + secrets.token_hex(2), "text")
    day = create_field(a, pid, "day_" + secrets.token_hex(2), "date")

    t1 = create_task(a, pid, QUOTES, description=blocks(UNICODE, QUOTES), start_date="0001-01-01",
                     due_date="9999-12-31", tags=[UNICODE, QUOTES, "plain"],
                     custom_fields={txt["field_key"]: QUOTES, day["field_key"]: "0001-01-01"})
    t2 = create_task(a, pid, UNICODE, sprint_id=s_min["id"])
    ok(a.patch(P(pid, f"/tasks/{t2['id']}"), json={"description": None, "start_date": "9999-12-31",
                                                    "due_date": None, "tags": None}))
    ok(a.post(P(pid, f"/tasks/{t1['id']}/activities/comments"), json={"content": blocks(QUOTES, UNICODE)}), 201)

    # very large and very small numbers: each is stored (and must then replay exactly),
    # except a negative importance, which is refused
    for body in ({"importance": 2 ** 31 - 1}, {"importance": 2 ** 63 - 1},
                 {"story_points": 2 ** 31 - 1}, {"story_points": 2 ** 53 + 1},
                 {"custom_fields": {num["field_key"]: 1e308}}, {"custom_fields": {num["field_key"]: -1.5e-300}},
                 {"custom_fields": {num["field_key"]: 2 ** 53 + 1}}, {"custom_fields": {num["field_key"]: 2 ** 64}},
                 {"custom_fields": {num["field_key"]: 0.1}}, {"custom_fields": {num["field_key"]: None}},
                 # the largest doubles and the smallest subnormal: PostgreSQL prints them as
                 # 309-digit integers / 324-place decimals, which must read back (found by
                 # schemathesis: the append's own read-back of the event panicked)
                 {"custom_fields": {num["field_key"]: 1.7976931348623157e308}},
                 {"custom_fields": {num["field_key"]: -1.7976931348623157e308}},
                 {"custom_fields": {num["field_key"]: 5e-324}},
                 {"custom_fields": {txt["field_key"]: None}}):
        r = a.patch(P(pid, f"/tasks/{t1['id']}"), json=body)
        assert r.status_code == 200, f"PATCH task {body}" + describe(r)
    err(a.patch(P(pid, f"/tasks/{t1['id']}"), json={"importance": -(2 ** 31)}), 400, "BAD_REQUEST")
    view = views_of(a, pid, "backlog")[0]["id"]
    for position in (1.7976931348623157e308, 5e-324, 1e308):
        r = a.put(P(pid, f"/views/{view}/task-positions/{t2['id']}"), json={"position": position})
        assert r.status_code == 204, f"position {position}" + describe(r)
    err(a.patch(P(pid, f"/sprints/{s_min['id']}"), json={"name": "x" * 10_000}), 400, "SPRINT_NAME_INVALID")

    paths = [f"/projects/{pid}", P(pid, "/sprints"), P(pid, f"/sprints/{s_min['id']}"),
             P(pid, f"/tasks/{t1['id']}"), P(pid, f"/tasks/{t2['id']}"), P(pid, "/custom-fields"),
             P(pid, f"/tasks/{t1['id']}/activities"), P(pid, "/tasks?page_size=200"),
             P(pid, f"/tasks?view_id={view}&page_size=200")]

    def snapshot():
        out = {}
        for path in paths:
            r = a.get(path)
            ok(r)
            out[path] = body_of(r)
        return out

    before = snapshot()
    verify_ok(srv)
    rebuild_ok(srv)
    verify_ok(srv)
    after = snapshot()
    for path in paths:
        assert after[path] == before[path], f"GET {path} changed after a rebuild"


# --------------------------------------------------------------------------- logs that already hold poisoned events
def _clone_sprint_created(srv, template_pos: int, overrides: dict) -> str:
    """Append (with SQL, as an older build would have) a sprint.created event copied
    from the one at `template_pos`, for a new sprint, with payload keys overridden.
    Older builds wrote schema version 1 (no value normalisation)."""

    sid = str(uuid.uuid4())
    psql(
        "INSERT INTO events (stream_type, stream_id, version, event_id, event_type, schema_version, project_id,"
        " payload, metadata)"
        f" SELECT stream_type, '{sid}'::uuid, 1, gen_random_uuid(), event_type, 1, project_id,"
        f" payload || '{json.dumps(overrides)}'::jsonb, metadata FROM events WHERE global_position = {template_pos};"
        f" INSERT INTO streams (stream_id, stream_type, version) VALUES ('{sid}', 'sprint', 1);",
        srv.database_url,
    )
    return sid


def _append_api_key_created(srv, template_pos: int, overrides: dict) -> str:
    """Append a user.api_key_created event to the template's user stream, at schema
    version 1 as an older build wrote it."""

    key_id = str(uuid.uuid4())
    overrides = dict(overrides, key_id=key_id)
    psql(
        "WITH t AS (SELECT * FROM events WHERE global_position = %d),"
        " s AS (UPDATE streams SET version = version + 1 WHERE stream_id = (SELECT stream_id FROM t)"
        "       RETURNING version)"
        " INSERT INTO events (stream_type, stream_id, version, event_id, event_type, schema_version, project_id,"
        " payload, metadata)"
        " SELECT t.stream_type, t.stream_id, s.version, gen_random_uuid(), t.event_type, 1,"
        " t.project_id, t.payload || '%s'::jsonb, t.metadata FROM t, s" % (template_pos, json.dumps(overrides)),
        srv.database_url,
    )
    return key_id


def test_log_with_poisoned_events_rebuilds_verifies_and_starts(restartable_server):
    """Events written by a build that accepted year 0, five-digit years and
    nanoseconds: an upcaster normalises them on read, so rebuild, verify and a
    start that must rebuild (fingerprint changed) all succeed."""
    srv = restartable_server
    a = srv.admin()
    pid = ok(a.post("/projects", json={"name": "Old log"}), 201)["id"]
    good = create_sprint(a, pid, "good", start_date="2026-01-05", end_date="2026-01-16")
    ok(a.post("/users/me/api-keys", json={"name": "template key", "expires_at": "2031-01-01T00:00:00Z"}), 201)
    sprint_tpl = events_of(srv, f"event_type = 'sprint.created' AND stream_id = '{good['id']}'")[0]["global_position"]
    key_tpl = events_of(srv, "event_type = 'user.api_key_created'")[0]["global_position"]
    srv.stop()

    poisoned = {
        "year0": _clone_sprint_created(srv, sprint_tpl, {"name": "year0", "start_date": "0000-01-01T00:00:00Z"}),
        "y10000": _clone_sprint_created(srv, sprint_tpl, {"name": "y10000", "end_date": "+10000-01-01T00:00:00Z"}),
        "minus1": _clone_sprint_created(srv, sprint_tpl, {"name": "minus1", "end_date": "-0001-01-01T00:00:00Z"}),
        "nanos": _clone_sprint_created(srv, sprint_tpl, {"name": "nanos", "start_date": SUB_MICRO,
                                                          "end_date": "2026-02-01T00:00:00.123456789Z"}),
    }
    key_id = _append_api_key_created(srv, key_tpl, {"name": "poisoned key", "expires_at": "+10000-01-01T00:00:00Z",
                                                    "key_prefix": "paca_00000000"})

    rebuild_ok(srv)
    verify_ok(srv)
    force_startup_rebuild(srv)
    srv.start()
    verify_ok(srv)

    a = srv.admin()
    sprints = {s["name"]: s for s in ok(a.get(P(pid, "/sprints")))["items"]}
    for name, sid in poisoned.items():
        assert name in sprints and sprints[name]["id"] == sid, f"sprint {name} lost in the rebuild: {sorted(sprints)}"
        got = ok(a.get(P(pid, f"/sprints/{sid}")))
        for k in ("start_date", "end_date"):
            assert in_year_range(got.get(k)), f"sprint {name}.{k} = {got.get(k)!r} is outside years 1-9999"
            if got.get(k):
                assert fraction_digits(got[k]) <= 6, got
    assert ok(a.get(P(pid, f"/sprints/{good['id']}"))) == good
    keys = {k["id"]: k for k in ok(a.get("/users/me/api-keys"))}
    assert key_id in keys, "the poisoned API key was lost"
    assert in_year_range(keys[key_id].get("expires_at")), keys[key_id]


def test_startup_rebuild_failure_names_the_event(restartable_server):
    """An event no projector can apply (here a payload that is not even an object)
    stops a start-up rebuild; the message names its global position and type."""
    srv = restartable_server
    a = srv.admin()
    pid = ok(a.post("/projects", json={"name": "Broken log"}), 201)["id"]
    good = create_sprint(a, pid, "good")
    tpl = events_of(srv, f"event_type = 'sprint.created' AND stream_id = '{good['id']}'")[0]["global_position"]
    srv.stop()
    sid = str(uuid.uuid4())
    pos = psql(
        "INSERT INTO events (stream_type, stream_id, version, event_id, event_type, schema_version, project_id,"
        " payload, metadata)"
        f" SELECT stream_type, '{sid}'::uuid, 1, gen_random_uuid(), event_type, schema_version, project_id,"
        f" '\"not an object\"'::jsonb, metadata FROM events WHERE global_position = {tpl}"
        " RETURNING global_position;"
        f" INSERT INTO streams (stream_id, stream_type, version) VALUES ('{sid}', 'sprint', 1);",
        srv.database_url,
    ).split()[0]
    force_startup_rebuild(srv)
    with pytest.raises(AssertionError) as failed:
        srv.start(timeout=60)
    assert "exited early" in str(failed.value), f"the server must refuse to start: {failed.value}"
    log = srv.log_tail(400).rsplit("===== start #", 1)[-1]  # this start only
    assert re.search(rf"position\D{{0,20}}\b{pos}\b", log, re.I), \
        f"the start-up error must name the failing event's global position {pos}:\n{log}"
    assert "sprint.created" in log, f"the start-up error must name the event type sprint.created:\n{log}"


# --------------------------------------------------------------------------- no user data in logs
def test_rebuild_and_verify_print_no_user_data(restartable_server):
    """Titles and descriptions must not reach stdout/stderr of `projections rebuild`
    and `verify` at the default log level (slow-statement warnings used to print the
    rendered SQL). The log gets several full replay batches: tasks are made through
    the API, then their task.created event is bulk-copied with SQL (new streams and
    task numbers) so the test stays fast."""
    srv = restartable_server
    marker = "SECRET-TITLE-" + secrets.token_hex(4)
    a = srv.admin()
    pid = ok(a.post("/projects", json={"name": "Logs"}), 201)["id"]
    parallel([lambda i=i: create_task(clone(a), pid, f"{marker} {i}",
                                      description=blocks(f"{marker} " + "lorem ipsum " * 300))
              for i in range(20)], workers=5)
    srv.stop()
    psql(
        "INSERT INTO events (stream_type, stream_id, version, event_id, event_type, schema_version, project_id,"
        " payload, metadata)"
        " SELECT stream_type, gen_random_uuid(), 1, gen_random_uuid(), event_type, schema_version, project_id,"
        " jsonb_set(payload, '{task_number}', to_jsonb(100000 + g)), metadata"
        " FROM (SELECT * FROM events WHERE event_type = 'task.created' ORDER BY global_position LIMIT 1) e,"
        " generate_series(1, 5500) g",
        srv.database_url,
    )
    for cmd in (("projections", "rebuild"), ("projections", "verify")):
        res = cli_ok(srv, *cmd, timeout=300)
        out = res.stdout + res.stderr
        # plain booleans: pytest's explanation of `in` on megabytes of output takes minutes
        leaked, size = marker in out, len(out)
        head = out[:1500]
        del out, res
        assert not leaked, f"`paca {' '.join(cmd)}` printed user data ({size} bytes of output):\n{head}"
        assert size < 64 * 1024, f"`paca {' '.join(cmd)}` wrote {size} bytes of output:\n{head}"
    srv.start()
    assert len(list_all(srv.admin(), pid, page_size=200, max_pages=100)) == 20 + 5500
    with open(srv.log_path, encoding="utf-8", errors="replace") as f:
        leaked = marker in f.read()
    assert not leaked, "the server log holds user data"

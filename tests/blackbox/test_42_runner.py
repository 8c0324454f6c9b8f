"""The agent runner (issue 12) end to end: the real `paca serve`, real Redis,
`paca agent-runner` processes driving real containers through Podman's Docker
API, each container running the stand-in agent-server (scripted runs chosen by
`scenario:<name>` in the task title; agent-runner/src/bin/stand-in-agent-server.rs).

tests/agent-sandbox/podman.sh (idempotent, cached) installs Podman when
missing, starts its Docker API service and imports the stand-in image.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from conftest import _make_server, _teardown_server, ok, psql, unique

ROOT = Path(__file__).resolve().parents[2]
PACA_BIN = os.environ.get("PACA_BIN") or str(ROOT / "target" / "debug" / "paca")
REDIS_DB = 12
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
AGENT_KEY = "agent-key-" + secrets.token_hex(16)
LLM_KEY = "sk-test-" + secrets.token_hex(12)


def wait_for(fn, timeout=30.0, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="module")
def sandbox_env() -> dict:
    out = subprocess.run(["bash", str(ROOT / "tests/agent-sandbox/podman.sh"), str(ROOT)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"podman.sh failed:\n{out.stdout}\n{out.stderr}"
    env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert env.get("DOCKER_HOST") and env.get("AGENT_SERVER_IMAGE"), out.stdout
    return env


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=60).stdout


def containers_of(conversation_id: str) -> list[str]:
    return podman("ps", "-a", "-q", "--filter", f"label=paca.conversation_id={conversation_id}").split()


class Runner:
    """One `paca agent-runner` process."""

    def __init__(self, srv, sandbox_env: dict, name: str, port_start: int):
        self.log = os.path.join(tempfile.mkdtemp(prefix=f"paca-runner-{name}-"), "runner.log")
        env = srv.env()
        env.pop("PORT", None)
        env.update(sandbox_env)
        env.update(
            HOSTNAME=name,
            PORT_POOL_START=str(port_start),
            PORT_POOL_SIZE="20",
            WORKER_CONCURRENCY="4",
            AGENT_CLAIM_IDLE_SECS="3",
            AGENT_STOP_TIMEOUT_SECS="6",
            AGENT_READY_TIMEOUT_SECS="30",
            PACA_TEST_MINUTE_SECS="3",
            PACA_DB_MAX_CONNECTIONS="5",  # the shared PostgreSQL has few to spare
            RUST_LOG="info,agent_runner=debug",
        )
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen([PACA_BIN, "agent-runner"], env=env, stdin=subprocess.DEVNULL,
                                         stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, n=60) -> str:
        try:
            return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()


@pytest.fixture(scope="module")
def srv(sandbox_env):
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    s, dbname = _make_server("runner", extra_env={
        "REDIS_URL": REDIS_URL, "AGENT_API_KEY": AGENT_KEY, "PACA_AGENT_RUNNER": "off"})
    s.secrets.update({AGENT_KEY, LLM_KEY})
    try:
        s.start()
        yield s
    finally:
        _teardown_server(s, dbname)


@pytest.fixture(scope="module")
def adm(srv):
    return srv.admin()


@pytest.fixture(scope="module")
def runner(srv, sandbox_env):
    r = Runner(srv, sandbox_env, "runner-a", 12100)
    yield r
    r.stop()


def new_setup(adm):
    p = ok(adm.post("/projects", json={"name": unique("Runner ")}), 201)
    roles = {r["role_name"]: r["id"] for r in ok(adm.get(f"/projects/{p['id']}/roles"))}
    a = ok(adm.post(f"/projects/{p['id']}/agents", json={
        "name": "Sandbox Bot", "handle": unique("sbx-"), "llm_provider": "openai", "llm_model": "gpt-x",
        "llm_api_key": LLM_KEY, "project_role_id": roles["Editor"]}), 201)
    return p, a


def assign(adm, p, a, scenario: str) -> str:
    """A task assigned to the agent; returns its conversation id."""
    t = ok(adm.post(f"/projects/{p['id']}/tasks", json={
        "title": f"scenario:{scenario} {unique()}", "assignee_ids": [a["member_id"]]}), 201)
    convs = wait_for(lambda: ok(adm.get(f"/projects/{p['id']}/conversations", params={"task_id": t["id"]}))["items"],
                     what="the trigger's conversation")
    assert len(convs) == 1
    return convs[0]["id"]


def conversation(adm, p, cid) -> dict:
    return ok(adm.get(f"/projects/{p['id']}/conversations/{cid}"))


def wait_status(adm, p, cid, wanted: set[str], timeout=60.0, seen: list | None = None, runner=None) -> dict:
    def check():
        c = conversation(adm, p, cid)
        if seen is not None and (not seen or seen[-1] != c["status"]):
            seen.append(c["status"])
        return c if c["status"] in wanted else None
    try:
        return wait_for(check, timeout=timeout, interval=0.1, what=f"status in {wanted}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- runner log ---\n{runner.tail() if runner else ''}")


def events(adm, p, cid) -> list[dict]:
    page = ok(adm.get(f"/projects/{p['id']}/conversations/{cid}/events", params={"limit": 200}))
    return page["items"]


def log_events(srv, cid: str) -> list[str]:
    rows = psql(f"SELECT event_type FROM events WHERE stream_id = '{cid}' ORDER BY global_position",
                srv.database_url)
    return [r for r in rows.splitlines() if r]


def check_events(items: list[dict], kinds: list[str]):
    assert [e["event_index"] for e in items] == list(range(len(items))), items
    ids = [e["payload"]["id"] for e in items]
    assert len(ids) == len(set(ids)), f"duplicated agent events: {ids}"
    assert [e["event_type"] for e in items] == kinds, [e["event_type"] for e in items]
    for e in items:
        assert e["event_type"] not in ("StreamingDeltaEvent", "ConversationStateUpdateEvent",
                                       "SystemPromptEvent", "ConversationErrorEvent")


SUCCESS = ["MessageEvent", "MessageEvent", "ActionEvent", "ObservationEvent", "MessageEvent"]


def test_assigned_task_runs_in_a_sandbox_to_finished(srv, adm, runner):
    p, a = new_setup(adm)
    cid = assign(adm, p, a, "success")
    seen: list[str] = []
    c = wait_status(adm, p, cid, {"finished", "failed", "stopped"}, seen=seen, runner=runner)
    assert c["status"] == "finished", (c, runner.tail())
    assert "running" in seen or "conversation.started" in log_events(srv, cid), seen
    items = events(adm, p, cid)
    check_events(items, SUCCESS)
    assert items[0]["event_source"] == "user" and items[1]["event_source"] == "agent"
    # The first user message is the assigned task.
    assert "scenario:success" in json.dumps(items[0]["payload"])
    log = log_events(srv, cid)
    assert log[0] == "conversation.created" and log[1] == "conversation.started", log
    assert log.count("conversation.finished") == 1 and log[-1] == "conversation.finished", log
    assert log.count("conversation.agent_event") == len(SUCCESS)
    wait_for(lambda: containers_of(cid) == [], timeout=20, what="the sandbox removed")
    # The agent's events reached paca:agent:events too.
    streamed = [f for _, f in redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, decode_responses=True)
                .xrange("paca:agent:events") if f.get("conversation_id") == cid]
    assert [int(f["event_index"]) for f in streamed] == list(range(len(SUCCESS)))
    # The LLM key never reached the log or the runner's log.
    assert LLM_KEY not in psql(f"SELECT payload::text || metadata::text FROM events WHERE stream_id = '{cid}'",
                               srv.database_url)
    assert LLM_KEY not in Path(runner.log).read_text(errors="replace")


@pytest.mark.parametrize("scenario", ["dup", "wsdrop"])
def test_duplicates_and_websocket_drop_store_each_event_once(srv, adm, runner, scenario):
    p, a = new_setup(adm)
    cid = assign(adm, p, a, scenario)
    c = wait_status(adm, p, cid, {"finished", "failed", "stopped"}, runner=runner)
    assert c["status"] == "finished", (c, runner.tail())
    check_events(events(adm, p, cid), SUCCESS)
    wait_for(lambda: containers_of(cid) == [], timeout=20, what="the sandbox removed")


@pytest.mark.parametrize("scenario,message", [
    ("error", "LLMBadRequestError: scripted failure"),
    ("stuck", "stuck"),
])
def test_agent_errors_end_failed_with_the_message(srv, adm, runner, scenario, message):
    p, a = new_setup(adm)
    cid = assign(adm, p, a, scenario)
    c = wait_status(adm, p, cid, {"finished", "failed", "stopped"}, runner=runner)
    assert c["status"] == "failed", c
    assert message in (c.get("error_message") or ""), c
    wait_for(lambda: containers_of(cid) == [], timeout=20, what="the sandbox removed")


def test_stop_a_hanging_agent(srv, adm, runner):
    p, a = new_setup(adm)
    cid = assign(adm, p, a, "hang")
    wait_status(adm, p, cid, {"running"}, runner=runner)
    wait_for(lambda: len(events(adm, p, cid)) >= 2, what="the hanging agent's first events")
    assert containers_of(cid), "the sandbox should be running"
    t0 = time.monotonic()
    ok(adm.post(f"/projects/{p['id']}/conversations/{cid}/stop"))
    assert conversation(adm, p, cid)["status"] == "stopped"
    # The sandbox answers neither interrupt nor delete: the runner still
    # tears it down within its stop bound (6 s here) plus the container stop.
    wait_for(lambda: containers_of(cid) == [], timeout=30, what="the hung sandbox removed")
    assert time.monotonic() - t0 < 30
    log = log_events(srv, cid)
    assert log.count("conversation.stopped") == 1 and "conversation.finished" not in log, log


def test_follow_up_message_reaches_the_agent(srv, adm, runner):
    p, a = new_setup(adm)
    cid = assign(adm, p, a, "slow")
    wait_status(adm, p, cid, {"running"}, runner=runner)
    wait_for(lambda: len(events(adm, p, cid)) >= 2, timeout=30, what="the run under way")
    ok(adm.post(f"/projects/{p['id']}/conversations/{cid}/messages", json={"message": "and also: add tests"}))
    c = wait_status(adm, p, cid, {"finished", "failed", "stopped"}, timeout=60, runner=runner)
    assert c["status"] == "finished", c
    items = events(adm, p, cid)
    users = [e for e in items if e["event_source"] == "user"]
    assert len(users) == 2 and "and also: add tests" in json.dumps(users[1]["payload"]), users
    assert [e["event_index"] for e in items] == list(range(len(items)))


def test_chat_turn_ends_paused_and_events_are_published(srv, adm, runner):
    p, a = new_setup(adm)
    sub = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, decode_responses=True).pubsub()
    sub.subscribe("paca.events")
    started = ok(adm.post(f"/projects/{p['id']}/agents/{a['id']}/chat-sessions",
                          json={"message": "hello scenario:success"}), 201)
    cid = started.get("conversation_id") or started["conversation"]["id"]
    c = wait_status(adm, p, cid, {"paused", "finished", "failed", "stopped"}, runner=runner)
    assert c["status"] == "paused", c
    check_events(events(adm, p, cid), SUCCESS)
    kinds = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(kinds) < len(SUCCESS):
        m = sub.get_message(timeout=0.5)
        if m and m["type"] == "message":
            body = json.loads(m["data"])
            # The realtime relay publishes every conversation event from the
            # log; the agent-server's own events are the `agent.<kind>event` ones.
            if body["payload"].get("conversation_id") == cid and body["type"].endswith("event"):
                kinds.append(body["type"])
    assert kinds == ["agent.messageevent", "agent.messageevent", "agent.actionevent",
                     "agent.observationevent", "agent.messageevent"], kinds


def test_timeout_minutes_ends_a_hung_run_failed(srv, adm, runner):
    p, a = new_setup(adm)
    patched = ok(adm.patch(f"/projects/{p['id']}/agents/{a['id']}", json={"timeout_minutes": 1}))
    assert patched["timeout_minutes"] == 1, patched
    cid = assign(adm, p, a, "hang")
    # One "minute" is 3 s for this runner (PACA_TEST_MINUTE_SECS).
    c = wait_status(adm, p, cid, {"finished", "failed", "stopped"}, timeout=40, runner=runner)
    assert c["status"] == "failed" and c["error_message"].startswith("timeout:"), c
    wait_for(lambda: containers_of(cid) == [], timeout=30, what="the hung sandbox removed")


def test_kill_9_the_runner_mid_conversation(srv, adm, runner, sandbox_env):
    p, a = new_setup(adm)
    # Only the victim may take the trigger: stop the shared runner meanwhile.
    runner.stop()
    # A conversation stopped while queued: its trigger is acknowledged
    # without running; a managed container labelled with it (as a dead
    # runner would leave) is removed when a runner starts.
    settled = assign(adm, p, a, "success")
    ok(adm.post(f"/projects/{p['id']}/conversations/{settled}/stop"))
    stray = subprocess.run(["podman", "create", "--label", "paca.managed=true", "--label",
                            f"paca.conversation_id={settled}", sandbox_env["AGENT_SERVER_IMAGE"]],
                           capture_output=True, text=True, timeout=60)
    assert stray.returncode == 0, stray.stderr
    victim = Runner(srv, sandbox_env, "runner-victim", 12300)
    try:
        wait_for(lambda: containers_of(settled) == [], timeout=20, what="the stray container removed at start-up")
        cid = assign(adm, p, a, "slow")
        wait_for(lambda: len(events(adm, p, cid)) >= 3, timeout=60,
                 what=f"the slow run under way\n{victim.tail()}")
        victim.kill9()
        left = containers_of(cid)
        assert left, "the killed runner's sandbox is left behind"
        before = len(events(adm, p, cid))
        assert conversation(adm, p, cid)["status"] == "running"
        successor = Runner(srv, sandbox_env, "runner-successor", 12500)
        try:
            c = wait_status(adm, p, cid, {"finished", "failed", "stopped"}, timeout=90, runner=successor)
            assert c["status"] == "finished", (c, successor.tail())
            items = events(adm, p, cid)
            kinds = ["MessageEvent", "MessageEvent"] + ["ActionEvent", "ObservationEvent"] * 5 + ["MessageEvent"]
            check_events(items, kinds)
            assert len(items) > before
            log = log_events(srv, cid)
            assert log.count("conversation.finished") == 1, log
            assert log.count("conversation.agent_event") == len(kinds), log
            # The trigger was reclaimed and acknowledged: nothing pending.
            pending = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).xpending(
                "paca:agent:triggers", "ai-agent-workers")
            wait_for(lambda: redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).xpending(
                "paca:agent:triggers", "ai-agent-workers")["pending"] == 0, timeout=20,
                what=f"no pending trigger (was {pending})")
            wait_for(lambda: containers_of(cid) == [], timeout=20, what="no sandbox left")
            assert "conversation.started" not in log_events(srv, settled)
            for old in left:
                assert old not in podman("ps", "-a", "-q", "--no-trunc"), "the left-behind container was removed"
        finally:
            successor.stop()
    finally:
        victim.kill9()


def test_rebuild_and_verify_with_agent_events(srv, adm):
    """Runs after the runs above: their agent events replay into the same read models."""
    n = int(psql("SELECT count(*) FROM events WHERE event_type = 'conversation.agent_event'", srv.database_url))
    assert n >= 20, n
    srv.stop()
    try:
        for step in ("rebuild", "verify"):
            res = srv.cli("projections", step)
            assert res.returncode == 0, f"projections {step}: {res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    finally:
        srv.start()


@pytest.mark.parametrize("bus", ["valkey", "in-process queue"])
def test_serve_runs_the_runner_in_process_when_a_docker_api_answers(sandbox_env, bus):
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB + 1).flushdb()
    env = {"AGENT_API_KEY": AGENT_KEY, "PORT_POOL_START": "12700", "PORT_POOL_SIZE": "10", **sandbox_env}
    if bus == "valkey":
        env["REDIS_URL"] = f"redis://127.0.0.1:6379/{REDIS_DB + 1}"
    else:
        env["REDIS_URL"] = ""
    s, dbname = _make_server("runner-inproc", extra_env=env)
    s.secrets.update({AGENT_KEY, LLM_KEY})
    try:
        s.start()
        adm = s.admin()
        p, a = new_setup(adm)
        cid = assign(adm, p, a, "success")
        c = wait_status(adm, p, cid, {"finished", "failed", "stopped"})
        assert c["status"] == "finished", (c, s.log_tail())
        check_events(events(adm, p, cid), SUCCESS)
        assert "agent runner started in-process" in s.log_tail(400)
        wait_for(lambda: containers_of(cid) == [], timeout=20, what="the sandbox removed")
        if bus != "valkey":
            # Acknowledged: the trigger's outbox row is gone.
            wait_for(lambda: psql("SELECT count(*) FROM agent_outbox", s.database_url).strip() == "0",
                     timeout=10, what="the outbox emptied")
    finally:
        _teardown_server(s, dbname)


def test_serve_says_once_why_it_runs_no_runner():
    s, dbname = _make_server("runner-none", extra_env={"DOCKER_HOST": "", "DOCKER_SOCKET": ""})
    try:
        s.start()
        s.stop()
        log = s.log_tail(400)
        assert log.count("agent runner not started in-process: neither DOCKER_HOST nor DOCKER_SOCKET is set") == 1, log
    finally:
        _teardown_server(s, dbname)

"""Realtime delivery (seed pages 04, 16, 17) with real Socket.IO v4 clients
(`socket.io-client` under Node): auth, rooms, event and notification
payloads, several server nodes over one Valkey, and a Valkey restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import _make_server, _teardown_server, create_user, free_port, ok
from rt_client import Driver
from test_2_support import P, add_member, blocks, create_task, member_id, patch_task

QUIET = 1.5  # how long "nothing arrives" is watched


@pytest.fixture
def rt():
    with Driver() as d:
        yield d


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def token_of(client) -> str:
    token = client.access_token
    assert token, "login set no access_token cookie"
    return token


def test_healthz(server):
    r = requests.get(server.base + "/ws/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


def test_connection_needs_a_valid_token(server, admin, rt):
    m = rt.sio("anon", server.base)
    assert m["kind"] == "connect_error" and m["message"] == "invalid or expired token", m
    m = rt.sio("forged", server.base, token="eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl")
    assert m["kind"] == "connect_error", m
    assert rt.sio("ok", server.base, token=token_of(admin))["kind"] == "connected"
    # The cookie works too, on /socket.io and over long-polling.
    m = rt.sio("cookie", server.base, cookie=f"access_token={token_of(admin)}", path="/socket.io",
               transports=("polling",))
    assert m["kind"] == "connected", m


def test_a_socket_whose_login_ends_is_disconnected(server, admin, make_user, rt):
    """A socket is authenticated at connect; when that login ends later (logout, password change) the
    server disconnects it instead of letting it keep receiving its rooms' messages."""
    leaving = make_user(prefix="rtlogout")
    changing = make_user(prefix="rtpasswd")
    staying = make_user(prefix="rtstay")
    for name, u in (("leaving", leaving), ("changing", changing), ("staying", staying)):
        assert rt.sio(name, server.base, token=token_of(u.client))["kind"] == "connected"
    ok(leaving.client.post("/auth/logout"))
    m = rt.wait_for(lambda m: m.get("name") == "leaving" and m.get("kind") == "disconnect", timeout=10,
                    what="the logged-out socket to be disconnected")
    assert m["reason"] == "io server disconnect", m
    r = changing.client.patch("/users/me/password", json={"current_password": changing.password,
                                                          "new_password": "An0ther-passw0rd!"})
    assert r.status_code == 204 and not r.content, f"{r.status_code} {r.text}"
    m = rt.wait_for(lambda m: m.get("name") == "changing" and m.get("kind") == "disconnect", timeout=10,
                    what="the socket of a changed password to be disconnected")
    assert m["reason"] == "io server disconnect", m
    time.sleep(QUIET)
    assert not rt.received("staying", "disconnect"), "a live login's socket was disconnected"


def test_member_receives_task_and_comment_events_non_member_nothing(server, admin, admin_id, project, make_user, rt):
    pid = project["id"]
    editor = make_user(prefix="rtmember")
    add_member(admin, pid, editor.id, "Viewer")
    outsider = make_user(prefix="rtoutsider")

    assert rt.sio("member", server.base, token=token_of(editor.client))["kind"] == "connected"
    assert rt.sio("outsider", server.base, token=token_of(outsider.client))["kind"] == "connected"
    assert rt.emit("member", "join", {"projectId": pid}) == {"tasks": True, "docs": True}
    assert rt.emit("outsider", "join", {"projectId": pid}) == {"tasks": False, "docs": False}

    t = create_task(admin, pid, "Realtime one")
    e = rt.wait_event("member", "task.created", lambda p: p["task_id"] == t["id"])
    p = e["payload"]
    assert set(e) == {"type", "payload"}
    assert p["project_id"] == pid and p["activity_type"] == "task.created"
    assert p["actor_id"] == member_id(admin, pid, admin_id), "actor_id is the project member id"
    assert isinstance(p["content"], str) and "Realtime one" in p["content"]
    assert p["created_at"] and p["updated_at"] and p["id"]

    patch_task(admin, pid, t["id"], {"title": "Realtime renamed"})
    e = rt.wait_event("member", "task.updated", lambda p: p["task_id"] == t["id"])
    assert "Realtime renamed" in e["payload"]["content"]

    c = ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("hello rt")}), 201)
    e = rt.wait_event("member", "task.comment.added", lambda p: p["task_id"] == t["id"])
    assert e["payload"]["id"] == c["id"] and e["payload"]["activity_type"] == "comment"
    assert "hello rt" in e["payload"]["content"]

    ok(admin.delete(P(pid, f"/tasks/{t['id']}")))
    rt.wait_event("member", "task.deleted", lambda p: p["task_id"] == t["id"])

    time.sleep(QUIET)
    assert rt.events("outsider") == [], "a non-member must receive nothing"


def test_join_emitted_from_the_connect_handler_is_answered(server, admin, project, rt):
    """Paca's web app emits `join` the moment it is connected; the server
    must be listening for it by then (it once registered its handlers only
    after reading the log head, and such a join was dropped)."""
    pid = project["id"]
    for i in range(5):
        rt.send(op="sio", name=f"eager{i}", url=server.base, path="/ws/socket.io", token=token_of(admin),
                transports=["websocket"], joinOnConnect={"projectId": pid})
    for i in range(5):
        m = rt.wait_for(lambda m, i=i: m.get("name") == f"eager{i}" and m.get("kind") == "joined",
                        what=f"eager{i} join ack")
        assert m.get("data") == {"tasks": True, "docs": True}, m
    t = create_task(admin, pid, "eager join")
    for i in range(5):
        rt.wait_event(f"eager{i}", "task.created", lambda p: p["task_id"] == t["id"])


def _connected(rt, name: str) -> list[dict]:
    return rt.received(name, "connected")


def _drop_and_wait_reconnect(rt, name: str) -> dict:
    """Closes the transport under the socket (a lost network); socket.io
    -client reconnects by itself and tries to recover its session."""
    before = len(_connected(rt, name))
    rt.send(op="drop", name=name)
    rt.wait_for(lambda m: m.get("name") == name and m.get("kind") == "disconnect", what=f"{name} to drop")
    rt.wait_for(lambda m: len(_connected(rt, name)) > before, timeout=15, what=f"{name} to reconnect")
    return _connected(rt, name)[-1]


def test_connection_state_recovery_replays_what_a_dropped_socket_missed(server, admin, project, make_user, rt):
    """Seed page 17: connection-state recovery (2-minute window). The socket
    comes back `recovered`, still in its project rooms without a new `join`,
    and receives, in log order and before anything newer, every message it
    missed while away; each message carries its log offset."""
    pid = project["id"]
    viewer = make_user(prefix="rtrecover")
    add_member(admin, pid, viewer.id, "Viewer")
    assert rt.sio("r", server.base, token=token_of(viewer.client))["recovered"] is False
    assert rt.emit("r", "join", {"projectId": pid}) == {"tasks": True, "docs": True}
    t = create_task(admin, pid, "Before the drop")
    rt.wait_event("r", "task.created", lambda p: p["task_id"] == t["id"])
    first = [m for m in rt.received("r", "event")][-1]
    assert isinstance(first.get("offset"), str) and "." in first["offset"], first

    # Away: the transport is closed; the server notices at once (the pipe
    # closes), and changes land while the client waits to reconnect.
    rt.send(op="drop", name="r")
    rt.wait_for(lambda m: m.get("name") == "r" and m.get("kind") == "disconnect", what="r to drop")
    missed = [patch_task(admin, pid, t["id"], {"title": f"While away {i}"}) for i in range(3)]
    c = ok(admin.post(P(pid, f"/tasks/{t['id']}/activities/comments"), json={"content": blocks("missed it")}), 201)
    rt.wait_for(lambda m: len(_connected(rt, "r")) > 1, timeout=15, what="r to reconnect")
    again = _connected(rt, "r")[-1]
    assert again["recovered"] is True, again
    for i in range(3):
        rt.wait_event("r", "task.updated", lambda p, i=i: f"While away {i}" in p["content"])
    rt.wait_event("r", "task.comment.added", lambda p: p["id"] == c["id"])
    got = [m for m in rt.received("r", "event") if m["data"]["payload"].get("task_id") == t["id"]]
    away = [m["data"]["payload"]["content"] for m in got
            if m["data"]["type"] == "task.updated" and "While away" in m["data"]["payload"]["content"]]
    # in order; a change committed during the reconnect may come twice.
    # (the content names old and new title: the newest number is the change's)
    firsts = [max(i for i in range(3) if f"While away {i}" in x) for x in away]
    assert sorted(set(firsts)) == [0, 1, 2] and firsts == sorted(firsts), away
    offsets = [tuple(int(x) for x in m["offset"].split(".")) for m in got]
    assert offsets == sorted(offsets), "replayed and live messages arrive in log order"
    assert len(missed) == 3

    # Still in the room without a new join: live events keep coming.
    patch_task(admin, pid, t["id"], {"title": "After recovery"})
    rt.wait_event("r", "task.updated", lambda p: "After recovery" in p["content"])


def test_recovery_needs_the_same_user_and_a_live_session(server, admin, project, make_user, rt):
    """A deliberate disconnect ends the session: the next connection of the
    same client starts fresh (not recovered, no rooms); and a pid is no key
    to someone else's rooms."""
    pid = project["id"]
    viewer = make_user(prefix="rtrecover2")
    membership = add_member(admin, pid, viewer.id, "Viewer")
    assert rt.sio("a", server.base, token=token_of(viewer.client))["kind"] == "connected"
    assert rt.emit("a", "join", {"projectId": pid}) == {"tasks": True, "docs": True}
    # A dropped socket recovers even before it received any event.
    assert _drop_and_wait_reconnect(rt, "a")["recovered"] is True
    t = create_task(admin, pid, "Seen after recovery")
    rt.wait_event("a", "task.created", lambda p: p["task_id"] == t["id"])
    # Removed from the project while away: recovered, but not back in its room.
    rt.send(op="drop", name="a")
    rt.wait_for(lambda m: m.get("name") == "a" and m.get("kind") == "disconnect", what="a to drop")
    ok(admin.delete(P(pid, f"/members/{membership['id']}")))
    rt.wait_for(lambda m: len(_connected(rt, "a")) > 2, timeout=15, what="a to reconnect")
    hidden = create_task(admin, pid, "Not for a former member")
    time.sleep(QUIET)
    assert not [e for e in rt.events("a") if e["payload"].get("task_id") == hidden["id"]]


def test_public_project_and_leave(server, admin, make_project, make_user, rt):
    pid = make_project(is_public=True)["id"]
    reader = make_user(prefix="rtreader")
    assert rt.sio("r", server.base, token=token_of(reader.client))["kind"] == "connected"
    # Paca's web client emits `join` without an acknowledgement.
    rt.emit("r", "join", {"projectId": pid}, ack=False)
    deadline = time.monotonic() + 10
    while True:
        t = create_task(admin, pid, "Public one")
        try:
            rt.wait_event("r", "task.created", lambda p: p["task_id"] == t["id"], timeout=0.5)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "join without ack never took effect"
    rt.emit("r", "leave", {"projectId": pid})
    after = create_task(admin, pid, "After leave")
    time.sleep(QUIET)
    seen = {e["payload"]["task_id"] for e in rt.events("r")}
    assert after["id"] not in seen, "an event arrived after leave"


def test_assignee_receives_notification(server, admin, admin_id, project, make_user, rt):
    pid = project["id"]
    u = make_user(prefix="rtassignee")
    add_member(admin, pid, u.id, "Editor")
    mid = member_id(admin, pid, u.id)
    assert rt.sio("u", server.base, token=token_of(u.client))["kind"] == "connected"
    t = create_task(admin, pid, "Assigned to you", assignee_ids=[mid])
    n = rt.wait_event("u", "notification.created", kind="notification")
    p = n["payload"]
    assert p["type"] == "assigned" and p["recipient_user_id"] == u.id
    assert p["task_id"] == t["id"] and p["project_id"] == pid
    assert p["actor_member_id"] == member_id(admin, pid, admin_id)
    # The same id as the stored notification (written by its own subscription).
    deadline = time.monotonic() + 10
    while True:
        stored = [n["id"] for n in ok(u.client.get("/users/me/notifications"))["items"]]
        if p["id"] in stored or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert p["id"] in stored, (p["id"], stored)
    # Without a join, the user room alone: no project events.
    assert rt.events("u") == []


def test_websocket_origin_follows_cors_origins(rt):
    """Browsers do not apply CORS to WebSockets: the upgrade itself checks
    the Origin against CORS_ORIGINS (cross-site WebSocket hijacking)."""
    srv, dbname = _make_server("rt-cors", extra_env={"CORS_ORIGINS": "http://good.example"})
    try:
        srv.start()
        token = token_of(srv.admin())
        # Programmatic clients send no Origin: allowed.
        assert rt.sio("plain", srv.base, token=token)["kind"] == "connected"
        rt.send(op="sio", name="good", url=srv.base, path="/ws/socket.io", token=token,
                transports=["websocket"], cookie=None, origin="http://good.example")
        good = rt.wait_for(lambda m: m.get("name") == "good" and m.get("kind") in ("connected", "connect_error"))
        assert good["kind"] == "connected", good
        rt.send(op="sio", name="bad", url=srv.base, path="/ws/socket.io", token=token,
                transports=["websocket"], cookie=None, origin="http://evil.example", reconnection=False)
        bad = rt.wait_for(lambda m: m.get("name") == "bad" and m.get("kind") in ("connected", "connect_error"))
        assert bad["kind"] == "connect_error", bad
    finally:
        _teardown_server(srv, dbname)


def test_dedicated_realtime_port(rt):
    """REALTIME_PORT: Socket.IO on a listener of its own (hyper serving socketioxide directly, the
    gateway's `/ws/` upstream), with the same auth, rooms, origin check and delivery as the API port."""
    rt_port = free_port()
    srv, dbname = _make_server("rt-port", extra_env={"REALTIME_PORT": str(rt_port),
                                                       "CORS_ORIGINS": "http://good.example"})
    try:
        srv.start()
        base = f"http://127.0.0.1:{rt_port}"
        for path in ("/ws/healthz", "/healthz"):
            r = requests.get(base + path, timeout=10)
            assert r.status_code == 200 and r.json() == {"status": "ok", "sockets": 0}, r.text
        # Only Socket.IO lives there.
        assert requests.get(base + "/api/v1/projects", timeout=10).status_code == 404
        a = srv.admin()
        token = token_of(a)
        pid = ok(a.post("/projects", json={"name": "Realtime port"}), 201)["id"]

        m = rt.sio("anon", base)
        assert m["kind"] == "connect_error" and m["message"] == "invalid or expired token", m
        assert rt.sio("ws", base, token=token)["kind"] == "connected"
        m = rt.sio("polling", base, cookie=f"access_token={token}", path="/socket.io", transports=("polling",))
        assert m["kind"] == "connected", m
        rt.send(op="sio", name="evil", url=base, path="/ws/socket.io", token=token,
                transports=["websocket"], cookie=None, origin="http://evil.example", reconnection=False)
        evil = rt.wait_for(lambda m: m.get("name") == "evil" and m.get("kind") in ("connected", "connect_error"))
        assert evil["kind"] == "connect_error", evil
        assert requests.get(base + "/healthz", timeout=10).json()["sockets"] == 2

        for name in ("ws", "polling"):
            assert rt.emit(name, "join", {"projectId": pid}) == {"tasks": True, "docs": True}
        t = create_task(a, pid, "Through the realtime port")
        for name in ("ws", "polling"):
            e = rt.wait_event(name, "task.created", lambda p: p["task_id"] == t["id"])
            assert "Through the realtime port" in e["payload"]["content"]
        # The API port still serves Socket.IO too.
        assert rt.sio("api-port", srv.base, token=token)["kind"] == "connected"
    finally:
        _teardown_server(srv, dbname)


# --------------------------------------------------------------------------- Valkey
class PrivateRedis:
    """A redis-server of our own on a free port (restartable)."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="paca-rt-redis-")
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test.sh installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def valkey():
    r = PrivateRedis()
    r.start()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def two_nodes(valkey):
    """Two `paca serve` processes on one database and one Valkey."""
    a, dbname = _make_server("rt-a", extra_env={"REDIS_URL": valkey.url})
    a.start()
    b = None
    try:
        b = type(a)("rt-b", a.database_url, tempfile.mkdtemp(prefix="paca-data-rt-b-"),
                    admin_password=a.admin_password, jwt_secret=a.jwt_secret,
                    extra_env={"REDIS_URL": valkey.url})
        b.start()
        yield a, b
    finally:
        if b is not None:
            _teardown_server(b, None)
        _teardown_server(a, dbname)


def test_two_nodes_both_deliver(two_nodes, rt):
    a, b = two_nodes
    admin_a = a.admin()
    pid = ok(admin_a.post("/projects", json={"name": "Two nodes"}), 201)["id"]
    admin_b = b.admin()
    assert rt.sio("on_a", a.base, token=token_of(admin_a))["kind"] == "connected"
    assert rt.sio("on_b", b.base, token=token_of(admin_b))["kind"] == "connected"
    assert rt.emit("on_a", "join", {"projectId": pid})["tasks"]
    assert rt.emit("on_b", "join", {"projectId": pid})["tasks"]
    t1 = create_task(admin_a, pid, "written on a")
    t2 = create_task(admin_b, pid, "written on b")
    for client in ("on_a", "on_b"):
        for t in (t1, t2):
            rt.wait_event(client, "task.created", lambda p, t=t: p["task_id"] == t["id"])
    time.sleep(0.5)
    for client in ("on_a", "on_b"):
        created = [e["payload"]["task_id"] for e in rt.events(client, type_="task.created")]
        assert sorted(created) == sorted([t1["id"], t2["id"]]), f"{client}: each event exactly once: {created}"


class SwitchProxy:
    """A TCP load balancer on loopback whose backend can be switched; a
    switch cuts the open connections, as a failover does."""

    def __init__(self, target: tuple[str, int]):
        import threading
        self.target = target
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for c in (src, dst):
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        import threading
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def switch(self, target: tuple[str, int]):
        self.target = target
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def close(self):
        self.listener.close()
        self.switch(self.target)


def test_recovery_across_nodes_through_valkey(two_nodes, rt):
    """Behind a load balancer that fails over from node a to node b, the
    client's reconnect lands on b, which finds the session a parked in
    Valkey: recovered, rooms kept, and what was written meanwhile (on a)
    replayed."""
    a, b = two_nodes
    admin_a = a.admin()
    pid = ok(admin_a.post("/projects", json={"name": "Failover"}), 201)["id"]
    port_of = lambda srv: int(srv.base.rsplit(":", 1)[1].split("/")[0])
    lb = SwitchProxy(("127.0.0.1", port_of(a)))
    try:
        base = f"http://127.0.0.1:{lb.port}"
        assert rt.sio("lb", base, token=token_of(admin_a))["recovered"] is False
        assert rt.emit("lb", "join", {"projectId": pid})["tasks"]
        t = create_task(admin_a, pid, "before failover")
        rt.wait_event("lb", "task.created", lambda p: p["task_id"] == t["id"])
        lb.switch(("127.0.0.1", port_of(b)))
        rt.wait_for(lambda m: m.get("name") == "lb" and m.get("kind") == "disconnect", what="lb to drop")
        patch_task(admin_a, pid, t["id"], {"title": "during failover"})
        rt.wait_for(lambda m: len(_connected(rt, "lb")) > 1, timeout=15, what="lb to reconnect to b")
        assert _connected(rt, "lb")[-1]["recovered"] is True
        rt.wait_event("lb", "task.updated", lambda p: "during failover" in p["content"])
        patch_task(admin_a, pid, t["id"], {"title": "after failover"})
        rt.wait_event("lb", "task.updated", lambda p: "after failover" in p["content"])
    finally:
        lb.close()


def test_valkey_restart_loses_nothing(two_nodes, valkey, rt):
    a, b = two_nodes
    admin_a = a.admin()
    pid = ok(admin_a.post("/projects", json={"name": "Restart"}), 201)["id"]
    assert rt.sio("on_b", b.base, token=token_of(b.admin()))["kind"] == "connected"
    assert rt.emit("on_b", "join", {"projectId": pid})["tasks"]
    before = create_task(admin_a, pid, "before")
    rt.wait_event("on_b", "task.created", lambda p: p["task_id"] == before["id"])

    valkey.stop()
    during = [create_task(admin_a, pid, f"during {i}") for i in range(5)]
    time.sleep(1.0)
    valkey.start()
    after = [create_task(admin_a, pid, f"after {i}") for i in range(3)]

    for t in during + after:
        rt.wait_event("on_b", "task.created", lambda p, t=t: p["task_id"] == t["id"], timeout=30)
    created = [e["payload"]["task_id"] for e in rt.events("on_b", type_="task.created")]
    expected = [before["id"]] + [t["id"] for t in during + after]
    assert sorted(set(created)) == sorted(expected)
    assert len(created) == len(set(created)), "no event delivered twice"

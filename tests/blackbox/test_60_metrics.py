"""GET /metrics (docs/operations.md, "Metrics"): Prometheus text with request
counts, latency and database round trips per route pattern, appended events,
subscription lag, pool usage and resident memory; METRICS_TOKEN guards it."""

from __future__ import annotations

import os
import re

import pytest
import requests

from conftest import describe, err, ok, psql, running_server

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TASK_ROUTE = re.compile(r"^/api/v1/projects/\{[^}/]+\}/tasks/\{[^}/]+\}$")


class Metrics:
    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            labels = dict(LABEL.findall(m.group(2) or ""))
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def series(self, name: str) -> list[dict[str, str]]:
        return [labels for n, labels, _ in self.samples if n == name]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
        return sum(
            v for n, l, v in self.samples if n == name and all(l.get(k) == x for k, x in labels.items())
        )


def scrape(server, **headers) -> Metrics:
    r = requests.get(server.base + "/metrics", headers=headers, timeout=30)
    assert r.status_code == 200, describe(r)
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return Metrics(r.text)


def task_route(metrics: Metrics, name: str, method: str) -> str:
    routes = {l["route"] for l in metrics.series(name) if l.get("method") == method and TASK_ROUTE.match(l["route"])}
    assert len(routes) == 1, f"expected one task route pattern for {method} in {name}, got {routes}"
    return routes.pop()


def test_metrics_after_requests_and_a_patch(module_server):
    server = module_server
    admin = server.admin()
    project = ok(admin.post("/projects", json={"name": "Metrics"}), 201)
    pid = project["id"]
    task = ok(admin.post(f"/projects/{pid}/tasks", json={"title": "measured"}), 201)
    tid = task["id"]
    ok(admin.get(f"/projects/{pid}/tasks/{tid}"))  # the GET series exists before the baseline

    before = scrape(server)
    get_route = task_route(before, "paca_http_requests_total", "GET")
    get_before = before.value("paca_http_requests_total", method="GET", route=get_route, status="2xx")
    calls = 3
    for _ in range(calls):
        ok(admin.get(f"/projects/{pid}/tasks/{tid}"))
    ok(admin.patch(f"/projects/{pid}/tasks/{tid}", json={"title": "measured again"}))
    subscriptions = [s for s in psql("SELECT name FROM checkpoints ORDER BY name", server.database_url).split() if s]
    after = scrape(server)

    # Requests: counted per route pattern, exactly, never per raw path.
    get_after = after.value("paca_http_requests_total", method="GET", route=get_route, status="2xx")
    assert get_after - get_before == calls, (get_before, get_after)
    assert after.value("paca_http_request_duration_seconds_count", method="GET", route=get_route) >= calls + 1
    assert "# TYPE paca_http_request_duration_seconds histogram" in after.text
    for name in ("paca_http_requests_total", "paca_http_request_duration_seconds_count", "paca_http_db_queries_count"):
        for labels in after.series(name):
            assert not UUID.search(labels.get("route", "")), f"raw path as a route label: {labels}"
    assert tid not in after.text and pid not in after.text

    # Appends: the PATCH appended a task event.
    appended = after.value("paca_events_appended_total", stream_type="task") - before.value(
        "paca_events_appended_total", stream_type="task"
    )
    assert appended >= 1, appended
    assert after.value("paca_append_commits_total") > before.value("paca_append_commits_total")

    # Round trips: the PATCH route made some, and the process-wide counter moved.
    patch_route = task_route(after, "paca_http_db_queries_count", "PATCH")
    assert after.value("paca_http_db_queries_count", method="PATCH", route=patch_route) == 1
    # A task PATCH is the task's load (its first write on this node), the
    # one-round-trip write and the response's read: at most 4 (issue 8).
    patch_trips = after.value("paca_http_db_queries_sum", method="PATCH", route=patch_route)
    assert 0 < patch_trips <= 4, patch_trips
    assert after.value("paca_http_db_queries_sum", method="GET", route="/api/healthz") == 0
    for kind in ("statement", "begin"):
        assert after.value("paca_db_queries_total", kind=kind) > 0, kind
    # The pool does not ping before handing out a connection.
    assert after.value("paca_db_queries_total", kind="acquire") == 0
    assert after.value("paca_db_queries_total") > before.value("paca_db_queries_total")

    # Subscription lag: one gauge per checkpoint row.
    assert subscriptions, "the server runs subscriptions (realtime relay, notifications, ...)"
    lagging = {l["subscription"] for l in after.series("paca_subscription_lag_events")}
    assert set(subscriptions) <= lagging, (subscriptions, lagging)
    assert set(subscriptions) <= {l["subscription"] for l in after.series("paca_subscription_failures")}
    for name in subscriptions:
        assert after.value("paca_subscription_lag_events", subscription=name) >= 0
    head = int(psql("SELECT coalesce(max(global_position), 0) FROM events", server.database_url).strip())
    assert 0 < after.value("paca_events_head_position") <= head

    # Pool and memory.
    assert after.value("paca_db_pool_max") >= after.value("paca_db_pool_size") >= 1
    assert after.value("paca_db_pool_idle") <= after.value("paca_db_pool_size")
    assert after.value("paca_process_resident_memory_bytes") > 1 << 20


@pytest.fixture
def token_server():
    with running_server("metrics-token", extra_env={"METRICS_TOKEN": "scrape-secret-123"}) as srv:
        yield srv


def test_metrics_token(token_server):
    server = token_server
    url = server.base + "/metrics"
    err(requests.get(url, timeout=30), 401, "AUTH_UNAUTHENTICATED")
    err(requests.get(url, headers={"Authorization": "Bearer wrong-secret-123"}, timeout=30), 401)
    err(requests.get(url, headers={"Authorization": "scrape-secret-123"}, timeout=30), 401)
    metrics = scrape(server, Authorization="Bearer scrape-secret-123")
    assert metrics.value("paca_http_requests_total", route="/metrics", status="4xx") == 3
    # Health stays open.
    assert requests.get(server.base + "/api/healthz", timeout=30).status_code == 200


@pytest.fixture
def fresh_server():
    with running_server("metrics-memory") as srv:
        yield srv


def test_password_checks_leave_no_memory_behind(fresh_server):
    """Each Argon2 hash or check takes 19 MiB. glibc hands a block that large
    back when it is freed only while its mmap threshold is below it, and the
    threshold rises past it after the first such block (the admin's hash at
    start-up); `paca serve` pins it (src/memory.rs). Unpinned, three logins
    left ~58 MB resident for good."""
    server = fresh_server
    before = scrape(server).value("paca_process_resident_memory_bytes")
    for _ in range(3):
        server.admin()
    after = scrape(server).value("paca_process_resident_memory_bytes")
    grown_mb = (after - before) / (1 << 20)
    assert grown_mb < 10, f"resident memory grew by {grown_mb:.1f} MB over three logins"


def peak_resident_mb(server) -> float:
    """The process's high-water resident set (VmHWM), in MiB."""
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_burst_of_logins_holds_a_bounded_amount_of_memory(fresh_server):
    """Argon2 runs one computation per core at a time (commands::auth): each
    holds 19 MiB while it runs, and 32 unauthenticated logins at once raised
    the peak resident size by 404 MiB before the bound (debug build, two
    cores). Bounded, the peak grows by a few hashes' worth whatever the
    burst's size, and every login still succeeds or fails as it should."""
    from concurrent.futures import ThreadPoolExecutor

    server = fresh_server
    server.admin()  # the first login's one-off costs out of the measurement
    before = peak_resident_mb(server)

    def attempt(i: int) -> int:
        password = server.admin_password if i % 2 == 0 else "wrong-password-123"
        r = requests.post(
            server.base + "/api/v1/auth/login",
            json={"username": server.admin_username, "password": password},
            timeout=120,
        )
        return r.status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(attempt, range(32)))
    assert statuses.count(200) == 16 and statuses.count(401) == 16, statuses
    grown = peak_resident_mb(server) - before
    # One hash (19 MiB) per core at a time, plus the blocking threads' stacks
    # and allocator slack; unbounded it was 404 on two cores.
    limit = 60 + 20 * (os.cpu_count() or 1)
    assert grown < limit, f"peak resident memory rose by {grown:.0f} MiB over 32 concurrent logins"

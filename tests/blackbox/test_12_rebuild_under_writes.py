"""`paca projections rebuild` is safe against a live server taking writes.

docs/operations.md (## Projections) claims a rebuild "replays the whole log into a new schema
... while the server keeps serving reads and writes from the live tables; writes that land
during the replay are applied in a final catch-up that briefly holds appends (`LOCK TABLE
streams IN EXCLUSIVE MODE`), then the schemas are swapped atomically. Safe to run against a
live server." (projections/src/rebuild.rs: replay into `rm_build_<pid>` in gap-safe batches,
lock `streams`, replay the rest, rename `rm` away and the build schema to `rm`, drop the old.)

This module proves it from the outside, on its own server and database (whose log first gets
more than one replay batch of ballast events, so the batched replay is exercised too):

* 4 writer threads (one HTTP session each) keep PATCHing task titles ("w<k>-<n>", n increasing,
  each writer owns 10 tasks), and now and then add a comment or create a task, while
  `paca projections rebuild` runs several times back to back (every run must exit 0);
* a 5th thread keeps reading (task list page, one task) during the rebuilds: only 200 is allowed;
* 409/503 answers are retried with the same body until acknowledged (never counted as success,
  never left ambiguous); any other non-2xx or transport error is a failure.

Afterwards: `paca projections verify` exits 0 (the read models equal a replay of the log), every
task's title is its writer's last acknowledged value, every acknowledged comment is in its task's
activities, every acknowledged created task is listed, and the log holds at least as many
`task.updated` events for the project as there were acknowledged PATCHes, each acknowledged title
exactly once (no acknowledged write was lost or doubled by the catch-up and swap).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict

import pytest
import requests

from conftest import _make_server, _teardown_server, psql
from test_2_support import P, activities, block_texts, blocks, create_task, get_task, list_all

WRITERS = 4
TASKS_PER_WRITER = 10
MIN_REBUILDS = 3           # rebuilds run back to back while the writers write
REBUILD_WINDOW = 10.0      # ... and keep being started until this many seconds have passed
MAX_RETRIES = 200          # 409/503 retries of one write before it counts as a failure
COMMENT_EVERY = 9          # a writer's every 9th operation is a comment ...
CREATE_EVERY = 23          # ... every 23rd a new task
MAX_COMMENTS = 12          # per writer
MAX_CREATES = 5            # per writer
RETRYABLE = (409, 503)
# The replay reads the log in batches of 5000 (projections/src/rebuild.rs BATCH): ballast makes
# the log longer than one batch, so the rebuilds also take the multi-batch, gap-safe read path
# (not just "one read, then the locked catch-up").
REPLAY_BATCH = 5000
BALLAST_EVENTS = REPLAY_BATCH + 600
BALLAST_THREADS = 16


@pytest.fixture(scope="module")
def srv():
    s, dbname = _make_server("rebuild-writes")
    try:
        s.start()
        yield s
    finally:
        _teardown_server(s, dbname)


def _cli_ok(srv, *args, timeout: float = 120):
    t0 = time.monotonic()
    res = srv.cli(*args, timeout=timeout)
    t1 = time.monotonic()
    assert res.returncode == 0, (
        f"`paca {' '.join(args)}` exited {res.returncode} after {t1 - t0:.2f}s"
        f"\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}")
    return res, t0, t1


def _brief(resp: requests.Response) -> str:
    rid = resp.headers.get("X-Request-ID")
    return f"{resp.request.method} {resp.request.url} -> {resp.status_code} request_id={rid} {resp.text[:300]!r}"


class Writer(threading.Thread):
    """Owns `tasks`; PATCHes their titles round robin, sometimes comments or creates a task."""

    def __init__(self, k: int, srv, pid: str, tasks: list[str], stop: threading.Event):
        super().__init__(name=f"writer-{k}", daemon=True)
        self.k, self.srv, self.pid, self.tasks, self.stop = k, srv, pid, tasks, stop
        self.client = srv.admin()
        self.last_title: dict[str, str] = {}          # task id -> last acknowledged title
        self.acked_patches = 0
        self.patch_acks: list[tuple[float, float, str, str]] = []  # (sent, acked, task, title)
        self.comments: list[tuple[str, str, str]] = []  # (task id, comment id, text)
        self.created: list[tuple[str, str]] = []        # (task id, title)
        self.retries = Counter()
        self.failures: list[str] = []

    def _send(self, method: str, path: str, body: dict, expect: int):
        """Send until a 2xx (retrying 409/503 with the same body); None on a failure."""
        for _ in range(MAX_RETRIES):
            sent = time.monotonic()
            try:
                r = self.client.request(method, path, json=body)
            except requests.RequestException as e:
                self.failures.append(f"{method} {path} {body!r}: transport error {e!r}")
                return None
            if r.status_code in RETRYABLE:
                self.retries[r.status_code] += 1
                time.sleep(0.01)
                continue
            if r.status_code != expect:
                self.failures.append(f"{_brief(r)} (body {body!r})")
                return None
            try:
                data = r.json()["data"]
            except (ValueError, KeyError, TypeError):
                self.failures.append(f"2xx without a success envelope: {_brief(r)}")
                return None
            return sent, time.monotonic(), data
        self.failures.append(f"{method} {path} {body!r}: still 409/503 after {MAX_RETRIES} attempts")
        return None

    def run(self):
        n = 0
        try:
            while not self.stop.is_set() and not self.failures:
                n += 1
                tid = self.tasks[n % len(self.tasks)]
                if n % COMMENT_EVERY == 0 and len(self.comments) < MAX_COMMENTS:
                    text = f"c-w{self.k}-{n}"
                    got = self._send("POST", P(self.pid, f"/tasks/{tid}/activities/comments"),
                                     {"content": blocks(text)}, 201)
                    if got:
                        self.comments.append((tid, got[2]["id"], text))
                    continue
                if n % CREATE_EVERY == 0 and len(self.created) < MAX_CREATES:
                    title = f"new-w{self.k}-{n}"
                    got = self._send("POST", P(self.pid, "/tasks"), {"title": title}, 201)
                    if got:
                        self.created.append((got[2]["id"], title))
                    continue
                title = f"w{self.k}-{n}"
                got = self._send("PATCH", P(self.pid, f"/tasks/{tid}"), {"title": title}, 200)
                if got:
                    sent, acked, data = got
                    if data.get("title") != title:
                        self.failures.append(f"PATCH {tid} title={title!r} answered title={data.get('title')!r}")
                    self.last_title[tid] = title
                    self.acked_patches += 1
                    self.patch_acks.append((sent, acked, tid, title))
        except Exception as e:  # pragma: no cover - a bug in the test itself
            self.failures.append(f"writer crashed: {e!r}")


class Reader(threading.Thread):
    """Keeps reading the task list and single tasks; records every answer's status."""

    def __init__(self, srv, pid: str, tasks: list[str], stop: threading.Event):
        super().__init__(name="reader", daemon=True)
        self.srv, self.pid, self.tasks, self.stop = srv, pid, tasks, stop
        self.client = srv.admin()
        self.statuses = Counter()
        self.bad: list[str] = []
        self.reads: list[tuple[float, float]] = []

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            paths = [P(self.pid, "/tasks?page_size=50"), P(self.pid, f"/tasks/{self.tasks[i % len(self.tasks)]}")]
            for path in paths:
                t0 = time.monotonic()
                try:
                    r = self.client.get(path)
                except requests.RequestException as e:
                    self.statuses["transport-error"] += 1
                    self.bad.append(f"GET {path}: transport error {e!r}")
                    continue
                self.statuses[r.status_code] += 1
                self.reads.append((t0, time.monotonic()))
                if r.status_code != 200:
                    self.bad.append(_brief(r))
                elif path.endswith(self.tasks[i % len(self.tasks)]) and r.json()["data"].get("id") != self.tasks[
                        i % len(self.tasks)]:
                    self.bad.append(f"GET {path} returned another task: {r.text[:200]!r}")


def _event_count(srv) -> int:
    return int(psql("SELECT count(*) FROM events", srv.database_url).strip())


def _add_ballast(srv, target: int) -> None:
    """Title PATCHes on a separate project until the log holds `target` events."""
    admin = srv.admin()
    r = admin.post("/projects", json={"name": "Ballast"})
    assert r.status_code == 201, _brief(r)
    bid = r.json()["data"]["id"]
    tasks = [create_task(admin, bid, f"ballast {i}")["id"] for i in range(BALLAST_THREADS)]
    per_thread = max(0, target - _event_count(srv)) // BALLAST_THREADS + 1
    errors = []

    def work(k):
        c = srv.admin()
        for i in range(per_thread):
            r = c.patch(P(bid, f"/tasks/{tasks[k]}"), json={"title": f"ballast {k}-{i}"})
            if r.status_code != 200:
                errors.append(_brief(r))
                return

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(BALLAST_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, "ballast writes failed (before any rebuild):\n" + "\n".join(errors[:10])
    assert _event_count(srv) >= target


def test_rebuild_while_writes_land(srv):
    _add_ballast(srv, BALLAST_EVENTS)
    admin = srv.admin()
    project = admin.post("/projects", json={"name": "Rebuild Under Writes"})
    assert project.status_code == 201, _brief(project)
    pid = project.json()["data"]["id"]
    task_ids = [create_task(admin, pid, f"seed {i}")["id"] for i in range(WRITERS * TASKS_PER_WRITER)]

    stop_writers, stop_reader = threading.Event(), threading.Event()
    writers = [Writer(k, srv, pid, task_ids[k * TASKS_PER_WRITER:(k + 1) * TASKS_PER_WRITER], stop_writers)
               for k in range(WRITERS)]
    reader = Reader(srv, pid, task_ids, stop_reader)
    for t in writers + [reader]:
        t.start()

    rebuilds = []  # (start, end, stdout line)
    try:
        time.sleep(1.0)  # writes are flowing before the first rebuild starts
        began = time.monotonic()
        while len(rebuilds) < MIN_REBUILDS or time.monotonic() - began < REBUILD_WINDOW:
            if any(w.failures for w in writers) or any(not w.is_alive() for w in writers):
                break  # fail fast: the assertions below report what happened
            res, t0, t1 = _cli_ok(srv, "projections", "rebuild")
            rebuilds.append((t0, t1, res.stdout.strip().splitlines()[-1:] or [""]))
        time.sleep(0.5)  # and still flowing after the last swap
    finally:
        stop_reader.set()
        stop_writers.set()
        for t in writers + [reader]:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in writers + [reader]), "a writer/reader thread did not stop"

    failures = [f"writer {w.k}: {f}" for w in writers for f in w.failures]
    assert not failures, "writes failed while `projections rebuild` ran:\n" + "\n".join(failures)
    assert len(rebuilds) >= MIN_REBUILDS, rebuilds

    # the rebuilds really overlapped acknowledged writes and reads (otherwise this proves nothing)
    acks = [a for w in writers for a in w.patch_acks]
    during = [a for a in acks if any(a[0] < e and a[1] > s for s, e, _ in rebuilds)]
    reads_during = [r for r in reader.reads if any(r[0] < e and r[1] > s for s, e, _ in rebuilds)]
    summary = (f"{len(rebuilds)} rebuilds ({', '.join(f'{e - s:.2f}s' for s, e, _ in rebuilds)}): "
               f"{[line for _, _, line in rebuilds]}; {len(acks)} acknowledged PATCHes, {len(during)} of them in "
               f"flight during a rebuild; retries {sum((w.retries for w in writers), Counter())}; "
               f"reads {dict(reader.statuses)} ({len(reads_during)} during a rebuild)")
    print(summary)
    assert len(during) >= 20, "too few writes overlapped the rebuilds: " + summary
    replayed = [int(m.group(1)) for _, _, line in rebuilds for m in [re.search(r"(\d+) events in", line[0])] if m]
    assert len(replayed) == len(rebuilds) and min(replayed) > REPLAY_BATCH, (
        "every rebuild should replay more than one batch: " + summary)
    assert len(reads_during) >= 5, "too few reads overlapped the rebuilds: " + summary

    # 5. reads never failed during the rebuilds
    assert not reader.bad, (f"reads failed while `projections rebuild` ran ({dict(reader.statuses)}):\n"
                            + "\n".join(reader.bad[:30]))
    assert set(reader.statuses) == {200}, dict(reader.statuses)

    # the read models equal a replay of the log
    _cli_ok(srv, "projections", "verify")

    # every task shows its writer's last acknowledged title
    lost = []
    for w in writers:
        for tid in w.tasks:
            want = w.last_title.get(tid)
            got = get_task(admin, pid, tid)["title"]
            if want is not None and got != want:
                lost.append(f"task {tid}: GET title={got!r}, last acknowledged PATCH title={want!r}")
    assert not lost, "acknowledged title updates lost:\n" + "\n".join(lost)
    assert all(len(w.last_title) == TASKS_PER_WRITER for w in writers), "some task was never patched"

    # every acknowledged comment is in its task's activities
    missing_comments = []
    by_task = defaultdict(list)
    for w in writers:
        for tid, cid, text in w.comments:
            by_task[tid].append((cid, text))
    for tid, want in by_task.items():
        acts = {a["id"]: a for a in activities(admin, pid, tid) if a["activity_type"] == "comment"}
        for cid, text in want:
            if cid not in acts or block_texts(acts[cid]["content"]) != [text]:
                missing_comments.append(f"task {tid}: comment {cid} {text!r} -> {acts.get(cid)}")
    assert not missing_comments, "acknowledged comments missing:\n" + "\n".join(missing_comments)
    assert sum(len(w.comments) for w in writers) >= WRITERS, "too few comments were written to prove anything"

    # every acknowledged created task is listed (with its title)
    listed = {t["id"]: t for t in list_all(admin, pid, page_size=100)}
    created = [c for w in writers for c in w.created]
    missing_tasks = [f"{tid} {title!r} -> {listed.get(tid, {}).get('title')!r}" for tid, title in created
                     if tid not in listed or listed[tid]["title"] != title]
    assert not missing_tasks, "acknowledged task creations missing from the list:\n" + "\n".join(missing_tasks)
    assert set(task_ids) <= set(listed), "seed tasks missing from the list"
    assert len(listed) == len(task_ids) + len(created), (len(listed), len(task_ids), len(created))
    assert created, "no task was created during the rebuilds"

    # the log holds a task.updated event carrying every acknowledged title
    rows = psql("SELECT payload::text FROM events WHERE event_type = 'task.updated' "
                f"AND project_id = '{pid}'", srv.database_url).splitlines()
    assert len(rows) >= len(acks), f"{len(rows)} task.updated events for {len(acks)} acknowledged PATCHes"
    logged_titles = Counter()
    for row in rows:
        for change in json.loads(row).get("changes", []):
            if change.get("field") == "title":
                logged_titles[change.get("new")] += 1
    not_logged = [f"{tid} {title!r}" for _, _, tid, title in acks if logged_titles[title] != 1]
    assert not not_logged, (f"{len(not_logged)} acknowledged PATCHes not logged exactly once: "
                            + ", ".join(not_logged[:20]))

"""Races on one aggregate: invariants must hold when requests arrive together."""

import tempfile

import pytest

from conftest import _make_server, _teardown_server, describe, err, ok, unique
from test_2_support import (P, activities, blocks, clone, create_sprint, create_task, get_task, items, list_all,
                            parallel, statuses_of, types_of, views_of)


@pytest.fixture
def project(make_project):
    return make_project(is_public=False)


def statuses(resps):
    return sorted(r.status_code for r in resps)


def test_concurrent_if_match_only_one_wins(admin, project):
    pid = project["id"]
    t = create_task(admin, pid, "contended")
    v = t["version"]
    cs = [clone(admin) for _ in range(10)]
    resps = parallel([(lambda i=i: cs[i].patch(P(pid, f"/tasks/{t['id']}"), json={"title": f"writer {i}"},
                                               headers={"If-Match": f'"{v}"'})) for i in range(10)])
    assert statuses(resps) == [200] + [409] * 9, [(r.status_code, r.text[:120]) for r in resps]
    for r in resps:
        if r.status_code == 409:
            err(r, 409, "CONFLICT")
    winner = next(ok(r) for r in resps if r.status_code == 200)
    final = get_task(admin, pid, t["id"])
    assert final["title"] == winner["title"] and final["version"] == v + 1
    assert len([a for a in activities(admin, pid, t["id"]) if a["activity_type"] == "task.updated"]) == 1


def test_concurrent_sprint_completion_happens_once(admin, project):
    pid = project["id"]
    sts = statuses_of(admin, pid)
    s, nxt = create_sprint(admin, pid, "Race"), create_sprint(admin, pid, "Next")
    open_tasks = [create_task(admin, pid, f"open {i}", sprint_id=s["id"], status_id=sts["Todo"]["id"])
                  for i in range(3)]
    cs = [clone(admin) for _ in range(6)]
    resps = parallel([(lambda i=i: cs[i].post(P(pid, f"/sprints/{s['id']}/complete"),
                                              json={"move_to_sprint_id": nxt["id"]})) for i in range(6)])
    assert statuses(resps) == [200] + [409] * 5, [(r.status_code, r.text[:120]) for r in resps]
    for r in resps:
        if r.status_code == 409:
            err(r, 409, "SPRINT_ALREADY_COMPLETE")
    for t in open_tasks:
        assert get_task(admin, pid, t["id"])["sprint_id"] == nxt["id"]
        sprint_changes = [c for a in activities(admin, pid, t["id"]) if a["activity_type"] == "task.updated"
                          for c in a["content"]["changes"] if c["field"] == "sprint"]
        assert len(sprint_changes) == 1, f"task moved {len(sprint_changes)} times: {sprint_changes}"


def test_concurrent_parent_links_cannot_form_a_cycle(admin, project):
    pid = project["id"]
    for round_ in range(5):
        a = create_task(admin, pid, f"A{round_}")
        b = create_task(admin, pid, f"B{round_}")
        c1, c2 = clone(admin), clone(admin)
        r1, r2 = parallel([lambda: c1.patch(P(pid, f"/tasks/{a['id']}"), json={"parent_task_id": b["id"]}),
                           lambda: c2.patch(P(pid, f"/tasks/{b['id']}"), json={"parent_task_id": a["id"]})])
        pa = get_task(admin, pid, a["id"]).get("parent_task_id")
        pb = get_task(admin, pid, b["id"]).get("parent_task_id")
        assert not (pa == b["id"] and pb == a["id"]), (
            f"round {round_}: concurrent PATCHes created a parent cycle A<->B "
            f"({r1.status_code} {r1.text[:100]} / {r2.status_code} {r2.text[:100]})")
        assert sorted([r1.status_code, r2.status_code]) == [200, 400], (r1.text[:200], r2.text[:200])


def test_concurrent_unique_names(admin, project):
    pid = project["id"]
    cs = [clone(admin) for _ in range(8)]
    resps = parallel([(lambda i=i: cs[i].post(P(pid, "/custom-fields"),
                                              json={"field_key": "dup", "display_name": f"Dup {i}",
                                                    "field_type": "text"})) for i in range(8)])
    assert statuses(resps) == [201] + [409] * 7, [(r.status_code, r.text[:120]) for r in resps]
    assert len([f for f in items(admin.get(P(pid, "/custom-fields"))) if f["field_key"] == "dup"]) == 1
    resps = parallel([(lambda i=i: cs[i].post(P(pid, "/task-types"), json={"name": "Chore"})) for i in range(8)])
    assert statuses(resps) == [201] + [409] * 7, [(r.status_code, r.text[:120]) for r in resps]
    assert list(types_of(admin, pid)).count("Chore") == 1
    assert len([t for t in items(admin.get(P(pid, "/task-types"))) if t["name"] == "Chore"]) == 1


def test_concurrent_position_upserts_and_comments(admin, project):
    pid = project["id"]
    view = views_of(admin, pid, "backlog")[0]
    tasks = [create_task(admin, pid, f"p{i}") for i in range(12)]
    cs = [clone(admin) for _ in tasks]
    resps = parallel([(lambda i=i: cs[i].put(P(pid, f"/views/{view['id']}/task-positions/{tasks[i]['id']}"),
                                             json={"position": float(i + 1), "group_key": f"g{i % 2}"}))
                      for i in range(len(tasks))])
    assert statuses(resps) == [204] * len(tasks), [(r.status_code, r.text[:120]) for r in resps]
    pos = {p["task_id"]: p for p in items(admin.get(P(pid, f"/views/{view['id']}/task-positions")))}
    assert {t["id"]: pos[t["id"]]["position"] for t in tasks} == {t["id"]: float(i + 1) for i, t in
                                                                  enumerate(tasks)}
    target = tasks[0]
    resps = parallel([(lambda i=i: cs[i].post(P(pid, f"/tasks/{target['id']}/activities/comments"),
                                              json={"content": blocks(f"comment {i}")})) for i in range(12)])
    assert statuses(resps) == [201] * 12
    comments = [a for a in activities(admin, pid, target["id"]) if a["activity_type"] == "comment"]
    assert len(comments) == 12 and len({c["id"] for c in comments}) == 12


def test_concurrent_creation_in_two_projects(admin, make_project):
    p1, p2 = make_project(), make_project()
    cs = [clone(admin) for _ in range(20)]
    resps = parallel([(lambda i=i: cs[i].post(P((p1 if i % 2 else p2)["id"], "/tasks"), json={"title": f"t{i}"}))
                      for i in range(20)])
    for r in resps:
        ok(r, 201)
    for p in (p1, p2):
        nums = sorted(t["task_number"] for t in list_all(admin, p["id"], page_size=200))
        assert nums == list(range(1, 11)), nums


def test_deleting_a_status_races_with_its_first_use(admin, project):
    """Either the status is deleted and nothing uses it, or the delete is refused (TASK_STATUS_IN_USE):
    a live task must never point at a deleted status."""
    pid = project["id"]
    for round_ in range(6):
        st = ok(admin.post(P(pid, "/task-statuses"), json={"name": f"Temp {round_}", "category": "todo"}), 201)
        c1, c2 = clone(admin), clone(admin)
        rd, rc = parallel([lambda: c1.delete(P(pid, f"/task-statuses/{st['id']}")),
                           lambda: c2.post(P(pid, "/tasks"), json={"title": f"uses temp {round_}",
                                                                   "status_id": st["id"]})])
        live = {s["id"] for s in items(admin.get(P(pid, "/task-statuses")))}
        users = [t for t in list_all(admin, pid, page_size=200) if t["status_id"] == st["id"]]
        if st["id"] not in live:
            assert not users, (f"round {round_}: status deleted ({rd.status_code}) but task created with it "
                               f"({rc.status_code}): {[t['id'] for t in users]}")


def test_deleting_a_sprint_races_with_moving_a_task_into_it(admin, project):
    """DELETE sprint sets its tasks' sprint_id to null; a concurrent move into it must not leave a task
    pointing at a deleted sprint."""
    pid = project["id"]
    for round_ in range(6):
        s = create_sprint(admin, pid, f"Doomed {round_}")
        t = create_task(admin, pid, f"mover {round_}")
        c1, c2 = clone(admin), clone(admin)
        rd, rp = parallel([lambda: c1.delete(P(pid, f"/sprints/{s['id']}")),
                           lambda: c2.patch(P(pid, f"/tasks/{t['id']}"), json={"sprint_id": s["id"]})])
        ok(rd)
        assert get_task(admin, pid, t["id"]).get("sprint_id") is None, (
            f"round {round_}: task points at deleted sprint (PATCH {rp.status_code} {rp.text[:150]})")


def test_a_contended_task_takes_every_write(admin, project):
    """Writers without If-Match racing on one task must all land: the
    optimistic one-round-trip path gives way to the locking path under
    contention instead of answering 409 after its retries."""
    pid = project["id"]
    t = create_task(admin, pid, "hot")
    writers, rounds = 16, 6
    cs = [clone(admin) for _ in range(writers)]

    def write(i):
        return [cs[i].patch(P(pid, f"/tasks/{t['id']}"), json={"title": f"w{i} r{k}"}) for k in range(rounds)]

    resps = [r for batch in parallel([(lambda i=i: write(i)) for i in range(writers)]) for r in batch]
    assert statuses(resps) == [200] * (writers * rounds), [(r.status_code, r.text[:120]) for r in resps
                                                           if r.status_code != 200][:5]
    final = get_task(admin, pid, t["id"])
    assert final["version"] == t["version"] + writers * rounds
    updates = [a for a in activities(admin, pid, t["id"]) if a["activity_type"] == "task.updated"]
    assert len(updates) == writers * rounds


def test_creation_numbers_stay_dense_across_two_nodes():
    """Each server keeps its own copy of a project's task counter for one-round-trip creates; a create that
    finds its copy stale (the other node, or a transactional create with a parent, took a number) is decided
    again, so numbers stay dense and unique whichever node answers."""
    a, dbname = _make_server("num-a")
    a.start()
    b = None
    try:
        b = type(a)("num-b", a.database_url, tempfile.mkdtemp(prefix="paca-data-num-b-"),
                    admin_password=a.admin_password, jwt_secret=a.jwt_secret)
        b.start()
        ca, cb = a.admin(), b.admin()
        pid = ok(ca.post("/projects", json={"name": unique("Numbers ")}), 201)["id"]
        first = create_task(ca, pid, "a1")
        assert first["task_number"] == 1
        assert create_task(cb, pid, "b1")["task_number"] == 2
        assert create_task(ca, pid, "a2")["task_number"] == 3, "node a decided from a stale counter"
        child = create_task(cb, pid, "b child", parent_task_id=first["id"])
        assert child["task_number"] == 4
        assert create_task(cb, pid, "b2")["task_number"] == 5
        assert create_task(ca, pid, "a3")["task_number"] == 6

        clients = [clone(ca) for _ in range(8)] + [clone(cb) for _ in range(8)]

        def make(i):
            return lambda: clients[i].post(P(pid, "/tasks"), json={"title": f"race {i}"})

        resps = parallel([make(i) for i in range(len(clients))])
        nums = sorted(ok(r, 201)["task_number"] for r in resps)
        assert nums == list(range(7, 23)), f"task numbers across two nodes: {nums}"
        listed = sorted(t["task_number"] for t in list_all(ca, pid, page_size=200))
        assert listed == list(range(1, 23))
    finally:
        if b is not None:
            _teardown_server(b, None)
        _teardown_server(a, dbname)

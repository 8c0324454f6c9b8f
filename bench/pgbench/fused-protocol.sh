#!/usr/bin/env bash
# What a fused `PATCH` batch costs PostgreSQL, by how it is sent
# (docs/performance.md, "Where the database's time goes: literal SQL").
#
# A scratch database is migrated and seeded by a real `paca serve` (one
# project, 200 tasks, each patched once), then pgbench sends the batch a
# task title `PATCH` commits today four ways, 8 clients, each on its own
# 25 tasks (so no conflicts), runs interleaved:
#
#   literal   the simple-query batch the server sent before it used EXECUTEs
#             (and still sends behind a pooler): claim_stream, the
#             event insert, the tasks update, the activity insert, the
#             read marker and the response read, values as literals
#   execute   the same statements PREPAREd once per connection (SQL-level)
#             and sent as one simple-query batch of EXECUTEs (what the
#             server sends)
#   pipeline  the same statements as protocol-level prepared statements,
#             parameters bound, pipelined with one Sync (one round trip,
#             one implicit transaction): what a driver with pipelining sends
#   cte       the same writes as ONE protocol-level prepared statement:
#             data-modifying CTEs (the event insert reads the claim's CTE,
#             so the claim runs first), the response read from the tasks
#             update's RETURNING (a CTE cannot see its siblings' writes);
#             what sqlx can send today (one Parse once, Bind, Execute, Sync)
#
# Every variant first reads the task's stream version (its own round trip;
# ~40 us of PostgreSQL CPU literal, ~30 prepared).
#
# Usage: bash bench/pgbench/fused-protocol.sh [RUNS] [SECONDS]
#   PACA_BIN      server binary (default target/release/paca)
#   DATABASE_URL  admin connection (default postgres://postgres@127.0.0.1:5432/postgres)
# Prints tx/s and PostgreSQL CPU per transaction (the postmaster's children,
# live and reaped, from /proc: run it on the database's host, nothing else
# using that server).
set -euo pipefail

RUNS=${1:-3}
SECONDS_PER_RUN=${2:-6}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PACA_BIN=${PACA_BIN:-$ROOT/target/release/paca}
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=paca_pgbench_$$
URL=${ADMIN_URL%/*}/$DB
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PASSWORD=Bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
SERVER=

cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

postgres_cpu() {
    # CPU ticks of the postmaster's children: live ones, and reaped ones
    # (the postmaster's cutime/cstime).
    local pm t=0
    pm=$(pgrep -o -x postgres)
    for p in $pm $(pgrep -P "$pm"); do
        t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

psql "$ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
DATABASE_URL=$URL PORT=$PORT PACA_BIND=127.0.0.1 PACA_DATA_DIR=$WORK/data \
    ADMIN_USERNAME=admin ADMIN_PASSWORD=$PASSWORD JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
    RUST_LOG=warn "$PACA_BIN" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
API=http://127.0.0.1:$PORT/api/v1
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/api/healthz" >/dev/null && break
    sleep 0.2
done
JAR=$WORK/cookies
curl -sf -c "$JAR" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}" "$API/auth/login" >/dev/null
call() { curl -sf -b "$JAR" -H 'content-type: application/json' -X "$1" -d "$3" "$API$2"; }
PROJECT=$(call POST /projects '{"name":"pgbench"}' | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("id") or d["data"]["id"])')
USER_ID=$(curl -sf -b "$JAR" "$API/users/me" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("id") or d["data"]["id"])')
for i in $(seq 0 199); do
    task=$(call POST "/projects/$PROJECT/tasks" "{\"title\":\"t$i\"}" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("id") or d["data"]["id"])')
    call PATCH "/projects/$PROJECT/tasks/$task" "{\"title\":\"w$i\"}" >/dev/null
    echo "$i,$task"
done >"$WORK/tasks.csv"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
psql "$URL" -qc "CREATE TABLE bench_tasks (i INT PRIMARY KEY, id UUID NOT NULL)" \
    -c "\\copy bench_tasks FROM '$WORK/tasks.csv' CSV" >/dev/null
GUARD=$(psql "$URL" -Atc "SELECT version FROM streams WHERE stream_id = '$PROJECT'")

P=$PROJECT U=$USER_ID
PAYLOAD='{"changes":[{"field":"title","old":"w0","new":"x"}]}'
META="{\"actor\":{\"kind\":\"user\",\"user_id\":\"$U\"},\"source\":\"rest\",\"request_id\":\"01a24fdf-7b39-74e3-9f3e-22df498d1383\",\"correlation_id\":\"01a24fdf-7b39-74e3-9f3e-22df498d1383\",\"occurred_at\":\"2026-12-07T09:39:35.865390947Z\"}"
COLUMNS_READ="id, project_id, task_number, title, task_type_id, status_id, sprint_id, parent_task_id, description, importance, story_points, assignee_ids, reporter_id, custom_fields, start_date, due_date, tags, version, created_at, updated_at, deleted_at, origin"
PRE='\set k random(0, 24)
\set i :client_id * 25 + :k
SELECT b.id AS tid, s.version AS v, s.version + 1 AS nv, gen_random_uuid() AS eid FROM bench_tasks b JOIN streams s ON s.stream_id = b.id WHERE b.i = :i \gset'

cat >"$WORK/literal.sql" <<EOF
$PRE
SELECT claim_stream(':tid'::uuid, 'task'::text, ':v'::bigint, '1'::bigint, ARRAY['$P'::uuid]::uuid[], ARRAY['$GUARD'::bigint]::bigint[]) \; INSERT INTO events (stream_type, stream_id, project_id, version, event_id, event_type, schema_version, payload, metadata) VALUES ('task'::text, ':tid'::uuid, '$P'::uuid, ':nv'::bigint, ':eid'::uuid, 'task.updated'::text, '1'::bigint, '$PAYLOAD'::jsonb, '$META'::jsonb) RETURNING global_position, tx_id::text::bigint AS tx_id, version, event_id, recorded_at \; UPDATE tasks SET title = 'x'::text, version = ':nv'::bigint, updated_at = now() WHERE id = ':tid'::uuid \; INSERT INTO task_activities (id, task_id, project_id, actor_user_id, activity_type, content, event_id, version, created_at, updated_at, actor_agent_id, actor_plugin) VALUES (':eid'::uuid, ':tid'::uuid, '$P'::uuid, '$U'::uuid, 'task.updated'::text, '$PAYLOAD'::jsonb, ':eid'::uuid, ':nv'::bigint, now(), now(), NULL::uuid, NULL::text) \; SELECT 0 AS paca_fused_read \; SELECT $COLUMNS_READ FROM tasks WHERE id = ':tid'::uuid;
EOF

cat >"$WORK/execute.sql" <<EOF
$PRE
\if :prepared = 0
PREPARE f_claim (uuid, text, bigint, bigint, uuid[], bigint[]) AS SELECT claim_stream(\$1, \$2, \$3, \$4, \$5, \$6);
PREPARE f_event (text, uuid, uuid, bigint, uuid, text, bigint, jsonb, jsonb) AS INSERT INTO events (stream_type, stream_id, project_id, version, event_id, event_type, schema_version, payload, metadata) VALUES (\$1, \$2, \$3, \$4, \$5, \$6, \$7, \$8, \$9) RETURNING global_position, tx_id::text::bigint AS tx_id, version, event_id, recorded_at;
PREPARE f_task (text, bigint, uuid) AS UPDATE tasks SET title = \$1, version = \$2, updated_at = now() WHERE id = \$3;
PREPARE f_activity (uuid, uuid, uuid, uuid, text, jsonb, uuid, bigint, uuid, text) AS INSERT INTO task_activities (id, task_id, project_id, actor_user_id, activity_type, content, event_id, version, created_at, updated_at, actor_agent_id, actor_plugin) VALUES (\$1, \$2, \$3, \$4, \$5, \$6, \$7, \$8, now(), now(), \$9, \$10);
PREPARE f_read (uuid) AS SELECT $COLUMNS_READ FROM tasks WHERE id = \$1;
\set prepared 1
\endif
EXECUTE f_claim(':tid'::uuid, 'task'::text, ':v'::bigint, '1'::bigint, ARRAY['$P'::uuid]::uuid[], ARRAY['$GUARD'::bigint]::bigint[]) \; EXECUTE f_event('task'::text, ':tid'::uuid, '$P'::uuid, ':nv'::bigint, ':eid'::uuid, 'task.updated'::text, '1'::bigint, '$PAYLOAD'::jsonb, '$META'::jsonb) \; EXECUTE f_task('x'::text, ':nv'::bigint, ':tid'::uuid) \; EXECUTE f_activity(':eid'::uuid, ':tid'::uuid, '$P'::uuid, '$U'::uuid, 'task.updated'::text, '$PAYLOAD'::jsonb, ':eid'::uuid, ':nv'::bigint, NULL::uuid, NULL::text) \; SELECT 0 AS paca_fused_read \; EXECUTE f_read(':tid'::uuid);
EOF

cat >"$WORK/pipeline.sql" <<EOF
$PRE
\startpipeline
SELECT claim_stream(:tid::uuid, 'task'::text, :v::bigint, '1'::bigint, ARRAY['$P'::uuid]::uuid[], ARRAY['$GUARD'::bigint]::bigint[]);
INSERT INTO events (stream_type, stream_id, project_id, version, event_id, event_type, schema_version, payload, metadata) VALUES ('task'::text, :tid::uuid, '$P'::uuid, :nv::bigint, :eid::uuid, 'task.updated'::text, '1'::bigint, '$PAYLOAD'::jsonb, '$META'::jsonb) RETURNING global_position, tx_id::text::bigint AS tx_id, version, event_id, recorded_at;
UPDATE tasks SET title = 'x'::text, version = :nv::bigint, updated_at = now() WHERE id = :tid::uuid;
INSERT INTO task_activities (id, task_id, project_id, actor_user_id, activity_type, content, event_id, version, created_at, updated_at, actor_agent_id, actor_plugin) VALUES (:eid::uuid, :tid::uuid, '$P'::uuid, '$U'::uuid, 'task.updated'::text, '$PAYLOAD'::jsonb, :eid::uuid, :nv::bigint, now(), now(), NULL::uuid, NULL::text);
SELECT $COLUMNS_READ FROM tasks WHERE id = :tid::uuid;
\endpipeline
EOF

cat >"$WORK/cte.sql" <<EOF
$PRE
WITH c AS (SELECT claim_stream(:tid::uuid, 'task'::text, :v::bigint, '1'::bigint, ARRAY['$P'::uuid]::uuid[], ARRAY['$GUARD'::bigint]::bigint[])), e AS (INSERT INTO events (stream_type, stream_id, project_id, version, event_id, event_type, schema_version, payload, metadata) SELECT 'task'::text, :tid::uuid, '$P'::uuid, :nv::bigint, :eid::uuid, 'task.updated'::text, '1'::bigint, '$PAYLOAD'::jsonb, '$META'::jsonb FROM c RETURNING global_position, tx_id::text::bigint AS tx_id, version, event_id, recorded_at), t AS (UPDATE tasks SET title = 'x'::text, version = :nv::bigint, updated_at = now() WHERE id = :tid::uuid AND EXISTS (SELECT 1 FROM e) RETURNING $COLUMNS_READ), a AS (INSERT INTO task_activities (id, task_id, project_id, actor_user_id, activity_type, content, event_id, version, created_at, updated_at, actor_agent_id, actor_plugin) SELECT :eid::uuid, :tid::uuid, '$P'::uuid, '$U'::uuid, 'task.updated'::text, '$PAYLOAD'::jsonb, :eid::uuid, :nv::bigint, now(), now(), NULL::uuid, NULL::text FROM e) SELECT * FROM e, t;
EOF

run() {
    local name=$1 mode=$2 before after out tx tps
    before=$(postgres_cpu)
    out=$(PGOPTIONS="-c search_path=rm,public" pgbench "$URL" -n -M "$mode" -D prepared=0 \
        -c 8 -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/$name.sql" 2>&1)
    sleep 1 # let the postmaster reap the clients' backends
    after=$(postgres_cpu)
    if grep -qi "error" <<<"$out"; then
        echo "$name: pgbench failed:" >&2
        echo "$out" >&2
        exit 1
    fi
    tx=$(awk '/actually processed/ {split($NF, a, "/"); print a[1]}' <<<"$out")
    tps=$(awk '/^tps/ {printf "%.0f", $3}' <<<"$out")
    printf '%-9s %6s tx/s  %4s us of PostgreSQL CPU per transaction\n' \
        "$name" "$tps" $(((after - before) * 1000000 / $(getconf CLK_TCK) / tx))
}

echo "8 clients, $SECONDS_PER_RUN s per run, $RUNS interleaved runs"
for _ in $(seq "$RUNS"); do
    run literal simple
    run execute simple
    run pipeline prepared
    run cte prepared
done

/* com.test.probe: a WASI reactor plugin that exercises every host function
 * of the `paca` module (PLUGIN-ABI.md §2) and a migration; used by the
 * black-box tests (tests/blackbox/test_40_plugins.py). */
#include "../paca.h"

#ifndef VERSION
#define VERSION "1.0.0"
#endif

static int initialised;

EXPORT("Init") int32_t Init(void) {
    initialised = 1;
    paca_log(1, S("probe " VERSION " initialised"));
    return 0;
}

EXPORT("Shutdown") void Shutdown(void) { paca_log(1, S("probe shutting down")); }

/* HandleEvent(topic, payload): record subscribed core events in its table. */
EXPORT("HandleEvent") void HandleEvent(int32_t tp, int32_t tl, int32_t pp, int32_t pl) {
    char *topic = request_text(tp, tl);
    char *payload = request_text(pp, pl);
    buf_t params = {0};
    puts_(&params, "[");
    put_str(&params, topic);
    puts_(&params, ",");
    puts_(&params, *payload ? payload : "null");
    puts_(&params, "]");
    const char *sql = "INSERT INTO seen_events (topic, payload) VALUES ($1, $2)";
    uint64_t rows = 0;
    out_t err = {0, 0};
    db_exec(S(sql), P(params.p), (i64)params.n, P(&rows), P(&err.ptr), P(&err.len));
    if (err.len) {
        char *e = take(err);
        paca_log(3, S(e));
        free(e);
    }
    free(params.p);
    free(topic);
    free(payload);
}

static char *call_in_out(void (*f)(i64, i64, i64, i64), const char *in) {
    out_t o = {0, 0};
    f(S(in), P(&o.ptr), P(&o.len));
    return take(o);
}

static i64 exercise(const char *req_body) {
    buf_t b = {0};
    char task_id[64], project_id[64];
    puts_(&b, "{");

    /* Request accessors. */
    out_t o = {0, 0};
    http_caller_identity(P(&o.ptr), P(&o.len));
    char *identity = take(o);
    field_raw(&b, "identity", identity);
    json_get(identity, "project_id", project_id, sizeof project_id);
    o = (out_t){0, 0};
    http_request_headers(P(&o.ptr), P(&o.len));
    char *headers = take(o);
    field_raw(&b, "headers", headers);
    field_raw(&b, "body", req_body);
    json_get(req_body, "task_id", task_id, sizeof task_id);
    http_respond(200, 0, 0);

    /* Core reads. */
    char *x;
    x = call_in_out(project_get, project_id); field_raw(&b, "project", x); free(x);
    x = call_in_out(tasks_list, project_id); field_raw(&b, "tasks", x); free(x);
    x = call_in_out(task_get, task_id); field_raw(&b, "task", x); free(x);
    x = call_in_out(members_list, project_id); field_raw(&b, "members", x); free(x);
    field_int(&b, "can_read_tasks", permission_check(S("tasks.read")));
    field_int(&b, "can_delete_users", permission_check(S("users.delete")));

    /* Config and settings. */
    x = call_in_out(config_get, "GREETING"); field_str(&b, "config", x); free(x);
    x = call_in_out(config_get, "DATABASE_URL"); field_str(&b, "config_not_allowed", x); free(x);
    o = (out_t){0, 0};
    settings_get(P(&o.ptr), P(&o.len));
    x = take(o); field_raw(&b, "settings", x); free(x);

    /* Key-value storage (its schema's plugin_kv). */
    field_int(&b, "storage_set", storage_set(S("k1"), S("v1")));
    x = call_in_out(storage_get, "k1"); field_str(&b, "storage_get", x); free(x);
    field_int(&b, "storage_delete", storage_delete(S("k1")));
    x = call_in_out(storage_get, "k1"); field_str(&b, "storage_after_delete", x); free(x);

    /* Cache (Valkey or in-process). */
    field_int(&b, "cache_set", cache_set(S("c1"), S("cached"), 60));
    x = call_in_out(cache_get, "c1"); field_str(&b, "cache_get", x); free(x);
    field_int(&b, "cache_delete", cache_delete(S("c1")));
    x = call_in_out(cache_get, "c1"); field_str(&b, "cache_after_delete", x); free(x);

    /* Its own tables (created by migrations/0001_init.sql). */
    uint64_t rows = 0;
    out_t err = {0, 0};
    const char *ins = "INSERT INTO notes (project_id, body) VALUES ($1, $2)";
    char params[160];
    snprintf(params, sizeof params, "[\"%s\", \"from probe\"]", project_id);
    db_exec(S(ins), S(params), P(&rows), P(&err.ptr), P(&err.len));
    x = take(err); field_str(&b, "db_exec_error", x); free(x);
    field_int(&b, "db_exec_rows", (long long)rows);
    out_t res = {0, 0}, qerr = {0, 0};
    const char *sel = "SELECT body, count(*) OVER () AS n FROM notes WHERE project_id = $1";
    snprintf(params, sizeof params, "[\"%s\"]", project_id);
    db_query2(S(sel), S(params), P(&res.ptr), P(&res.len), P(&qerr.ptr), P(&qerr.len));
    x = take(res); field_raw(&b, "db_query2", x); free(x);
    x = take(qerr); field_str(&b, "db_query2_error", x); free(x);
    res = (out_t){0, 0};
    db_query(S("SELECT 1 AS one"), 0, 0, P(&res.ptr), P(&res.len));
    x = take(res); field_raw(&b, "db_query", x); free(x);
    res = (out_t){0, 0}; qerr = (out_t){0, 0};
    db_query2(S("SELECT * FROM no_such_table"), 0, 0, P(&res.ptr), P(&res.len), P(&qerr.ptr), P(&qerr.len));
    x = take(res); free(x);
    x = take(qerr); field_str(&b, "db_error", x); free(x);

    /* Events and activity, attributed to the plugin and the caller. */
    field_int(&b, "event_subscribe", event_subscribe(S("task.created")));
    field_int(&b, "event_emit", event_emit(S("probe.exercised"), S("{\"ok\":true}")));
    field_int(&b, "event_emit_core_topic", event_emit(S("task.deleted"), S("{}")));
    char activity[256];
    snprintf(activity, sizeof activity,
             "{\"task_id\":\"%s\",\"activity_type\":\"probe.note\",\"content\":{\"text\":\"hi\"}}", task_id);
    field_int(&b, "activity_record", activity_record(S(activity)));
    paca_log(0, S("debug line"));
    paca_log(2, S("warn line"));
    field_int(&b, "initialised", initialised);
    puts_(&b, "\"version\":\"" VERSION "\"}");
    free(identity);
    free(headers);
    i64 r = respond(200, b.p);
    free(b.p);
    return r;
}

EXPORT("HandleRequest") i64 HandleRequest(int32_t ptr, int32_t len) {
    char *env = request_text(ptr, len);
    parse_request(env);
    out_t o = {0, 0};
    http_request_body(P(&o.ptr), P(&o.len));
    char *body = take(o);
    i64 r;
    if (starts(path, "ping")) {
        r = respond(200, "{\"pong\":true,\"version\":\"" VERSION "\"}");
    } else if (starts(path, "whoami")) {
        o = (out_t){0, 0};
        http_caller_identity(P(&o.ptr), P(&o.len));
        char *id = take(o);
        o = (out_t){0, 0};
        http_request_headers(P(&o.ptr), P(&o.len));
        char *h = take(o);
        buf_t b = {0};
        puts_(&b, "{");
        field_raw(&b, "identity", id);
        field_raw(&b, "headers", h);
        field_str(&b, "method", method);
        puts_(&b, "\"envelope_ok\":true}");
        r = respond(200, b.p);
        free(b.p); free(id); free(h);
    } else if (strstr(path, "/exercise")) {
        r = exercise(*body ? body : "{}");
    } else if (strstr(path, "/public-info")) {
        char project_id[64];
        o = (out_t){0, 0};
        http_caller_identity(P(&o.ptr), P(&o.len));
        char *id = take(o);
        json_get(id, "project_id", project_id, sizeof project_id);
        char *p = call_in_out(project_get, project_id);
        r = respond(200, p);
        free(p); free(id);
    } else if (starts(path, "events")) {
        out_t res = {0, 0}, err = {0, 0};
        const char *sql = "SELECT topic, payload FROM seen_events ORDER BY id";
        db_query2(S(sql), 0, 0, P(&res.ptr), P(&res.len), P(&err.ptr), P(&err.len));
        char *x = take(res), *e = take(err);
        r = respond(*e ? 500 : 200, *e ? "{\"error\":\"query failed\"}" : x);
        free(x); free(e);
    } else if (starts(path, "fetch")) {
        char *x = call_in_out(paca_fetch, body);
        r = respond(200, x);
        free(x);
    } else {
        r = respond(418, "{\"error\":\"the probe has no such handler\"}");
    }
    free(body);
    free(env);
    return r;
}

/* com.test.orchestration: a WASI reactor plugin that exercises the
 * orchestration host functions of the `paca` module (task_create/update/
 * comment/link, docs_list/doc_get/doc_create/doc_update, wakeup_schedule/
 * cancel with the HandleWakeup export, summary_set) next to its own tables;
 * used by tests/blackbox/test_42_orchestration.py.
 *
 * Routes (plugin.json):
 *   GET    ping                                      readiness
 *   POST   projects/:projectId/tasks/:taskId/smoke   {"key", "wakeup_after_ms"?}
 *   DELETE projects/:projectId/wakeups/:wakeupId     wakeup_cancel
 *   GET    projects/:projectId/wakeups-fired         rows HandleWakeup wrote
 * A failing host call answers 403 (error_code FORBIDDEN) or 400 with
 * {"step": "<host function>", "error", "error_code"}. */
#include "../paca.h"

#ifndef VERSION
#define VERSION "1.0.0"
#endif

EXPORT("Init") int32_t Init(void) {
    paca_log(1, S("orchestration " VERSION " initialised"));
    return 0;
}

/* ------------------------------------------------------------ JSON reading
 * A small, strict-enough scanner for the host's answers: finds a value by a
 * dotted path of object keys and array indexes ("task.id", "rows.0.0")
 * without being fooled by nested objects (a task's description blocks carry
 * their own "id"s). Keys are compared byte-wise (no unescaping). */

static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* p at an opening quote: just past the closing one, or NULL. */
static const char *skip_string(const char *p) {
    for (p++; *p; p++) {
        if (*p == '\\') {
            if (!p[1]) return NULL;
            p++;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* Just past the JSON value at p (leading whitespace allowed), or NULL. */
static const char *skip_value(const char *p) {
    if (!p) return NULL;
    p = ws(p);
    if (*p == '"') return skip_string(p);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (*p) {
            if (*p == '"') {
                p = skip_string(p);
                if (!p) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
            p++;
        }
        return NULL;
    }
    const char *start = p;
    while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') p++;
    return p == start ? NULL : p;
}

/* The member `seg` (n bytes) of the object at p, or element number `seg` of
 * the array at p; NULL when absent. */
static const char *child(const char *p, const char *seg, size_t n) {
    p = ws(p);
    if (*p == '{') {
        p = ws(p + 1);
        if (*p == '}') return NULL;
        for (;;) {
            if (*p != '"') return NULL;
            const char *key = p + 1;
            const char *after = skip_string(p);
            if (!after) return NULL;
            size_t klen = (size_t)(after - 1 - key);
            p = ws(after);
            if (*p != ':') return NULL;
            p = ws(p + 1);
            if (klen == n && memcmp(key, seg, n) == 0) return p;
            p = skip_value(p);
            if (!p) return NULL;
            p = ws(p);
            if (*p != ',') return NULL;
            p = ws(p + 1);
        }
    }
    if (*p == '[') {
        long index = 0;
        if (n == 0) return NULL;
        for (size_t i = 0; i < n; i++) {
            if (seg[i] < '0' || seg[i] > '9') return NULL;
            index = index * 10 + (seg[i] - '0');
        }
        p = ws(p + 1);
        if (*p == ']') return NULL;
        for (long i = 0;; i++) {
            if (i == index) return p;
            p = skip_value(p);
            if (!p) return NULL;
            p = ws(p);
            if (*p != ',') return NULL;
            p = ws(p + 1);
        }
    }
    return NULL;
}

/* The value at a dotted path ("" = the whole text), its length in *len. */
static const char *jfind(const char *json, const char *path, size_t *len) {
    const char *p = json;
    if (!p) return NULL;
    while (p && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        p = child(p, path, n);
        path += n + (dot ? 1 : 0);
    }
    if (!p) return NULL;
    p = ws(p);
    const char *end = skip_value(p);
    if (!end) return NULL;
    if (len) *len = (size_t)(end - p);
    return p;
}

/* A copy of the raw JSON value at path, or NULL when absent or null. */
static char *jraw(const char *json, const char *path) {
    size_t n = 0;
    const char *v = jfind(json, path, &n);
    if (!v || (n == 4 && memcmp(v, "null", 4) == 0)) return NULL;
    char *s = malloc(n + 1);
    memcpy(s, v, n);
    s[n] = 0;
    return s;
}

/* The string at path into out (simple escapes undone); 1 if it is a string. */
static int jstr(const char *json, const char *path, char *out, size_t cap) {
    size_t n = 0, o = 0;
    const char *v = jfind(json, path, &n);
    out[0] = 0;
    if (!v || *v != '"' || n < 2) return 0;
    for (size_t i = 1; i + 1 < n && o + 1 < cap; i++) {
        char c = v[i];
        if (c == '\\' && i + 2 < n) {
            char e = v[++i];
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
            if (e == 'u') { /* \uXXXX is kept as it is (test data is ASCII) */
                out[o++] = '\\';
                if (o + 1 >= cap) break;
            }
        }
        out[o++] = c;
    }
    out[o] = 0;
    return 1;
}

/* 1 if the value at path is `true`. */
static int jtrue(const char *json, const char *path) {
    size_t n = 0;
    const char *v = jfind(json, path, &n);
    return v && n == 4 && memcmp(v, "true", 4) == 0;
}

/* The number of elements of the array at path, -1 if it is not an array. */
static int jcount(const char *json, const char *path) {
    size_t n = 0;
    const char *p = jfind(json, path, &n);
    if (!p || *p != '[') return -1;
    p = ws(p + 1);
    if (*p == ']') return 0;
    int count = 0;
    for (;;) {
        p = skip_value(p);
        if (!p) return -1;
        count++;
        p = ws(p);
        if (*p != ',') return count;
        p = ws(p + 1);
    }
}

/* ------------------------------------------------------------ host calls */

typedef void (*host_fn)(i64, i64, i64, i64);

/* Calls an orchestration host function with a JSON input; its answer. */
static char *call(host_fn f, const char *in) {
    out_t o = {0, 0};
    f(S(in), P(&o.ptr), P(&o.len));
    return take(o);
}

/* A host answer that is an error (or nothing at all). */
static int failed(const char *answer) {
    size_t n = 0;
    if (!answer || !*answer) return 1;
    const char *e = jfind(answer, "error", &n);
    return e && !(n == 4 && memcmp(e, "null", 4) == 0);
}

/* 403 for FORBIDDEN, else 400: {"step", "error", "error_code"}. */
static i64 step_failed(const char *step, const char *answer) {
    char code[64];
    jstr(answer, "error_code", code, sizeof code);
    char *error = jraw(answer, "error");
    char *error_code = jraw(answer, "error_code");
    buf_t b = {0};
    puts_(&b, "{");
    field_str(&b, "step", step);
    field_raw(&b, "error", error ? error : "\"the host answered nothing\"");
    put_str(&b, "error_code");
    puts_(&b, ":");
    puts_(&b, error_code ? error_code : "null");
    puts_(&b, "}");
    paca_log(2, S(b.p));
    i64 r = respond(strcmp(code, "FORBIDDEN") == 0 ? 403 : 400, b.p);
    free(b.p);
    free(error);
    free(error_code);
    return r;
}

/* Runs SQL on its own tables; the error text, or NULL. */
static char *exec_sql(const char *sql, const char *params) {
    uint64_t rows = 0;
    out_t err = {0, 0};
    db_exec(S(sql), P(params), (i64)strlen(params), P(&rows), P(&err.ptr), P(&err.len));
    char *e = take(err);
    if (!*e) {
        free(e);
        return NULL;
    }
    return e;
}

/* A read on its own tables: the result JSON; *error set on failure. */
static char *query_sql(const char *sql, const char *params, char **error) {
    out_t res = {0, 0}, err = {0, 0};
    db_query2(S(sql), P(params), (i64)strlen(params), P(&res.ptr), P(&res.len), P(&err.ptr), P(&err.len));
    char *r = take(res), *e = take(err);
    if (*e) {
        *error = e;
    } else {
        *error = NULL;
        free(e);
    }
    return r;
}

static i64 db_failed(const char *what, const char *error) {
    buf_t b = {0};
    puts_(&b, "{");
    field_str(&b, "step", what);
    field_str(&b, "error", error);
    puts_(&b, "\"error_code\":\"PLUGIN_DB_ERROR\"}");
    i64 r = respond(500, b.p);
    free(b.p);
    return r;
}

/* ------------------------------------------------------------ routes */

/* Answers kept until the request ends (freed together). */
static char *kept[64];
static int nkept;
static char *keep(char *s) {
    if (nkept < (int)(sizeof kept / sizeof kept[0])) kept[nkept++] = s;
    return s;
}
static void release(void) {
    while (nkept > 0) free(kept[--nkept]);
}

/* A one-paragraph BlockNote document. */
static void put_blocks(buf_t *b, const char *text) {
    puts_(b, "[{\"type\":\"paragraph\",\"content\":[{\"type\":\"text\",\"text\":");
    put_str(b, text);
    puts_(b, ",\"styles\":{}}]}]");
}

/* A finished input buffer, kept for release(). */
static const char *done(buf_t *b) { return keep(b->p); }

/* POST projects/:projectId/tasks/:taskId/smoke */
static i64 smoke(const char *task_id, const char *body) {
    char key[256], text[512];
    if (!jstr(body, "key", key, sizeof key) || !*key)
        return respond(400, "{\"step\":\"request\",\"error\":\"key is required\",\"error_code\":\"BAD_REQUEST\"}");
    char *after_ms = keep(jraw(body, "wakeup_after_ms"));
    buf_t b;
    char *a;

    /* The same origin key twice: one child task. */
    b = (buf_t){0};
    snprintf(text, sizeof text, "Smoke child %s", key);
    puts_(&b, "{\"origin_key\":"); put_str(&b, key);
    puts_(&b, ",\"title\":"); put_str(&b, text);
    puts_(&b, ",\"parent_task_id\":"); put_str(&b, task_id);
    puts_(&b, "}");
    const char *create_in = done(&b);
    char *first = keep(call(task_create, create_in));
    if (failed(first)) return step_failed("task_create", first);
    char *second = keep(call(task_create, create_in));
    if (failed(second)) return step_failed("task_create", second);
    char *child_raw = keep(jraw(first, "task.id"));
    char *child_again_raw = keep(jraw(second, "task.id"));
    char child[64];
    jstr(first, "task.id", child, sizeof child);
    int created_first = jtrue(first, "created"), created_second = jtrue(second, "created");

    /* A comment on the child (plain text). */
    b = (buf_t){0};
    snprintf(text, sizeof text, "Smoke comment %s", key);
    puts_(&b, "{\"task_id\":"); put_str(&b, child);
    puts_(&b, ",\"content\":"); put_str(&b, text);
    puts_(&b, "}");
    a = keep(call(task_comment, done(&b)));
    if (failed(a)) return step_failed("task_comment", a);
    char *comment_id = keep(jraw(a, "comment_id"));

    /* An update of the child. */
    b = (buf_t){0};
    puts_(&b, "{\"task_id\":"); put_str(&b, child);
    puts_(&b, ",\"importance\":3}");
    a = keep(call(task_update, done(&b)));
    if (failed(a)) return step_failed("task_update", a);
    char *importance = keep(jraw(a, "task.importance"));

    /* The child blocks its parent: linked once, when this call created it
     * (a second link of the same pair would be a conflict). */
    char *link_id = NULL;
    if (created_first) {
        b = (buf_t){0};
        puts_(&b, "{\"task_id\":"); put_str(&b, child);
        puts_(&b, ",\"target_task_id\":"); put_str(&b, task_id);
        puts_(&b, ",\"link_type\":\"blocks\"}");
        a = keep(call(task_link, done(&b)));
        if (failed(a)) return step_failed("task_link", a);
        link_id = keep(jraw(a, "link_id"));
    }

    /* A document: create, update, read back, list. */
    b = (buf_t){0};
    snprintf(text, sizeof text, "Smoke doc %s", key);
    puts_(&b, "{\"title\":"); put_str(&b, text);
    puts_(&b, ",\"content\":"); put_blocks(&b, "written by the orchestration smoke");
    puts_(&b, "}");
    a = keep(call(doc_create, done(&b)));
    if (failed(a)) return step_failed("doc_create", a);
    char *doc_id_raw = keep(jraw(a, "doc.id"));
    char doc_id[64];
    jstr(a, "doc.id", doc_id, sizeof doc_id);

    b = (buf_t){0};
    snprintf(text, sizeof text, "Smoke doc %s (updated)", key);
    puts_(&b, "{\"doc_id\":"); put_str(&b, doc_id);
    puts_(&b, ",\"title\":"); put_str(&b, text);
    puts_(&b, ",\"content\":"); put_blocks(&b, "updated by the orchestration smoke");
    puts_(&b, "}");
    a = keep(call(doc_update, done(&b)));
    if (failed(a)) return step_failed("doc_update", a);

    b = (buf_t){0};
    puts_(&b, "{\"doc_id\":"); put_str(&b, doc_id); puts_(&b, "}");
    a = keep(call(doc_get, done(&b)));
    if (failed(a)) return step_failed("doc_get", a);
    char *doc_title = keep(jraw(a, "doc.title"));

    a = keep(call(docs_list, "{}"));
    if (failed(a)) return step_failed("docs_list", a);
    int docs_count = jcount(a, "items");

    /* The parent's summary from this plugin. */
    b = (buf_t){0};
    puts_(&b, "{\"task_id\":"); put_str(&b, task_id);
    puts_(&b, ",\"summary\":{\"child\":"); put_str(&b, child);
    puts_(&b, ",\"key\":"); put_str(&b, key);
    puts_(&b, "}}");
    a = keep(call(summary_set, done(&b)));
    if (failed(a)) return step_failed("summary_set", a);
    /* ... and of the project (no task_id). */
    b = (buf_t){0};
    puts_(&b, "{\"summary\":{\"last_key\":"); put_str(&b, key);
    puts_(&b, "}}");
    a = keep(call(summary_set, done(&b)));
    if (failed(a)) return step_failed("summary_set", a);

    /* A wakeup, when asked for. */
    char *wakeup_id = NULL;
    if (after_ms) {
        b = (buf_t){0};
        puts_(&b, "{\"after_ms\":"); puts_(&b, after_ms);
        puts_(&b, ",\"payload\":{\"task_id\":"); put_str(&b, task_id);
        puts_(&b, ",\"key\":"); put_str(&b, key);
        puts_(&b, "}}");
        a = keep(call(wakeup_schedule, done(&b)));
        if (failed(a)) return step_failed("wakeup_schedule", a);
        wakeup_id = keep(jraw(a, "id"));
    }

    /* Its own tables: record the run, then a join over both. */
    b = (buf_t){0};
    puts_(&b, "["); put_str(&b, task_id);
    puts_(&b, ","); put_str(&b, child);
    puts_(&b, ","); put_str(&b, key);
    puts_(&b, "]");
    const char *params = done(&b);
    char *e = keep(exec_sql("INSERT INTO smoke_runs (task_id, child_id, run_key) VALUES ($1, $2, $3)", params));
    if (e) return db_failed("insert smoke_runs", e);
    b = (buf_t){0};
    puts_(&b, "["); put_str(&b, task_id); puts_(&b, "]");
    char *q = keep(query_sql(
        "SELECT count(DISTINCT r.id)::int AS runs, count(DISTINCT w.wakeup_id)::int AS fired "
        "FROM smoke_runs r LEFT JOIN smoke_wakeups w ON w.payload->>'key' = r.run_key "
        "WHERE r.task_id = $1",
        done(&b), &e));
    if (e) return db_failed("join smoke_runs/smoke_wakeups", keep(e));
    char *runs = keep(jraw(q, "rows.0.0"));

    b = (buf_t){0};
    puts_(&b, "{");
    field_raw(&b, "child_id", child_raw);
    field_raw(&b, "child_again_id", child_again_raw);
    field_raw(&b, "created_first", created_first ? "true" : "false");
    field_raw(&b, "created_second", created_second ? "true" : "false");
    field_raw(&b, "comment_id", comment_id);
    field_raw(&b, "child_importance", importance);
    field_raw(&b, "link_id", link_id);
    field_raw(&b, "doc_id", doc_id_raw);
    field_raw(&b, "doc_title", doc_title);
    field_int(&b, "docs_count", docs_count);
    field_raw(&b, "wakeup_id", wakeup_id);
    field_raw(&b, "runs", runs);
    puts_(&b, "\"version\":\"" VERSION "\"}");
    i64 r = respond(200, b.p);
    free(b.p);
    return r;
}

/* DELETE projects/:projectId/wakeups/:wakeupId */
static i64 cancel(const char *wakeup_id) {
    buf_t b = {0};
    puts_(&b, "{\"id\":"); put_str(&b, wakeup_id); puts_(&b, "}");
    char *a = keep(call(wakeup_cancel, done(&b)));
    if (failed(a)) return step_failed("wakeup_cancel", a);
    return respond(200, jtrue(a, "cancelled") ? "{\"cancelled\":true}" : "{\"cancelled\":false}");
}

/* GET projects/:projectId/wakeups-fired */
static i64 fired(const char *project_id) {
    buf_t b = {0};
    puts_(&b, "["); put_str(&b, project_id); puts_(&b, "]");
    char *e = NULL;
    char *q = keep(query_sql(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('wakeup_id', wakeup_id, 'payload', payload, "
        "'fired_at', fired_at) ORDER BY fired_at), '[]'::jsonb) AS items "
        "FROM smoke_wakeups WHERE project_id = $1",
        done(&b), &e));
    if (e) return db_failed("select smoke_wakeups", keep(e));
    char *items = keep(jraw(q, "rows.0.0"));
    b = (buf_t){0};
    puts_(&b, "{\"items\":");
    puts_(&b, items ? items : "[]");
    puts_(&b, "}");
    i64 r = respond(200, b.p);
    free(b.p);
    return r;
}

/* The path's segments ("projects/<pid>/tasks/<tid>/smoke"). */
#define MAX_SEGS 8
static int split_path(const char *p, char segs[MAX_SEGS][128]) {
    int n = 0;
    while (*p && n < MAX_SEGS) {
        while (*p == '/') p++;
        if (!*p) break;
        size_t i = 0;
        while (p[i] && p[i] != '/' && p[i] != '?') {
            if (i + 1 < 128) segs[n][i] = p[i];
            i++;
        }
        segs[n][i < 128 ? i : 127] = 0;
        n++;
        p += i;
        if (*p == '?') break;
    }
    return n;
}

EXPORT("HandleRequest") i64 HandleRequest(int32_t ptr, int32_t len) {
    char *env = request_text(ptr, len);
    char meth[16], full[512];
    jstr(env, "method", meth, sizeof meth);
    jstr(env, "path", full, sizeof full);
    out_t o = {0, 0};
    http_request_body(P(&o.ptr), P(&o.len));
    char *body = take(o);
    static char segs[MAX_SEGS][128];
    int n = split_path(full, segs);
    i64 r;
    if (n == 1 && strcmp(segs[0], "ping") == 0) {
        r = respond(200, "{\"pong\":true,\"version\":\"" VERSION "\"}");
    } else if (n == 5 && strcmp(segs[0], "projects") == 0 && strcmp(segs[2], "tasks") == 0 &&
               strcmp(segs[4], "smoke") == 0 && strcmp(meth, "POST") == 0) {
        r = smoke(segs[3], *body ? body : "{}");
    } else if (n == 4 && strcmp(segs[0], "projects") == 0 && strcmp(segs[2], "wakeups") == 0 &&
               strcmp(meth, "DELETE") == 0) {
        r = cancel(segs[3]);
    } else if (n == 3 && strcmp(segs[0], "projects") == 0 && strcmp(segs[2], "wakeups-fired") == 0) {
        r = fired(segs[1]);
    } else {
        r = respond(418, "{\"error\":\"the orchestration plugin has no such handler\"}");
    }
    release();
    free(body);
    free(env);
    return r;
}

/* HandleWakeup({"id", "payload": {"task_id", "key"}, "project_id",
 * "user_id", "due_at"}): records the firing in its own table, then comments
 * on and summarises the task named in the payload (as the scheduling user). */
EXPORT("HandleWakeup") void HandleWakeup(int32_t ptr, int32_t len) {
    char *in = request_text(ptr, len);
    char task_id[64], key[256], text[512];
    char *id = keep(jraw(in, "id"));
    char *project_id = keep(jraw(in, "project_id"));
    char *payload = keep(jraw(in, "payload"));
    jstr(in, "payload.task_id", task_id, sizeof task_id);
    jstr(in, "payload.key", key, sizeof key);

    buf_t b = {0};
    puts_(&b, "[");
    puts_(&b, id ? id : "null"); puts_(&b, ",");
    puts_(&b, project_id ? project_id : "null"); puts_(&b, ",");
    puts_(&b, payload ? payload : "null");
    puts_(&b, "]");
    char *e = keep(exec_sql("INSERT INTO smoke_wakeups (wakeup_id, project_id, payload) VALUES ($1, $2, $3)",
                            done(&b)));
    if (e) paca_log(3, S(e));

    if (*task_id) {
        b = (buf_t){0};
        snprintf(text, sizeof text, "wakeup %s fired", key);
        puts_(&b, "{\"task_id\":"); put_str(&b, task_id);
        puts_(&b, ",\"content\":"); put_str(&b, text);
        puts_(&b, "}");
        char *a = keep(call(task_comment, done(&b)));
        if (failed(a)) paca_log(3, S(a));

        b = (buf_t){0};
        puts_(&b, "{\"task_id\":"); put_str(&b, task_id);
        puts_(&b, ",\"summary\":{\"wakeup\":\"fired\",\"key\":"); put_str(&b, key);
        puts_(&b, "}}");
        a = keep(call(summary_set, done(&b)));
        if (failed(a)) paca_log(3, S(a));
    } else {
        paca_log(2, S("wakeup without payload.task_id"));
    }
    release();
    free(in);
}

/* com.paca.github: the first-party GitHub plugin as a C WASI reactor module
 * (seed 002). Links GitHub repositories, pull requests and branches with
 * Paca projects and tasks; PATs and webhook secrets are stored encrypted
 * (AES-256-GCM, ENCRYPTION_KEY); webhooks are verified with HMAC-SHA256.
 *
 * Routes (plugin.json; the host strips /api/v1/plugins/com.paca.github/):
 *   GET    projects/:pid/github
 *   POST   projects/:pid/github/token                     {"token"}
 *   DELETE projects/:pid/github/token
 *   GET    projects/:pid/github/repositories
 *   GET    projects/:pid/github/linked-repositories
 *   POST   projects/:pid/github/linked-repositories       {"owner","repo_name"}
 *   DELETE projects/:pid/github/linked-repositories/:repoId
 *   GET    projects/:pid/tasks/:tid/github/pull-requests
 *   POST   projects/:pid/tasks/:tid/github/pull-requests  {"repo_id","pr_number"}
 *   DELETE projects/:pid/tasks/:tid/github/pull-requests/:prId
 *   GET    projects/:pid/tasks/:tid/github/branches
 *   POST   projects/:pid/tasks/:tid/github/branches       {"repo_id","branch_name","source_branch"?}
 *   POST   webhook                                        (public; GitHub)
 * Answers: {"success": true, "data": …} or {"success": false, "error",
 * "error_code"}. Events emitted: github.pr_linked, github.pr_updated,
 * github.branch_linked. Subscribed: task.deleted, project.deleted (cleanup)
 * and task.created (the task-number index the public webhook needs). */
#include "paca.h"
#include "crypto.h"

#include <stdarg.h>
#include <strings.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "1.0.0"
#endif

#define PLUGIN_NAME "com.paca.github"
#define DEFAULT_API "https://api.github.com"

EXPORT("Init") int32_t Init(void) {
    paca_log(1, S("github " VERSION " initialised"));
    return 0;
}

/* ------------------------------------------------------------ memory
 * Everything allocated while handling one call is kept here and freed at its
 * end (several instances run in parallel; nothing survives a call). */
static char **kept;
static size_t nkept, capkept;
static char *keep(char *s) {
    if (!s) return s;
    if (nkept == capkept) {
        capkept = capkept ? capkept * 2 : 64;
        kept = realloc(kept, capkept * sizeof *kept);
    }
    kept[nkept++] = s;
    return s;
}
static void release(void) {
    while (nkept > 0) free(kept[--nkept]);
}
static char *kdup(const char *s) { return keep(strdup(s ? s : "")); }
/* A finished buffer, kept. */
static char *done(buf_t *b) {
    if (!b->p) put(b, "", 0);
    return keep(b->p);
}

/* ------------------------------------------------------------ JSON reading
 * A small scanner (from tests/plugins/orchestration): finds a value by a
 * dotted path of object keys and array indexes ("pull_request.head.ref",
 * "rows.0.0") without being fooled by nested objects. */
static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}
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
/* A kept copy of the raw JSON value at path, or NULL when absent or null. */
static char *jraw(const char *json, const char *path) {
    size_t n = 0;
    const char *v = jfind(json, path, &n);
    if (!v || (n == 4 && memcmp(v, "null", 4) == 0)) return NULL;
    char *s = keep(malloc(n + 1));
    memcpy(s, v, n);
    s[n] = 0;
    return s;
}
static void put_utf8(buf_t *b, uint32_t cp) {
    char u[4];
    if (cp < 0x80) { u[0] = (char)cp; put(b, u, 1); }
    else if (cp < 0x800) { u[0] = (char)(0xc0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); put(b, u, 2); }
    else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12); u[1] = (char)(0x80 | ((cp >> 6) & 63)); u[2] = (char)(0x80 | (cp & 63));
        put(b, u, 3);
    } else {
        u[0] = (char)(0xf0 | cp >> 18); u[1] = (char)(0x80 | ((cp >> 12) & 63));
        u[2] = (char)(0x80 | ((cp >> 6) & 63)); u[3] = (char)(0x80 | (cp & 63));
        put(b, u, 4);
    }
}
static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}
/* The string at path, unescaped (kept), or NULL when it is not a string. */
static char *jstr(const char *json, const char *path) {
    size_t n = 0;
    const char *v = jfind(json, path, &n);
    if (!v || *v != '"' || n < 2) return NULL;
    buf_t b = {0};
    put(&b, "", 0);
    for (size_t i = 1; i + 1 < n; i++) {
        char c = v[i];
        if (c != '\\') { put(&b, &c, 1); continue; }
        if (i + 2 >= n) break;
        char e = v[++i];
        uint32_t cp;
        switch (e) {
        case 'n': put(&b, "\n", 1); break;
        case 't': put(&b, "\t", 1); break;
        case 'r': put(&b, "\r", 1); break;
        case 'b': put(&b, "\b", 1); break;
        case 'f': put(&b, "\f", 1); break;
        case 'u':
            if (i + 4 < n && hex4(v + i + 1, &cp)) {
                i += 4;
                uint32_t lo;
                if (cp >= 0xd800 && cp < 0xdc00 && i + 6 < n && v[i + 1] == '\\' && v[i + 2] == 'u' &&
                    hex4(v + i + 3, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
                put_utf8(&b, cp);
            }
            break;
        default: put(&b, &e, 1);
        }
    }
    return done(&b);
}
/* The string at path or "" (kept). */
static const char *jstr0(const char *json, const char *path) {
    char *s = jstr(json, path);
    return s ? s : "";
}
/* The integer at path; 1 when it is one. */
static int jint(const char *json, const char *path, long long *out) {
    size_t n = 0;
    const char *v = jfind(json, path, &n);
    if (!v || n == 0 || n > 20) return 0;
    char tmp[24];
    memcpy(tmp, v, n);
    tmp[n] = 0;
    char *end;
    long long x = strtoll(tmp, &end, 10);
    if (*end) return 0;
    *out = x;
    return 1;
}
static int jtrue(const char *json, const char *path) {
    size_t n = 0;
    const char *v = jfind(json, path, &n);
    return v && n == 4 && memcmp(v, "true", 4) == 0;
}
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

/* ------------------------------------------------------------ responses */
static buf_t last_response;
static i64 respond_raw(int status, const char *json_body) {
    free(last_response.p);
    memset(&last_response, 0, sizeof last_response);
    char head[96];
    snprintf(head, sizeof head, "{\"status\":%d,\"headers\":{\"Content-Type\":\"application/json\"},\"body\":\"",
             status);
    puts_(&last_response, head);
    size_t n = strlen(json_body);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    size_t m = b64_encode((const uint8_t *)json_body, n, b64);
    put(&last_response, b64, m);
    free(b64);
    puts_(&last_response, "\"}");
    return ((i64)(uintptr_t)last_response.p << 32) | (i64)last_response.n;
}
static i64 ok(int status, const char *data_json) {
    buf_t b = {0};
    puts_(&b, "{\"success\":true,\"data\":");
    puts_(&b, data_json && *data_json ? data_json : "null");
    puts_(&b, "}");
    return respond_raw(status, done(&b));
}
static i64 fail(int status, const char *code, const char *msg) {
    buf_t b = {0};
    puts_(&b, "{\"success\":false,\"error\":");
    put_str(&b, msg);
    puts_(&b, ",\"error_code\":");
    put_str(&b, code);
    puts_(&b, "}");
    if (status >= 500) paca_log(2, S(b.p));
    return respond_raw(status, done(&b));
}
static i64 failf(int status, const char *code, const char *fmt, const char *arg) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return fail(status, code, msg);
}

/* ------------------------------------------------------------ host calls */
typedef void (*host_fn)(i64, i64, i64, i64);
static char *call(host_fn f, const char *in) {
    out_t o = {0, 0};
    f(S(in), P(&o.ptr), P(&o.len));
    return keep(take(o));
}
static const char *config(const char *key) { return call(config_get, key); }

/* Runs SQL on its own tables: NULL, or the error (kept). rows: affected. */
static char *sql_exec(const char *sql, const char *params, uint64_t *rows) {
    uint64_t n = 0;
    out_t err = {0, 0};
    db_exec(S(sql), S(params), P(&n), P(&err.ptr), P(&err.len));
    if (rows) *rows = n;
    char *e = keep(take(err));
    if (!*e) return NULL;
    paca_log(3, S(e));
    return e;
}
/* A read: the result JSON ({"columns","rows"}); *error set on failure. */
static char *sql_query(const char *sql, const char *params, char **error) {
    out_t res = {0, 0}, err = {0, 0};
    db_query2(S(sql), S(params), P(&res.ptr), P(&res.len), P(&err.ptr), P(&err.len));
    char *r = keep(take(res)), *e = keep(take(err));
    *error = *e ? e : NULL;
    if (*e) paca_log(3, S(e));
    return r;
}
static i64 db_failed(const char *error) {
    return failf(500, "PLUGIN_DB_ERROR", "database error: %s", error);
}

/* A JSON array of strings (params). */
static char *params(int n, ...) {
    buf_t b = {0};
    va_list ap;
    va_start(ap, n);
    puts_(&b, "[");
    for (int i = 0; i < n; i++) {
        const char *s = va_arg(ap, const char *);
        if (i) puts_(&b, ",");
        if (s) put_str(&b, s);
        else puts_(&b, "null");
    }
    puts_(&b, "]");
    va_end(ap);
    return done(&b);
}

static void emit(const char *topic, const char *payload) {
    if (!event_emit(S(topic), S(payload))) paca_log(2, S("event_emit refused"));
}

/* ------------------------------------------------------------ helpers */
static int is_uuid(const char *s) {
    if (!s || strlen(s) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}
static int random_bytes(uint8_t *out, size_t n) { return getentropy(out, n) == 0; }
static char *new_uuid(void) {
    uint8_t r[16];
    if (!random_bytes(r, 16)) abort();
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    char hex[33], *s = keep(malloc(37));
    hex_encode(r, 16, hex);
    snprintf(s, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return s;
}
/* GitHub owner / repository names: letters, digits, '-', '_', '.'. */
static int valid_name(const char *s) {
    if (!s || !*s || strlen(s) > 100 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            return 0;
    return 1;
}
/* A git branch name that is safe in a URL path and a ref (a subset of
 * git-check-ref-format). */
static int valid_branch(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (!n || n > 200 || s[0] == '/' || s[0] == '-' || s[n - 1] == '/' || s[n - 1] == '.' || strstr(s, "..") ||
        strstr(s, "//") || strstr(s, "@{") || (n >= 5 && strcmp(s + n - 5, ".lock") == 0))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.' || *s == '/' || *s == '+'))
            return 0;
    return 1;
}

/* ------------------------------------------------------------ secrets */
/* ENCRYPTION_KEY (64 hex chars) into key; 1 when valid. */
static int encryption_key(uint8_t key[32]) {
    const char *k = config("ENCRYPTION_KEY");
    return strlen(k) == 64 && hex_decode(k, key, 32);
}
#define NO_KEY_MSG \
    "ENCRYPTION_KEY is missing or invalid (it must be 64 hex characters, a 32-byte AES-256 key): " \
    "GitHub tokens and webhook secrets cannot be stored or read"
/* base64(nonce(12) || ciphertext || tag(16)), kept; NULL without a key. */
static char *encrypt_secret(const char *plain) {
    uint8_t key[32], *blob;
    if (!encryption_key(key)) return NULL;
    size_t n = strlen(plain);
    blob = malloc(12 + n + 16);
    if (!random_bytes(blob, 12)) abort();
    aes256gcm_encrypt(key, blob, (const uint8_t *)PLUGIN_NAME, strlen(PLUGIN_NAME), (const uint8_t *)plain, n,
                      blob + 12, blob + 12 + n);
    char *out = keep(malloc(4 * ((n + 28 + 2) / 3) + 1));
    b64_encode(blob, 12 + n + 16, out);
    free(blob);
    memset(key, 0, sizeof key);
    return out;
}
/* The plaintext (kept), or NULL (no key, bad data, or tag mismatch). */
static char *decrypt_secret(const char *enc) {
    uint8_t key[32];
    if (!enc || !encryption_key(key)) return NULL;
    size_t len = strlen(enc);
    uint8_t *blob = malloc(len * 3 / 4 + 4);
    long n = b64_decode(enc, len, blob);
    char *out = NULL;
    if (n >= 28) {
        size_t m = (size_t)n - 28;
        out = keep(malloc(m + 1));
        if (aes256gcm_decrypt(key, blob, (const uint8_t *)PLUGIN_NAME, strlen(PLUGIN_NAME), blob + 12, m,
                              blob + 12 + m, (uint8_t *)out)) {
            out[m] = 0;
        } else {
            out = NULL;
        }
    }
    free(blob);
    memset(key, 0, sizeof key);
    return out;
}

/* ------------------------------------------------------------ GitHub API */
typedef struct {
    long long status; /* 0: not reached */
    const char *body; /* the response text */
    const char *error;
} gh_resp;

static const char *api_base(void) {
    const char *u = config("GITHUB_API_URL");
    if (!*u) return DEFAULT_API;
    size_t n = strlen(u);
    char *c = kdup(u);
    while (n > 0 && c[n - 1] == '/') c[--n] = 0;
    return c;
}

static gh_resp gh(const char *method, const char *path, const char *token, const char *json_body) {
    buf_t b = {0};
    puts_(&b, "{\"method\":");
    put_str(&b, method);
    puts_(&b, ",\"url\":");
    char *url = keep(malloc(strlen(api_base()) + strlen(path) + 1));
    strcpy(url, api_base());
    strcat(url, path);
    put_str(&b, url);
    puts_(&b, ",\"headers\":{\"Accept\":\"application/vnd.github+json\",\"User-Agent\":\"paca-github-plugin\","
              "\"X-GitHub-Api-Version\":\"2022-11-28\"");
    if (token) {
        puts_(&b, ",\"Authorization\":");
        char *auth = keep(malloc(strlen(token) + 8));
        strcpy(auth, "Bearer ");
        strcat(auth, token);
        put_str(&b, auth);
    }
    if (json_body) puts_(&b, ",\"Content-Type\":\"application/json\"");
    puts_(&b, "}");
    if (json_body) {
        puts_(&b, ",\"body\":");
        put_str(&b, json_body);
    }
    puts_(&b, "}");
    char *r = call(paca_fetch, done(&b));
    gh_resp out = {0, "", NULL};
    jint(r, "status", &out.status);
    out.body = jstr0(r, "body");
    out.error = jstr(r, "error");
    return out;
}
/* An error answer for a GitHub call that did not succeed. */
static i64 gh_failed(const char *what, gh_resp r) {
    char msg[600];
    if (r.status == 0) {
        snprintf(msg, sizeof msg, "GitHub could not be reached (%s): %s", what, r.error ? r.error : "no answer");
        return fail(502, "GITHUB_UNREACHABLE", msg);
    }
    const char *m = jstr0(r.body, "message");
    snprintf(msg, sizeof msg, "GitHub answered %lld to %s%s%s", r.status, what, *m ? ": " : "", m);
    if (r.status == 401) return fail(400, "GITHUB_TOKEN_INVALID", msg);
    if (r.status == 404) return fail(404, "GITHUB_NOT_FOUND", msg);
    if (r.status == 422) return fail(409, "GITHUB_CONFLICT", msg);
    if (r.status == 403) return fail(403, "GITHUB_FORBIDDEN", msg);
    return fail(502, "GITHUB_ERROR", msg);
}

/* ------------------------------------------------------------ project data */
typedef struct {
    const char *id, *token_enc;
} integration_t;
/* The project's integration; id NULL when there is none. err on DB error. */
static integration_t integration(const char *pid, char **err) {
    integration_t it = {NULL, NULL};
    char *q = sql_query("SELECT id::text, access_token_enc FROM github_integrations WHERE project_id = $1",
                        params(1, pid), err);
    if (*err) return it;
    it.id = jstr(q, "rows.0.0");
    it.token_enc = jstr(q, "rows.0.1");
    return it;
}

/* Refreshes the stored task-id prefix of a project (project_get as the
 * caller or, in HandleEvent, as the plugin). Returns it, or NULL. */
static const char *refresh_prefix(const char *pid) {
    char *p = call(project_get, pid);
    const char *prefix = jstr(p, "task_id_prefix");
    if (prefix && *prefix)
        sql_exec("INSERT INTO github_project_refs (project_id, task_id_prefix) VALUES ($1, $2) "
                 "ON CONFLICT (project_id) DO UPDATE SET task_id_prefix = excluded.task_id_prefix, updated_at = now()",
                 params(2, pid, prefix), NULL);
    return prefix && *prefix ? prefix : NULL;
}
/* Backfills the task-number index from tasks_list (latest 100 tasks), in
 * one statement. */
static void backfill_tasks(const char *pid) {
    char *list = call(tasks_list, pid);
    if (jcount(list, "") <= 0) return; /* null (no tasks) or {"error"} */
    buf_t b = {0};
    puts_(&b, "[");
    puts_(&b, list);
    puts_(&b, ",");
    put_str(&b, pid);
    puts_(&b, "]");
    sql_exec("INSERT INTO github_task_refs (task_id, project_id, task_number) "
             "SELECT (e->>'id')::uuid, $2::uuid, (e->>'task_number')::bigint FROM json_array_elements($1::json) e "
             "WHERE e->>'id' IS NOT NULL AND e->>'task_number' IS NOT NULL ON CONFLICT (task_id) DO NOTHING",
             done(&b), NULL);
}

/* The task (kept id) whose reference "<PREFIX>-<n>" appears in text, or NULL. */
static const char *task_for_reference(const char *pid, const char *text) {
    char *err = NULL;
    char *q = sql_query("SELECT task_id_prefix FROM github_project_refs WHERE project_id = $1", params(1, pid), &err);
    const char *prefix = err ? NULL : jstr(q, "rows.0.0");
    if (!prefix || !*prefix) prefix = refresh_prefix(pid); /* works for public projects only, here */
    if (!prefix || !*prefix || !text) return NULL;
    size_t pl = strlen(prefix), tl = strlen(text);
    for (size_t i = 0; i + pl + 1 < tl; i++) {
        if (i > 0) {
            char c = text[i - 1];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
        }
        if (strncasecmp(text + i, prefix, pl) != 0 || text[i + pl] != '-') continue;
        size_t j = i + pl + 1, k = j;
        while (k < tl && text[k] >= '0' && text[k] <= '9' && k - j < 18) k++;
        if (k == j || (k < tl && text[k] >= '0' && text[k] <= '9')) continue;
        char num[24];
        memcpy(num, text + j, k - j);
        num[k - j] = 0;
        long long want = strtoll(num, NULL, 10);
        q = sql_query("SELECT task_id::text FROM github_task_refs WHERE project_id = $1 AND task_number = $2::bigint",
                      params(2, pid, num), &err);
        const char *tid = err ? NULL : jstr(q, "rows.0.0");
        if (tid) return tid;
        /* Not indexed: the host's tasks_list (latest 100 tasks; refused on
         * the public webhook route for private projects). */
        char *list = call(tasks_list, pid);
        int n = jcount(list, "");
        for (int x = 0; x < n; x++) {
            char path[32];
            long long got;
            snprintf(path, sizeof path, "%d.task_number", x);
            if (jint(list, path, &got) && got == want) {
                snprintf(path, sizeof path, "%d.id", x);
                return jstr(list, path);
            }
        }
    }
    return NULL;
}

/* The task belongs to the project (task_get as the caller). */
static int task_in_project(const char *pid, const char *tid) {
    if (!is_uuid(tid)) return 0;
    char *t = call(task_get, tid);
    const char *tp = jstr(t, "project_id");
    return tp && strcasecmp(tp, pid) == 0;
}

static const char *REPO_JSON =
    "json_build_object('id', r.id, 'project_id', r.project_id, 'owner', r.owner, 'repo_name', r.repo_name, "
    "'full_name', r.full_name, 'webhook_id', r.webhook_id, 'default_branch', r.default_branch, "
    "'html_url', 'https://github.com/' || r.full_name, 'created_at', r.created_at, 'updated_at', r.updated_at)";

static const char *PR_JSON =
    "json_build_object('id', p.id, 'project_id', p.project_id, 'repo_id', p.repo_id, 'repo_full_name', r.full_name, "
    "'pr_number', p.pr_number, 'github_pr_id', p.github_pr_id, 'title', p.title, 'state', p.state, "
    "'html_url', p.html_url, 'head_branch', p.head_branch, 'base_branch', p.base_branch, 'author', p.author, "
    "'merged_at', p.merged_at, 'created_at', p.created_at, 'updated_at', p.updated_at";

/* ------------------------------------------------------------ routes */
static const char *webhook_url(void) {
    const char *pub = config("PUBLIC_URL");
    if (!*pub) return NULL;
    size_t n = strlen(pub);
    char *u = keep(malloc(n + 64));
    strcpy(u, pub);
    while (n > 0 && u[n - 1] == '/') u[--n] = 0;
    strcat(u, "/api/v1/plugins/" PLUGIN_NAME "/webhook");
    return u;
}

/* GET projects/:pid/github */
static i64 status(const char *pid) {
    char *err = NULL;
    refresh_prefix(pid);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT json_build_object('connected', i.id IS NOT NULL, 'integration_id', i.id, "
             "'created_at', i.created_at, 'updated_at', i.updated_at, "
             "'linked_repositories', (SELECT count(*) FROM github_repositories r WHERE r.project_id = $1)) "
             "FROM (SELECT 1) one LEFT JOIN github_integrations i ON i.project_id = $1");
    char *q = sql_query(sql, params(1, pid), &err);
    if (err) return db_failed(err);
    uint8_t key[32];
    const char *hook = webhook_url();
    char *row = jraw(q, "rows.0.0");
    buf_t o = {0};
    puts_(&o, "{\"connected\":");
    puts_(&o, jtrue(row, "connected") ? "true" : "false");
    puts_(&o, ",\"project_id\":");
    put_str(&o, pid);
    puts_(&o, ",\"integration_id\":");
    char *iid = jraw(row, "integration_id");
    puts_(&o, iid ? iid : "null");
    puts_(&o, ",\"linked_repositories\":");
    char *lr = jraw(row, "linked_repositories");
    puts_(&o, lr ? lr : "0");
    puts_(&o, ",\"created_at\":");
    char *ca = jraw(row, "created_at");
    puts_(&o, ca ? ca : "null");
    puts_(&o, ",\"updated_at\":");
    char *ua = jraw(row, "updated_at");
    puts_(&o, ua ? ua : "null");
    puts_(&o, ",\"encryption_configured\":");
    puts_(&o, encryption_key(key) ? "true" : "false");
    puts_(&o, ",\"webhook_url\":");
    if (hook) put_str(&o, hook);
    else puts_(&o, "null");
    puts_(&o, "}");
    return ok(200, done(&o));
}

/* POST projects/:pid/github/token {"token"} */
static i64 set_token(const char *pid, const char *body) {
    const char *token = jstr(body, "token");
    if (!token || !*token) return fail(400, "BAD_REQUEST", "token is required");
    if (strlen(token) > 1024) return fail(400, "BAD_REQUEST", "token is too long");
    for (const char *c = token; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == '"' || *c == '\\' || (unsigned char)*c >= 0x7f)
            return fail(400, "BAD_REQUEST", "token contains invalid characters");
    uint8_t key[32];
    if (!encryption_key(key)) return fail(500, "ENCRYPTION_KEY_NOT_CONFIGURED", NO_KEY_MSG);
    /* The token must work: GitHub's GET /user. */
    gh_resp r = gh("GET", "/user", token, NULL);
    if (r.status != 200) return gh_failed("GET /user", r);
    const char *login = jstr0(r.body, "login");
    char *enc = encrypt_secret(token);
    if (!enc) return fail(500, "ENCRYPTION_KEY_NOT_CONFIGURED", NO_KEY_MSG);
    char *e = sql_exec("INSERT INTO github_integrations (id, project_id, access_token_enc) VALUES ($1, $2, $3) "
                       "ON CONFLICT (project_id) DO UPDATE SET access_token_enc = excluded.access_token_enc, "
                       "updated_at = now()",
                       params(3, new_uuid(), pid, enc), NULL);
    if (e) return db_failed(e);
    refresh_prefix(pid);
    integration_t it = integration(pid, &e);
    if (e) return db_failed(e);
    buf_t b = {0};
    puts_(&b, "{\"connected\":true,\"integration_id\":");
    put_str(&b, it.id);
    puts_(&b, ",\"login\":");
    put_str(&b, login);
    puts_(&b, "}");
    return ok(200, done(&b));
}

/* Removes the webhooks of the project's linked repositories from GitHub
 * (best effort: failures are ignored, GitHub answers 404 for gone hooks). */
static void delete_project_hooks(const char *pid, const char *token_enc) {
    const char *token = decrypt_secret(token_enc);
    if (!token) return;
    char *err = NULL;
    char *q = sql_query("SELECT full_name, webhook_id::text FROM github_repositories "
                        "WHERE project_id = $1 AND webhook_id IS NOT NULL",
                        params(1, pid), &err);
    int n = err ? 0 : jcount(q, "rows");
    for (int i = 0; i < n; i++) {
        char path[40], url[400];
        snprintf(path, sizeof path, "rows.%d.0", i);
        const char *full = jstr0(q, path);
        snprintf(path, sizeof path, "rows.%d.1", i);
        snprintf(url, sizeof url, "/repos/%s/hooks/%s", full, jstr0(q, path));
        gh("DELETE", url, token, NULL);
    }
}

/* DELETE projects/:pid/github/token: the PAT, the integration and (by
 * cascade) its repositories, cached PRs and links; webhooks removed from
 * GitHub on a best-effort basis. */
static i64 delete_token(const char *pid) {
    char *err = NULL;
    integration_t it = integration(pid, &err);
    if (err) return db_failed(err);
    if (!it.id) return fail(404, "GITHUB_NOT_CONNECTED", "this project has no GitHub integration");
    delete_project_hooks(pid, it.token_enc);
    char *e = sql_exec("DELETE FROM github_integrations WHERE project_id = $1", params(1, pid), NULL);
    if (e) return db_failed(e);
    return ok(200, "{\"deleted\":true}");
}

/* The project's PAT in plaintext, or an error answer in *fail_out. */
static const char *project_token(const char *pid, i64 *fail_out, const char **integration_id) {
    char *err = NULL;
    integration_t it = integration(pid, &err);
    if (err) { *fail_out = db_failed(err); return NULL; }
    if (!it.id) {
        *fail_out = fail(400, "GITHUB_NOT_CONNECTED", "set a GitHub token for this project first");
        return NULL;
    }
    uint8_t key[32];
    if (!encryption_key(key)) { *fail_out = fail(500, "ENCRYPTION_KEY_NOT_CONFIGURED", NO_KEY_MSG); return NULL; }
    const char *token = decrypt_secret(it.token_enc);
    if (!token) {
        *fail_out = fail(500, "GITHUB_TOKEN_UNREADABLE",
                         "the stored GitHub token cannot be decrypted (was ENCRYPTION_KEY changed?); set it again");
        return NULL;
    }
    if (integration_id) *integration_id = it.id;
    return token;
}

/* GET projects/:pid/github/repositories */
static i64 list_repositories(const char *pid) {
    i64 f = 0;
    const char *token = project_token(pid, &f, NULL);
    if (!token) return f;
    gh_resp r = gh("GET", "/user/repos?per_page=100&sort=updated", token, NULL);
    if (r.status != 200) return gh_failed("GET /user/repos", r);
    int n = jcount(r.body, "");
    if (n < 0) return fail(502, "GITHUB_ERROR", "GitHub answered GET /user/repos with something not a list");
    buf_t b = {0};
    puts_(&b, "[");
    for (int i = 0; i < n; i++) {
        char path[64];
        const char *it;
        snprintf(path, sizeof path, "%d", i);
        size_t len = 0;
        it = jfind(r.body, path, &len);
        char *item = keep(strndup(it, len));
        long long id = 0;
        jint(item, "id", &id);
        if (i) puts_(&b, ",");
        puts_(&b, "{\"id\":");
        put_int(&b, id);
        puts_(&b, ",\"name\":");
        put_str(&b, jstr0(item, "name"));
        puts_(&b, ",\"full_name\":");
        put_str(&b, jstr0(item, "full_name"));
        puts_(&b, ",\"owner\":");
        put_str(&b, jstr0(item, "owner.login"));
        puts_(&b, ",\"private\":");
        puts_(&b, jtrue(item, "private") ? "true" : "false");
        puts_(&b, ",\"default_branch\":");
        put_str(&b, jstr0(item, "default_branch"));
        puts_(&b, ",\"html_url\":");
        put_str(&b, jstr0(item, "html_url"));
        puts_(&b, ",\"description\":");
        const char *d = jstr(item, "description");
        if (d) put_str(&b, d);
        else puts_(&b, "null");
        puts_(&b, "}");
    }
    puts_(&b, "]");
    return ok(200, done(&b));
}

/* GET projects/:pid/github/linked-repositories */
static i64 linked_repositories(const char *pid) {
    char sql[1024], *err = NULL;
    snprintf(sql, sizeof sql,
             "SELECT coalesce(json_agg(%s ORDER BY r.created_at, r.full_name), '[]'::json) "
             "FROM github_repositories r WHERE r.project_id = $1",
             REPO_JSON);
    char *q = sql_query(sql, params(1, pid), &err);
    if (err) return db_failed(err);
    char *items = jraw(q, "rows.0.0");
    return ok(200, items ? items : "[]");
}

static i64 repo_answer(int status, const char *pid, const char *repo_id) {
    char sql[1024], *err = NULL;
    snprintf(sql, sizeof sql, "SELECT %s FROM github_repositories r WHERE r.id = $1 AND r.project_id = $2",
             REPO_JSON);
    char *q = sql_query(sql, params(2, repo_id, pid), &err);
    if (err) return db_failed(err);
    return ok(status, jraw(q, "rows.0.0"));
}

/* POST projects/:pid/github/linked-repositories {"owner","repo_name"} */
static i64 link_repository(const char *pid, const char *body) {
    const char *owner = jstr(body, "owner"), *name = jstr(body, "repo_name");
    if (!valid_name(owner) || !valid_name(name))
        return fail(400, "BAD_REQUEST", "owner and repo_name are required (letters, digits, '-', '_', '.')");
    const char *hook = webhook_url();
    if (!hook)
        return fail(400, "PUBLIC_URL_NOT_CONFIGURED",
                    "PUBLIC_URL is not configured: GitHub needs a reachable callback URL for the webhook");
    i64 f = 0;
    const char *integration_id = NULL;
    const char *token = project_token(pid, &f, &integration_id);
    if (!token) return f;
    char full[256], path[400], *err = NULL;
    snprintf(full, sizeof full, "%s/%s", owner, name);
    char *q = sql_query("SELECT id::text FROM github_repositories WHERE project_id = $1 AND lower(full_name) = lower($2)",
                        params(2, pid, full), &err);
    if (err) return db_failed(err);
    if (jstr(q, "rows.0.0")) return failf(409, "GITHUB_REPOSITORY_ALREADY_LINKED", "%s is already linked", full);

    snprintf(path, sizeof path, "/repos/%s", full);
    gh_resp r = gh("GET", path, token, NULL);
    if (r.status != 200) return gh_failed("GET /repos/{owner}/{repo}", r);
    const char *full_name = jstr(r.body, "full_name");
    if (!full_name || !*full_name) full_name = full;
    const char *default_branch = jstr0(r.body, "default_branch");
    const char *real_owner = jstr(r.body, "owner.login");
    const char *real_name = jstr(r.body, "name");

    /* A fresh random webhook secret (32 bytes, hex). */
    uint8_t raw[32];
    char secret[65];
    if (!random_bytes(raw, 32)) return fail(500, "INTERNAL_ERROR", "no randomness");
    hex_encode(raw, 32, secret);
    char *secret_enc = encrypt_secret(secret);
    if (!secret_enc) return fail(500, "ENCRYPTION_KEY_NOT_CONFIGURED", NO_KEY_MSG);

    buf_t hb = {0};
    puts_(&hb, "{\"name\":\"web\",\"active\":true,\"events\":[\"push\",\"pull_request\",\"check_run\"],"
               "\"config\":{\"url\":");
    put_str(&hb, hook);
    puts_(&hb, ",\"content_type\":\"json\",\"insecure_ssl\":\"0\",\"secret\":");
    put_str(&hb, secret);
    puts_(&hb, "}}");
    snprintf(path, sizeof path, "/repos/%s/hooks", full_name);
    r = gh("POST", path, token, done(&hb));
    if (r.status != 201 && r.status != 200) return gh_failed("POST /repos/{owner}/{repo}/hooks", r);
    long long hook_id = 0;
    jint(r.body, "id", &hook_id);
    char hook_s[24];
    snprintf(hook_s, sizeof hook_s, "%lld", hook_id);

    const char *id = new_uuid();
    uint64_t rows = 0;
    char *e = sql_exec(
        "INSERT INTO github_repositories (id, project_id, integration_id, owner, repo_name, full_name, webhook_id, "
        "webhook_secret_enc, default_branch) VALUES ($1, $2, $3, $4, $5, $6, $7::bigint, $8, $9) "
        "ON CONFLICT (project_id, full_name) DO NOTHING",
        params(9, id, pid, integration_id, real_owner ? real_owner : owner, real_name ? real_name : name, full_name,
               hook_s, secret_enc, default_branch),
        &rows);
    if (e || rows == 0) {
        /* Undo the webhook on GitHub (best effort). */
        snprintf(path, sizeof path, "/repos/%s/hooks/%s", full_name, hook_s);
        gh("DELETE", path, token, NULL);
        if (e) return db_failed(e);
        return failf(409, "GITHUB_REPOSITORY_ALREADY_LINKED", "%s is already linked", full_name);
    }
    refresh_prefix(pid);
    backfill_tasks(pid);
    return repo_answer(201, pid, id);
}

/* DELETE projects/:pid/github/linked-repositories/:repoId */
static i64 unlink_repository(const char *pid, const char *repo_id) {
    if (!is_uuid(repo_id)) return fail(404, "GITHUB_REPOSITORY_NOT_FOUND", "no such linked repository");
    char *err = NULL;
    char *q = sql_query("SELECT full_name, webhook_id::text FROM github_repositories WHERE id = $1 AND project_id = $2",
                        params(2, repo_id, pid), &err);
    if (err) return db_failed(err);
    const char *full = jstr(q, "rows.0.0"), *hook = jstr(q, "rows.0.1");
    if (!full) return fail(404, "GITHUB_REPOSITORY_NOT_FOUND", "no such linked repository");
    int hook_deleted = 0;
    if (hook) {
        i64 f = 0;
        const char *token = project_token(pid, &f, NULL);
        if (token) {
            char path[400];
            snprintf(path, sizeof path, "/repos/%s/hooks/%s", full, hook);
            gh_resp r = gh("DELETE", path, token, NULL);
            hook_deleted = r.status == 204 || r.status == 200 || r.status == 404;
        }
    }
    char *e = sql_exec("DELETE FROM github_repositories WHERE id = $1 AND project_id = $2", params(2, repo_id, pid),
                       NULL);
    if (e) return db_failed(e);
    return ok(200, hook_deleted ? "{\"deleted\":true,\"webhook_deleted\":true}"
                                : "{\"deleted\":true,\"webhook_deleted\":false}");
}

/* Upserts the cached PR from a GitHub pull request object; its id (kept). */
static const char *cache_pr(const char *pid, const char *repo_id, const char *pr, char **err) {
    long long number = 0, ghid = 0;
    jint(pr, "number", &number);
    jint(pr, "id", &ghid);
    char num_s[24], id_s[24];
    snprintf(num_s, sizeof num_s, "%lld", number);
    snprintf(id_s, sizeof id_s, "%lld", ghid);
    const char *merged_at = jstr(pr, "merged_at");
    const char *state = jstr0(pr, "state");
    if ((merged_at && *merged_at) || jtrue(pr, "merged")) state = "merged";
    *err = sql_exec(
        "INSERT INTO github_pull_requests (id, project_id, repo_id, pr_number, github_pr_id, title, state, html_url, "
        "head_branch, base_branch, author, merged_at) VALUES ($1, $2, $3, $4::int, $5::bigint, $6, $7, $8, $9, $10, "
        "$11, $12::timestamptz) ON CONFLICT (repo_id, pr_number) DO UPDATE SET github_pr_id = excluded.github_pr_id, "
        "title = excluded.title, state = excluded.state, html_url = excluded.html_url, "
        "head_branch = excluded.head_branch, base_branch = excluded.base_branch, author = excluded.author, "
        "merged_at = excluded.merged_at, updated_at = now()",
        params(12, new_uuid(), pid, repo_id, num_s, id_s, jstr0(pr, "title"), state, jstr0(pr, "html_url"),
               jstr0(pr, "head.ref"), jstr0(pr, "base.ref"), jstr0(pr, "user.login"),
               merged_at && *merged_at ? merged_at : NULL),
        NULL);
    if (*err) return NULL;
    char *q = sql_query("SELECT id::text FROM github_pull_requests WHERE repo_id = $1 AND pr_number = $2::int",
                        params(2, repo_id, num_s), err);
    if (*err) return NULL;
    return jstr(q, "rows.0.0");
}

/* Links a cached PR to a task; 1 if newly linked (then github.pr_linked). */
static int link_pr(const char *pid, const char *tid, const char *pr_id, const char *how, char **err) {
    uint64_t rows = 0;
    *err = sql_exec("INSERT INTO github_task_pr_links (id, task_id, pull_request_id) VALUES ($1, $2, $3) "
                    "ON CONFLICT (task_id, pull_request_id) DO NOTHING",
                    params(3, new_uuid(), tid, pr_id), &rows);
    if (*err || rows == 0) return 0;
    char sql[1200];
    snprintf(sql, sizeof sql,
             "SELECT %s, 'task_id', $2::uuid, 'linked_by', $3::text) FROM github_pull_requests p "
             "JOIN github_repositories r ON r.id = p.repo_id WHERE p.id = $1",
             PR_JSON);
    char *e2 = NULL;
    char *q = sql_query(sql, params(3, pr_id, tid, how), &e2);
    char *payload = e2 ? NULL : jraw(q, "rows.0.0");
    (void)pid;
    if (payload) emit("github.pr_linked", payload);
    return 1;
}

/* Links a branch to a task; 1 if newly linked (then github.branch_linked). */
static int link_branch(const char *pid, const char *tid, const char *repo_id, const char *branch, const char *how,
                       char **err) {
    uint64_t rows = 0;
    *err = sql_exec("INSERT INTO github_task_branches (id, task_id, repo_id, branch_name) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (task_id, repo_id, branch_name) DO NOTHING",
                    params(4, new_uuid(), tid, repo_id, branch), &rows);
    if (*err || rows == 0) return 0;
    char *e2 = NULL;
    char *q = sql_query("SELECT json_build_object('project_id', $1::uuid, 'task_id', $2::uuid, 'repo_id', r.id, "
                        "'repo_full_name', r.full_name, 'branch_name', $4::text, 'linked_by', $5::text, "
                        "'html_url', 'https://github.com/' || r.full_name || '/tree/' || $4::text) "
                        "FROM github_repositories r WHERE r.id = $3",
                        params(5, pid, tid, repo_id, branch, how), &e2);
    char *payload = e2 ? NULL : jraw(q, "rows.0.0");
    if (payload) emit("github.branch_linked", payload);
    return 1;
}

static i64 task_prs(const char *pid, const char *tid, int status, const char *only_pr) {
    char sql[1600], *err = NULL;
    snprintf(sql, sizeof sql,
             "SELECT coalesce(json_agg(%s, 'link_id', l.id, 'linked_at', l.created_at) ORDER BY l.created_at), "
             "'[]'::json) FROM github_task_pr_links l JOIN github_pull_requests p ON p.id = l.pull_request_id "
             "JOIN github_repositories r ON r.id = p.repo_id WHERE l.task_id = $1 AND p.project_id = $2 "
             "AND ($3::uuid IS NULL OR p.id = $3::uuid)",
             PR_JSON);
    char *q = sql_query(sql, params(3, tid, pid, only_pr), &err);
    if (err) return db_failed(err);
    char *items = jraw(q, "rows.0.0");
    if (only_pr) {
        char *one = jraw(items, "0");
        return ok(status, one);
    }
    return ok(status, items ? items : "[]");
}

/* Looks up a linked repository of the project: full_name (kept) or NULL. */
static const char *project_repo(const char *pid, const char *repo_id, const char **default_branch, char **err) {
    *err = NULL;
    if (!is_uuid(repo_id)) return NULL;
    char *q = sql_query("SELECT full_name, default_branch FROM github_repositories WHERE id = $1 AND project_id = $2",
                        params(2, repo_id, pid), err);
    if (*err) return NULL;
    if (default_branch) *default_branch = jstr0(q, "rows.0.1");
    return jstr(q, "rows.0.0");
}

/* POST projects/:pid/tasks/:tid/github/pull-requests {"repo_id","pr_number"} */
static i64 link_pull_request(const char *pid, const char *tid, const char *body) {
    const char *repo_id = jstr(body, "repo_id");
    long long number = 0;
    if (!repo_id || !jint(body, "pr_number", &number) || number <= 0)
        return fail(400, "BAD_REQUEST", "repo_id and a positive pr_number are required");
    char *err = NULL;
    const char *full = project_repo(pid, repo_id, NULL, &err);
    if (err) return db_failed(err);
    if (!full) return fail(404, "GITHUB_REPOSITORY_NOT_FOUND", "no such linked repository in this project");
    i64 f = 0;
    const char *token = project_token(pid, &f, NULL);
    if (!token) return f;
    char path[400];
    snprintf(path, sizeof path, "/repos/%s/pulls/%lld", full, number);
    gh_resp r = gh("GET", path, token, NULL);
    if (r.status != 200) return gh_failed("GET /repos/{owner}/{repo}/pulls/{number}", r);
    const char *pr_id = cache_pr(pid, repo_id, r.body, &err);
    if (err) return db_failed(err);
    if (!pr_id) return fail(500, "INTERNAL_ERROR", "the pull request was not cached");
    if (!link_pr(pid, tid, pr_id, "manual", &err)) {
        if (err) return db_failed(err);
        return fail(409, "GITHUB_PR_ALREADY_LINKED", "this pull request is already linked to the task");
    }
    return task_prs(pid, tid, 201, pr_id);
}

/* DELETE projects/:pid/tasks/:tid/github/pull-requests/:prId (the cached
 * pull request's id, or the link's id). */
static i64 unlink_pull_request(const char *pid, const char *tid, const char *pr_id) {
    if (!is_uuid(pr_id)) return fail(404, "GITHUB_PR_NOT_LINKED", "no such pull request linked to the task");
    uint64_t rows = 0;
    char *e = sql_exec("DELETE FROM github_task_pr_links l USING github_pull_requests p "
                       "WHERE p.id = l.pull_request_id AND p.project_id = $3 AND l.task_id = $1 "
                       "AND (l.pull_request_id = $2 OR l.id = $2)",
                       params(3, tid, pr_id, pid), &rows);
    if (e) return db_failed(e);
    if (!rows) return fail(404, "GITHUB_PR_NOT_LINKED", "no such pull request linked to the task");
    return ok(200, "{\"deleted\":true}");
}

static i64 task_branches(const char *pid, const char *tid, int status, const char *only_id) {
    char *err = NULL;
    char *q = sql_query(
        "SELECT coalesce(json_agg(json_build_object('id', b.id, 'task_id', b.task_id, 'repo_id', b.repo_id, "
        "'repo_full_name', r.full_name, 'branch_name', b.branch_name, "
        "'html_url', 'https://github.com/' || r.full_name || '/tree/' || b.branch_name, 'created_at', b.created_at) "
        "ORDER BY b.created_at), '[]'::json) FROM github_task_branches b JOIN github_repositories r ON r.id = b.repo_id "
        "WHERE b.task_id = $1 AND r.project_id = $2 AND ($3::uuid IS NULL OR b.id = $3::uuid)",
        params(3, tid, pid, only_id), &err);
    if (err) return db_failed(err);
    char *items = jraw(q, "rows.0.0");
    if (only_id) return ok(status, jraw(items, "0"));
    return ok(status, items ? items : "[]");
}

/* POST projects/:pid/tasks/:tid/github/branches
 * {"repo_id","branch_name","source_branch"?} */
static i64 create_branch(const char *pid, const char *tid, const char *body) {
    const char *repo_id = jstr(body, "repo_id"), *branch = jstr(body, "branch_name");
    const char *source = jstr(body, "source_branch");
    if (!repo_id || !valid_branch(branch))
        return fail(400, "BAD_REQUEST", "repo_id and a valid branch_name are required");
    if (source && *source && !valid_branch(source)) return fail(400, "BAD_REQUEST", "source_branch is not valid");
    char *err = NULL;
    const char *default_branch = NULL;
    const char *full = project_repo(pid, repo_id, &default_branch, &err);
    if (err) return db_failed(err);
    if (!full) return fail(404, "GITHUB_REPOSITORY_NOT_FOUND", "no such linked repository in this project");
    if (!source || !*source) source = default_branch && *default_branch ? default_branch : "main";
    i64 f = 0;
    const char *token = project_token(pid, &f, NULL);
    if (!token) return f;
    char path[600];
    snprintf(path, sizeof path, "/repos/%s/git/ref/heads/%s", full, source);
    gh_resp r = gh("GET", path, token, NULL);
    if (r.status != 200) return gh_failed("GET /repos/{owner}/{repo}/git/ref/heads/{source_branch}", r);
    const char *sha = jstr(r.body, "object.sha");
    if (!sha || !*sha) return fail(502, "GITHUB_ERROR", "GitHub answered the source ref without a sha");
    buf_t b = {0};
    puts_(&b, "{\"ref\":");
    char ref[300];
    snprintf(ref, sizeof ref, "refs/heads/%s", branch);
    put_str(&b, ref);
    puts_(&b, ",\"sha\":");
    put_str(&b, sha);
    puts_(&b, "}");
    snprintf(path, sizeof path, "/repos/%s/git/refs", full);
    r = gh("POST", path, token, done(&b));
    if (r.status != 201 && r.status != 200) {
        if (r.status == 422) return failf(409, "GITHUB_BRANCH_EXISTS", "branch %s already exists on GitHub", branch);
        return gh_failed("POST /repos/{owner}/{repo}/git/refs", r);
    }
    if (!link_branch(pid, tid, repo_id, branch, "created", &err)) {
        if (err) return db_failed(err);
        return fail(409, "GITHUB_BRANCH_ALREADY_LINKED", "this branch is already linked to the task");
    }
    char *q = sql_query("SELECT id::text FROM github_task_branches WHERE task_id = $1 AND repo_id = $2 AND branch_name = $3",
                        params(3, tid, repo_id, branch), &err);
    if (err) return db_failed(err);
    return task_branches(pid, tid, 201, jstr(q, "rows.0.0"));
}

/* ------------------------------------------------------------ webhook */
static const char *header(const char *headers, const char *name) {
    /* Canonical names (X-Hub-Signature-256, X-Github-Event); also tolerate
     * other spellings. */
    const char *v = jstr(headers, name);
    if (v) return v;
    const char *p = ws(headers);
    if (*p != '{') return NULL;
    p = ws(p + 1);
    while (*p == '"') {
        const char *after = skip_string(p);
        if (!after) return NULL;
        size_t klen = (size_t)(after - p - 2);
        int match = klen == strlen(name) && strncasecmp(p + 1, name, klen) == 0;
        p = ws(after);
        if (*p != ':') return NULL;
        p = ws(p + 1);
        if (match) {
            char *s = keep(malloc(strlen(p) + 1));
            const char *end = skip_value(p);
            if (!end || *p != '"') return NULL;
            memcpy(s, p + 1, (size_t)(end - p - 2));
            s[end - p - 2] = 0;
            return s;
        }
        p = skip_value(p);
        if (!p) return NULL;
        p = ws(p);
        if (*p != ',') return NULL;
        p = ws(p + 1);
    }
    return NULL;
}

/* 1 when sig ("sha256=<64 hex>") is the HMAC of body under secret. */
static int signature_ok(const char *sig, const uint8_t *body, size_t len, const char *secret) {
    if (!sig || strncmp(sig, "sha256=", 7) != 0 || strlen(sig) != 7 + 64) return 0;
    uint8_t want[32], got[32];
    char lower[65];
    for (int i = 0; i < 64; i++) {
        char c = sig[7 + i];
        lower[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    lower[64] = 0;
    if (!hex_decode(lower, want, 32)) return 0;
    hmac_sha256((const uint8_t *)secret, strlen(secret), body, len, got);
    return ct_equal(want, got, 32);
}

static void webhook_pull_request(const char *pid, const char *repo_id, const char *payload) {
    const char *action = jstr0(payload, "action");
    char *pr = jraw(payload, "pull_request");
    if (!pr) return;
    char *err = NULL;
    const char *pr_id = cache_pr(pid, repo_id, pr, &err);
    if (!pr_id) return;
    const char *head = jstr0(pr, "head.ref");
    if (strcmp(action, "opened") == 0 || strcmp(action, "reopened") == 0) {
        /* A branch already linked to a task (e.g. created from Paca). */
        char *q = sql_query("SELECT DISTINCT task_id::text FROM github_task_branches WHERE repo_id = $1 AND branch_name = $2",
                            params(2, repo_id, head), &err);
        int n = err ? 0 : jcount(q, "rows"); /* "rows": null when there are none */
        if (n < 0) n = 0;
        for (int i = 0; i < n; i++) {
            char path[32];
            snprintf(path, sizeof path, "rows.%d.0", i);
            const char *tid = jstr(q, path);
            if (tid) link_pr(pid, tid, pr_id, "branch", &err);
        }
        /* Otherwise a task reference (PREFIX-42) in the branch name. */
        if (n == 0) {
            const char *tid = task_for_reference(pid, head);
            if (tid) link_pr(pid, tid, pr_id, "reference", &err);
        }
    }
    if (strcmp(action, "opened") != 0) {
        char sql[1400];
        snprintf(sql, sizeof sql,
                 "SELECT %s, 'action', $2::text, 'task_ids', (SELECT coalesce(json_agg(l.task_id), '[]'::json) "
                 "FROM github_task_pr_links l WHERE l.pull_request_id = p.id)) FROM github_pull_requests p "
                 "JOIN github_repositories r ON r.id = p.repo_id WHERE p.id = $1",
                 PR_JSON);
        char *q = sql_query(sql, params(2, pr_id, action), &err);
        char *ev = err ? NULL : jraw(q, "rows.0.0");
        if (ev) emit("github.pr_updated", ev);
    }
}

static void webhook_branch(const char *pid, const char *repo_id, const char *branch) {
    if (!branch || !*branch || !valid_branch(branch)) return;
    const char *tid = task_for_reference(pid, branch);
    char *err = NULL;
    if (tid) link_branch(pid, tid, repo_id, branch, "reference", &err);
}

/* POST webhook (public): GitHub's delivery. */
static i64 webhook(const uint8_t *body, size_t len) {
    out_t o = {0, 0};
    http_request_headers(P(&o.ptr), P(&o.len));
    char *headers = keep(take(o));
    const char *sig = header(headers, "X-Hub-Signature-256");
    const char *event = header(headers, "X-Github-Event");
    if (!sig || !*sig) return fail(401, "GITHUB_SIGNATURE_MISSING", "X-Hub-Signature-256 is required");
    const char *payload = (const char *)body;
    const char *full = jstr(payload, "repository.full_name");
    if (!full || !*full) return fail(400, "BAD_REQUEST", "the payload names no repository.full_name");
    uint8_t key[32];
    if (!encryption_key(key)) return fail(500, "ENCRYPTION_KEY_NOT_CONFIGURED", NO_KEY_MSG);
    char *err = NULL;
    /* The same repository may be linked to several projects, each with its
     * own webhook and secret: act for those whose secret signed this. */
    char *q = sql_query("SELECT id::text, project_id::text, webhook_secret_enc FROM github_repositories "
                        "WHERE lower(full_name) = lower($1) AND webhook_secret_enc IS NOT NULL",
                        params(1, full), &err);
    if (err) return db_failed(err);
    int n = jcount(q, "rows"), verified = 0;
    if (n <= 0) return failf(404, "GITHUB_REPOSITORY_NOT_LINKED", "%s is not linked to any project", full);
    const char *ev = event ? event : "";
    for (int i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof path, "rows.%d.2", i);
        const char *secret = decrypt_secret(jstr(q, path));
        if (!secret || !signature_ok(sig, body, len, secret)) continue;
        verified++;
        snprintf(path, sizeof path, "rows.%d.0", i);
        const char *repo_id = jstr(q, path);
        snprintf(path, sizeof path, "rows.%d.1", i);
        const char *pid = jstr(q, path);
        if (strcmp(ev, "pull_request") == 0) {
            webhook_pull_request(pid, repo_id, payload);
        } else if (strcmp(ev, "push") == 0) {
            const char *ref = jstr0(payload, "ref");
            if (strncmp(ref, "refs/heads/", 11) == 0 && !jtrue(payload, "deleted"))
                webhook_branch(pid, repo_id, ref + 11);
        } else if (strcmp(ev, "create") == 0) {
            if (strcmp(jstr0(payload, "ref_type"), "branch") == 0) webhook_branch(pid, repo_id, jstr0(payload, "ref"));
        }
        /* ping, check_run and the rest: acknowledged, nothing stored. */
    }
    if (!verified) return fail(401, "GITHUB_SIGNATURE_INVALID", "the webhook signature does not verify");
    buf_t b = {0};
    puts_(&b, "{\"received\":true,\"event\":");
    put_str(&b, ev);
    puts_(&b, "}");
    return ok(200, done(&b));
}

/* ------------------------------------------------------------ dispatch */
#define MAX_SEGS 10
static int split_path(const char *p, char segs[MAX_SEGS][160]) {
    int n = 0;
    while (*p && n < MAX_SEGS) {
        while (*p == '/') p++;
        if (!*p || *p == '?') break;
        size_t i = 0;
        while (p[i] && p[i] != '/' && p[i] != '?') {
            if (i + 1 < 160) segs[n][i] = p[i];
            i++;
        }
        segs[n][i < 160 ? i : 159] = 0;
        n++;
        p += i;
        if (*p == '?') break;
    }
    return n;
}

static i64 route(const char *meth, int n, char segs[MAX_SEGS][160], const uint8_t *body, size_t blen) {
    const char *b = (const char *)body;
    if (!*b) b = "{}";
#define IS(i, s) (strcmp(segs[i], s) == 0)
#define M(s) (strcmp(meth, s) == 0)
    if (n == 1 && IS(0, "webhook") && M("POST")) return webhook(body, blen);
    if (n < 3 || !IS(0, "projects")) return fail(404, "NOT_FOUND", "no such route");
    const char *pid = segs[1];
    if (!is_uuid(pid)) return fail(400, "BAD_REQUEST", "invalid project id");
    if (IS(2, "github")) {
        if (n == 3 && M("GET")) return status(pid);
        if (n == 4 && IS(3, "token") && M("POST")) return set_token(pid, b);
        if (n == 4 && IS(3, "token") && M("DELETE")) return delete_token(pid);
        if (n == 4 && IS(3, "repositories") && M("GET")) return list_repositories(pid);
        if (n == 4 && IS(3, "linked-repositories") && M("GET")) return linked_repositories(pid);
        if (n == 4 && IS(3, "linked-repositories") && M("POST")) return link_repository(pid, b);
        if (n == 5 && IS(3, "linked-repositories") && M("DELETE")) return unlink_repository(pid, segs[4]);
    }
    if (n >= 6 && IS(2, "tasks") && IS(4, "github")) {
        const char *tid = segs[3];
        if (!task_in_project(pid, tid)) return fail(404, "TASK_NOT_FOUND", "no such task in this project");
        if (n == 6 && IS(5, "pull-requests") && M("GET")) return task_prs(pid, tid, 200, NULL);
        if (n == 6 && IS(5, "pull-requests") && M("POST")) return link_pull_request(pid, tid, b);
        if (n == 7 && IS(5, "pull-requests") && M("DELETE")) return unlink_pull_request(pid, tid, segs[6]);
        if (n == 6 && IS(5, "branches") && M("GET")) return task_branches(pid, tid, 200, NULL);
        if (n == 6 && IS(5, "branches") && M("POST")) return create_branch(pid, tid, b);
    }
    return fail(404, "NOT_FOUND", "no such route");
#undef IS
#undef M
}

EXPORT("HandleRequest") i64 HandleRequest(int32_t ptr, int32_t len) {
    char *env = malloc((size_t)len + 1);
    if (len) memcpy(env, (void *)(uintptr_t)ptr, (size_t)len);
    env[len] = 0;
    free((void *)(uintptr_t)ptr);
    keep(env);
    const char *meth = jstr0(env, "method"), *full = jstr0(env, "path");
    out_t o = {0, 0};
    http_request_body(P(&o.ptr), P(&o.len));
    size_t blen = o.len;
    char *body = keep(take(o));
    static char segs[MAX_SEGS][160];
    int n = split_path(full, segs);
    i64 r = route(meth, n, segs, (const uint8_t *)body, blen);
    release();
    return r;
}

/* HandleEvent: cleanup on task.deleted / project.deleted (the core tables
 * are not referenced by foreign keys), and the task-number index on
 * task.created. Idempotent; DB errors are logged. */
EXPORT("HandleEvent") void HandleEvent(int32_t tp, int32_t tl, int32_t pp, int32_t pl) {
    char *topic = keep(malloc((size_t)tl + 1)), *payload = keep(malloc((size_t)pl + 1));
    memcpy(topic, (void *)(uintptr_t)tp, (size_t)tl);
    topic[tl] = 0;
    memcpy(payload, (void *)(uintptr_t)pp, (size_t)pl);
    payload[pl] = 0;
    free((void *)(uintptr_t)tp);
    free((void *)(uintptr_t)pp);
    if (strcmp(topic, "task.deleted") == 0) {
        const char *tid = jstr(payload, "task_id");
        if (is_uuid(tid)) {
            sql_exec("DELETE FROM github_task_pr_links WHERE task_id = $1", params(1, tid), NULL);
            sql_exec("DELETE FROM github_task_branches WHERE task_id = $1", params(1, tid), NULL);
            sql_exec("DELETE FROM github_task_refs WHERE task_id = $1", params(1, tid), NULL);
        }
    } else if (strcmp(topic, "project.deleted") == 0) {
        const char *pid = jstr(payload, "project_id");
        if (is_uuid(pid)) {
            /* Links of the project's tasks go with its PRs and repositories
             * (ON DELETE CASCADE inside the plugin's schema). */
            char *err = NULL;
            integration_t it = integration(pid, &err);
            if (it.id) delete_project_hooks(pid, it.token_enc);
            sql_exec("DELETE FROM github_repositories WHERE project_id = $1", params(1, pid), NULL);
            sql_exec("DELETE FROM github_integrations WHERE project_id = $1", params(1, pid), NULL);
            sql_exec("DELETE FROM github_task_refs WHERE project_id = $1", params(1, pid), NULL);
            sql_exec("DELETE FROM github_project_refs WHERE project_id = $1", params(1, pid), NULL);
        }
    } else if (strcmp(topic, "task.created") == 0) {
        const char *tid = jstr(payload, "task_id"), *pid = jstr(payload, "project_id");
        long long num;
        if (is_uuid(tid) && is_uuid(pid) && jint(payload, "task_number", &num)) {
            char nbuf[24];
            snprintf(nbuf, sizeof nbuf, "%lld", num);
            sql_exec("INSERT INTO github_task_refs (task_id, project_id, task_number) VALUES ($1, $2, $3::bigint) "
                     "ON CONFLICT (task_id) DO NOTHING",
                     params(3, tid, pid, nbuf), NULL);
            char *err = NULL;
            char *q = sql_query("SELECT 1 FROM github_project_refs WHERE project_id = $1", params(1, pid), &err);
            if (!err && jcount(q, "rows") <= 0) refresh_prefix(pid);
        }
    }
    release();
}

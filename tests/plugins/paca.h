/* The `paca` host module as Paca's Go SDK imports it (PLUGIN-ABI.md §2):
 * pointers and lengths are i64; "out" arguments are addresses where the host
 * writes a little-endian u32 pointer and u32 length of bytes it allocated
 * through paca_malloc. A tiny response/JSON toolkit for test plugins. */
#ifndef PACA_H
#define PACA_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#define IMPORT(n) __attribute__((import_module("paca"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))
typedef long long i64;
#define P(x) ((i64)(uintptr_t)(x))

IMPORT("log") void paca_log(int32_t level, i64 p, i64 l);
IMPORT("db_query") void db_query(i64, i64, i64, i64, i64, i64);
IMPORT("db_query2") void db_query2(i64, i64, i64, i64, i64, i64, i64, i64);
IMPORT("db_exec") void db_exec(i64, i64, i64, i64, i64, i64, i64);
IMPORT("storage_get") void storage_get(i64, i64, i64, i64);
IMPORT("storage_set") int32_t storage_set(i64, i64, i64, i64);
IMPORT("storage_delete") int32_t storage_delete(i64, i64);
IMPORT("cache_get") void cache_get(i64, i64, i64, i64);
IMPORT("cache_set") int32_t cache_set(i64, i64, i64, i64, int32_t);
IMPORT("cache_delete") int32_t cache_delete(i64, i64);
IMPORT("config_get") void config_get(i64, i64, i64, i64);
IMPORT("fetch") void paca_fetch(i64, i64, i64, i64);
IMPORT("settings_get") void settings_get(i64, i64);
IMPORT("event_emit") int32_t event_emit(i64, i64, i64, i64);
IMPORT("event_subscribe") int32_t event_subscribe(i64, i64);
IMPORT("activity_record") int32_t activity_record(i64, i64);
IMPORT("permission_check") int32_t permission_check(i64, i64);
IMPORT("tasks_list") void tasks_list(i64, i64, i64, i64);
IMPORT("task_get") void task_get(i64, i64, i64, i64);
IMPORT("project_get") void project_get(i64, i64, i64, i64);
IMPORT("members_list") void members_list(i64, i64, i64, i64);
IMPORT("http_request_body") void http_request_body(i64, i64);
IMPORT("http_request_headers") void http_request_headers(i64, i64);
IMPORT("http_caller_identity") void http_caller_identity(i64, i64);
IMPORT("http_respond") void http_respond(int32_t, i64, i64);

/* Orchestration: core writes as the calling user (the request's, or inside
 * HandleWakeup the user who scheduled the wakeup). Each takes a JSON input
 * (inP, inL) and writes the pointer/length of a JSON answer to (outP, outL);
 * a failure answers {"error": "...", "error_code": "FORBIDDEN" | ...}. A
 * module imports only the functions it calls. */
IMPORT("task_create") void task_create(i64, i64, i64, i64);
IMPORT("task_update") void task_update(i64, i64, i64, i64);
IMPORT("task_comment") void task_comment(i64, i64, i64, i64);
IMPORT("task_link") void task_link(i64, i64, i64, i64);
IMPORT("docs_list") void docs_list(i64, i64, i64, i64);
IMPORT("doc_get") void doc_get(i64, i64, i64, i64);
IMPORT("doc_create") void doc_create(i64, i64, i64, i64);
IMPORT("doc_update") void doc_update(i64, i64, i64, i64);
IMPORT("wakeup_schedule") void wakeup_schedule(i64, i64, i64, i64);
IMPORT("wakeup_cancel") void wakeup_cancel(i64, i64, i64, i64);
IMPORT("summary_set") void summary_set(i64, i64, i64, i64);

EXPORT("paca_malloc") void *paca_malloc(int32_t n) { return malloc(n > 0 ? (size_t)n : 1); }
EXPORT("paca_free") void paca_free(void *p) { free(p); }

/* A host result: (ptr, len) written by the host; NUL-terminated copy. */
typedef struct { uint32_t ptr, len; } out_t;
static inline char *take(out_t o) {
    char *s = malloc(o.len + 1);
    if (o.len) memcpy(s, (void *)(uintptr_t)o.ptr, o.len);
    s[o.len] = 0;
    if (o.ptr) free((void *)(uintptr_t)o.ptr);
    return s;
}
#define S(str) P(str), (i64)strlen(str)

/* Growable string buffer. */
typedef struct { char *p; size_t n, cap; } buf_t;
static inline void put(buf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static inline void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }
/* A JSON string literal of s. */
static inline void put_str(buf_t *b, const char *s) {
    puts_(b, "\"");
    for (; *s; s++) {
        char c = *s;
        if (c == '"' || c == '\\') { char e[2] = {'\\', c}; put(b, e, 2); }
        else if ((unsigned char)c < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", c); puts_(b, e); }
        else put(b, &c, 1);
    }
    puts_(b, "\"");
}
/* "key": raw-json, */
static inline void field_raw(buf_t *b, const char *key, const char *json) {
    put_str(b, key); puts_(b, ":"); puts_(b, (json && *json) ? json : "null"); puts_(b, ",");
}
static inline void field_str(buf_t *b, const char *key, const char *s) {
    put_str(b, key); puts_(b, ":"); put_str(b, s ? s : ""); puts_(b, ",");
}
static inline void field_int(buf_t *b, const char *key, long long v) {
    char n[32]; snprintf(n, sizeof n, "%lld", v); field_raw(b, key, n);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static inline void put_b64(buf_t *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint8_t)s[i] << 16;
        if (i + 1 < n) v |= (uint8_t)s[i + 1] << 8;
        if (i + 2 < n) v |= (uint8_t)s[i + 2];
        char q[4] = {B64[(v >> 18) & 63], B64[(v >> 12) & 63],
                     i + 1 < n ? B64[(v >> 6) & 63] : '=', i + 2 < n ? B64[v & 63] : '='};
        put(b, q, 4);
    }
}

/* The response envelope {status, headers, body: base64}; returned packed. */
static buf_t last_response;
static inline i64 respond(int status, const char *json_body) {
    free(last_response.p);
    memset(&last_response, 0, sizeof last_response);
    char head[64];
    snprintf(head, sizeof head, "{\"status\":%d,\"headers\":{\"X-Plugin\":\"yes\"},\"body\":\"", status);
    puts_(&last_response, head);
    put_b64(&last_response, json_body, strlen(json_body));
    puts_(&last_response, "\"}");
    return ((i64)(uintptr_t)last_response.p << 32) | (i64)last_response.n;
}

/* The value of "key":"..." in a JSON text (no unescaping; test data only). */
static inline char *json_get(const char *json, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = json ? strstr(json, pat) : NULL;
    out[0] = 0;
    if (!p) return out;
    p += strlen(pat);
    while (*p == ' ' || *p == ':') p++;
    if (*p != '"') return out;
    p++;
    size_t i = 0;
    while (p[i] && p[i] != '"' && i + 1 < cap) { out[i] = p[i]; i++; }
    out[i] = 0;
    return out;
}

static inline int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Request envelope fields. */
static char method[16], path[256];
static inline void parse_request(const char *env) {
    json_get(env, "method", method, sizeof method);
    json_get(env, "path", path, sizeof path);
}
static inline char *request_text(int32_t ptr, int32_t len) {
    char *s = malloc((size_t)len + 1);
    if (len) memcpy(s, (void *)(uintptr_t)ptr, (size_t)len);
    s[len] = 0;
    free((void *)(uintptr_t)ptr);
    return s;
}
#endif

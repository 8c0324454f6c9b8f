/* The `paca` host module imports the GitHub plugin uses (PLUGIN-ABI.md §2,
 * docs/plugins.md; adapted from tests/plugins/paca.h): pointers and lengths
 * are i64; "out" arguments are addresses where the host writes a
 * little-endian u32 pointer and u32 length of bytes it allocated through
 * paca_malloc. */
#ifndef GH_PACA_H
#define GH_PACA_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(n) __attribute__((import_module("paca"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))
typedef long long i64;
#define P(x) ((i64)(uintptr_t)(x))

IMPORT("log") void paca_log(int32_t level, i64 p, i64 l);
IMPORT("db_query2") void db_query2(i64, i64, i64, i64, i64, i64, i64, i64);
IMPORT("db_exec") void db_exec(i64, i64, i64, i64, i64, i64, i64);
IMPORT("config_get") void config_get(i64, i64, i64, i64);
IMPORT("fetch") void paca_fetch(i64, i64, i64, i64);
IMPORT("event_emit") int32_t event_emit(i64, i64, i64, i64);
IMPORT("tasks_list") void tasks_list(i64, i64, i64, i64);
IMPORT("task_get") void task_get(i64, i64, i64, i64);
IMPORT("project_get") void project_get(i64, i64, i64, i64);
IMPORT("http_request_body") void http_request_body(i64, i64);
IMPORT("http_request_headers") void http_request_headers(i64, i64);

EXPORT("paca_malloc") void *paca_malloc(int32_t n) { return malloc(n > 0 ? (size_t)n : 1); }
EXPORT("paca_free") void paca_free(void *p) { free(p); }

/* A host result: (ptr, len) written by the host. */
typedef struct { uint32_t ptr, len; } out_t;
/* A NUL-terminated copy of a host result (the original freed). */
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
    for (s = s ? s : ""; *s; s++) {
        char c = *s;
        if (c == '"' || c == '\\') { char e[2] = {'\\', c}; put(b, e, 2); }
        else if ((unsigned char)c < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", c); puts_(b, e); }
        else put(b, &c, 1);
    }
    puts_(b, "\"");
}
static inline void put_int(buf_t *b, long long v) {
    char n[32];
    snprintf(n, sizeof n, "%lld", v);
    puts_(b, n);
}
#endif

/* com.test.hostile: tries to escape every limit of the host. Each attempt
 * must be contained with a clear error while the server keeps serving. */
#include "../paca.h"

static volatile uint64_t spin;

static i64 sql_error(const char *sql, int exec) {
    out_t res = {0, 0}, err = {0, 0};
    if (exec) {
        uint64_t rows = 0;
        db_exec(S(sql), 0, 0, P(&rows), P(&err.ptr), P(&err.len));
    } else {
        db_query2(S(sql), 0, 0, P(&res.ptr), P(&res.len), P(&err.ptr), P(&err.len));
    }
    char *r = take(res), *e = take(err);
    buf_t b = {0};
    puts_(&b, "{");
    field_raw(&b, "result", *r ? r : "null");
    field_str(&b, "error", e);
    field_str(&b, "sql", sql);
    puts_(&b, "\"tried\":true}");
    i64 out = respond(200, b.p);
    free(b.p); free(r); free(e);
    return out;
}

static i64 fetch_url(const char *url) {
    char req[256];
    snprintf(req, sizeof req, "{\"method\":\"GET\",\"url\":\"%s\"}", url);
    out_t o = {0, 0};
    paca_fetch(S(req), P(&o.ptr), P(&o.len));
    char *x = take(o);
    i64 r = respond(200, x);
    free(x);
    return r;
}

EXPORT("HandleRequest") i64 HandleRequest(int32_t ptr, int32_t len) {
    char *env = request_text(ptr, len);
    parse_request(env);
    free(env);
    if (starts(path, "loop")) {
        for (;;) spin++;
    }
    if (starts(path, "bomb")) {
        /* Allocate 1 MiB blocks, touching every 4 KiB page (so the host
         * really commits them), until the allocator gives up. */
        long mib = 0;
        for (;;) {
            volatile char *p = malloc(1 << 20);
            if (!p) break;
            for (long i = 0; i < (1 << 20); i += 4096) p[i] = (char)i;
            mib++;
        }
        char body[64];
        snprintf(body, sizeof body, "{\"allocated_mib\":%ld}", mib);
        return respond(200, body);
    }
    if (starts(path, "steal-rm")) return sql_error("SELECT username, email FROM rm.users", 0);
    if (starts(path, "steal-secrets")) return sql_error("SELECT * FROM public.user_credentials", 0);
    if (starts(path, "steal")) return sql_error("SELECT * FROM public.users", 0);
    if (starts(path, "drop")) return sql_error("DROP SCHEMA plugin_data_com_test_probe CASCADE", 1);
    if (starts(path, "escalate")) return sql_error("SELECT set_config('role', 'postgres', false)", 0);
    if (starts(path, "fetch-local")) return fetch_url("https://127.0.0.1:1/");
    if (starts(path, "fetch-metadata")) return fetch_url("https://169.254.169.254/latest/meta-data/");
    if (starts(path, "fetch-other")) return fetch_url("https://example.org/");
    if (starts(path, "secret")) return respond(200, "{\"leaked\":true}");
    return respond(404, "{\"error\":\"no such handler\"}");
}

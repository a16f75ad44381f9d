/* SPDX-License-Identifier: MIT */
/*
 * The lifecycle tests' shared helpers: the recording handler, the uv_tcp clients, the
 * watchdog and the common ending. See harness.h.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* check__result() of the test's translation unit, so that one set of counters sees every
 * check (check.h keeps its counters per translation unit). */
static lc_report_fn report;

#define H_CHECK(cond) report((cond) ? true : false, __FILE__, __LINE__, "CHECK(%s) failed", #cond)
#define H_CHECK_EQ(a, b) h_eq((intmax_t)(a), (intmax_t)(b), #a, #b, __FILE__, __LINE__)

static bool h_eq(intmax_t a, intmax_t b, const char *as, const char *bs, const char *file, int line)
{
    return report(a == b, file, line, "CHECK_EQ(%s, %s) failed: %jd != %jd", as, bs, a, b);
}

/* ---- traces ----------------------------------------------------------------------------- */

/* Appends one token to c's trace; a repeated "msg" or "drain" becomes "msg*N". */
static void trace_add(lc_conn_t *c, const char *tok)
{
    size_t used = strlen(c->trace);
    size_t tl = strlen(tok);
    char *last = strrchr(c->trace, ' ');
    last = last != NULL ? last + 1 : c->trace;
    bool repeatable = strcmp(tok, "msg") == 0 || strcmp(tok, "drain") == 0;
    if (repeatable && used > 0 && strncmp(last, tok, tl) == 0 &&
        (last[tl] == '\0' || last[tl] == '*')) {
        unsigned long n = last[tl] == '*' ? strtoul(last + tl + 1, NULL, 10) : 1;
        snprintf(last, sizeof(c->trace) - (size_t)(last - c->trace), "%s*%lu", tok, n + 1);
        return;
    }
    int n = snprintf(c->trace + used, sizeof(c->trace) - used, "%s%s", used > 0 ? " " : "", tok);
    if (n < 0 || (size_t)n >= sizeof(c->trace) - used)
        report(false, __FILE__, __LINE__, "conn %d: trace full", c->index);
}

/* ---- the recording handler ------------------------------------------------------------- */

static void enter(lc_server_t *s, const lc_conn_t *c, const char *what)
{
    report(s->depth == 0, __FILE__, __LINE__, "%s of conn %d nested inside another callback", what,
           c->index);
    report(s->api_depth == 0, __FILE__, __LINE__,
           "%s of conn %d called before an adieu call returned", what, c->index);
    report(!c->closed, __FILE__, __LINE__, "%s of conn %d after its on_close (trace: %s)", what,
           c->index, c->trace);
    s->depth++;
}

static void leave(lc_server_t *s)
{
    s->depth--;
}

static lc_conn_t *rec_of(adieu_conn_t *conn)
{
    return adieu_conn_get_data(conn);
}

static void on_defer(void *arg)
{
    lc_defer_t *d = arg;
    lc_conn_t *c = d->rec;
    lc_server_t *s = c->s;
    report(s->depth == 0, __FILE__, __LINE__, "clean-up %d of conn %d ran inside a callback", d->id,
           c->index);
    report(c->closes == 1, __FILE__, __LINE__, "clean-up %d of conn %d ran before on_close", d->id,
           c->index);
    d->ran++;
    report(d->ran == 1, __FILE__, __LINE__, "clean-up %d of conn %d ran %d times", d->id, c->index,
           d->ran);
    report(d->registered, __FILE__, __LINE__, "clean-up %d of conn %d ran but was not registered",
           d->id, c->index);
    /* C2: last registered first. */
    int k = c->defers_registered - 1 - c->defers_ran;
    report(k >= 0 && d->id == c->defer_order[k], __FILE__, __LINE__,
           "clean-up %d of conn %d ran as number %d (trace: %s)", d->id, c->index, c->defers_ran,
           c->trace);
    c->defers_ran++;
    char tok[16];
    snprintf(tok, sizeof(tok), "d%d", d->id);
    trace_add(c, tok);
}

static void h_on_open(adieu_conn_t *conn, void *user_data)
{
    lc_server_t *s = user_data;
    if (!H_CHECK(s->nconns < LC_MAX_CONNS))
        return;
    lc_conn_t *c = &s->conns[s->nconns];
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->conn = conn;
    c->index = s->nconns++;
    H_CHECK(adieu_conn_get_data(conn) == NULL);
    adieu_conn_set_data(conn, c);
    enter(s, c, "on_open");
    c->opens++;
    c->opened_at = lc_now(s);
    trace_add(c, "open");
    H_CHECK(adieu_conn_is_open(conn));
    c->proto = adieu_conn_proto(conn);
    H_CHECK(c->proto == ADIEU_FRAMED || (c->proto == ADIEU_WEBSOCKET && s->ws_port > 0));
    H_CHECK(adieu_conn_server(conn) == s->server);
    snprintf(c->peer, sizeof(c->peer), "%s", adieu_conn_peer(conn));
    H_CHECK(strncmp(c->peer, "127.0.0.1:", 10) == 0);
    for (int i = 0; i < LC_DEFERS; i++) {
        c->defers[i] = (lc_defer_t){.rec = c, .id = i, .ran = 0};
        lc_api_begin(s);
        int rc = adieu_conn_defer(conn, on_defer, &c->defers[i]);
        lc_api_end(s);
        if (rc == ADIEU_ENOMEM && s->tolerate_enomem)
            continue;
        if (H_CHECK_EQ(rc, 0)) {
            c->defers[i].registered = true;
            c->defer_order[c->defers_registered++] = i;
        }
    }
    if (s->hooks.on_open)
        s->hooks.on_open(c);
    leave(s);
}

static void h_on_message(adieu_conn_t *conn, const adieu_msg_t *msg, void *user_data)
{
    lc_server_t *s = user_data;
    lc_conn_t *c = rec_of(conn);
    if (!H_CHECK(c != NULL))
        return;
    enter(s, c, "on_message");
    c->messages++;
    trace_add(c, "msg");
    H_CHECK_EQ(c->opens, 1);
    H_CHECK(msg->opcode == ADIEU_BINARY ||
            (c->proto == ADIEU_WEBSOCKET && msg->opcode == ADIEU_TEXT));
    H_CHECK(msg->data != NULL || msg->len == 0);
    if (s->hooks.on_message) {
        s->hooks.on_message(c, msg);
    } else {
        int rc = lc_send(c, msg->data, msg->len);
        report(rc == 0, __FILE__, __LINE__, "echo on conn %d: adieu_conn_send returned %s",
               c->index, adieu_err_name(rc));
    }
    leave(s);
}

static void h_on_shutdown(adieu_conn_t *conn, void *user_data)
{
    lc_server_t *s = user_data;
    lc_conn_t *c = rec_of(conn);
    if (!H_CHECK(c != NULL))
        return;
    enter(s, c, "on_shutdown");
    c->shutdowns++;
    trace_add(c, "shutdown");
    report(c->shutdowns == 1, __FILE__, __LINE__, "conn %d: on_shutdown %d times", c->index,
           c->shutdowns);
    if (s->hooks.on_shutdown)
        s->hooks.on_shutdown(c);
    leave(s);
}

static void h_on_drain(adieu_conn_t *conn, void *user_data)
{
    lc_server_t *s = user_data;
    lc_conn_t *c = rec_of(conn);
    if (!H_CHECK(c != NULL))
        return;
    enter(s, c, "on_drain");
    c->drains++;
    trace_add(c, "drain");
    if (s->hooks.on_drain)
        s->hooks.on_drain(c);
    leave(s);
}

static void h_on_close(adieu_conn_t *conn, const adieu_close_info_t *info, void *user_data)
{
    lc_server_t *s = user_data;
    lc_conn_t *c = rec_of(conn);
    if (!H_CHECK(c != NULL))
        return;
    enter(s, c, "on_close");
    c->closes++;
    c->closed = true;
    c->closed_at = lc_now(s);
    c->reason = info->reason;
    c->sys_err = info->sys_err;
    c->ws_code = info->ws_code;
    char tok[48];
    snprintf(tok, sizeof(tok), "close:%s", adieu_reason_name(info->reason));
    trace_add(c, tok);
    H_CHECK_EQ(c->defers_ran, 0);
    H_CHECK(!adieu_conn_is_open(conn));
    H_CHECK(info->ws_reason != NULL);
    if (c->proto == ADIEU_FRAMED) {
        H_CHECK_EQ(info->ws_code, 0);
        H_CHECK_EQ(info->ws_reason_len, 0);
    } else {
        /* RFC 6455 7.4.1: 1006 stands in where no close frame was exchanged. */
        H_CHECK(info->ws_code >= 1000 && info->ws_code <= 4999);
    }
    if (s->hooks.on_close)
        s->hooks.on_close(c, info);
    leave(s);
    lc_arrive(s);
}

static const adieu_handler_t recording_handler = {
    .on_open = h_on_open,
    .on_message = h_on_message,
    .on_shutdown = h_on_shutdown,
    .on_drain = h_on_drain,
    .on_close = h_on_close,
};

/* ---- server ----------------------------------------------------------------------------- */

static void on_watchdog(uv_timer_t *t)
{
    lc_server_t *s = t->data;
    report(false, __FILE__, __LINE__, "watchdog: the test still runs after %d ms", LC_WATCHDOG_MS);
    lc_dump(s);
    fflush(stdout);
    fflush(stderr);
    exit(EXIT_FAILURE);
}

static int start(lc_server_t *s, const adieu_config_t *cfg, const lc_hooks_t *hooks,
                 lc_report_fn reporter, bool may_fail)
{
    report = reporter;
    memset(s, 0, sizeof(*s));
    if (cfg != NULL)
        s->cfg = *cfg;
    else
        adieu_config_init(&s->cfg);
    if (hooks != NULL)
        s->hooks = *hooks;

    adieu_log_level_t level = ADIEU_LOG_WARN;
    const char *env = getenv("LC_LOG_LEVEL");
    if (env != NULL && adieu_log_parse_level(env, &level) != 0)
        level = ADIEU_LOG_WARN;
    adieu_log_set_level(level);

    if (uv_loop_init(&s->loop) != 0) {
        fprintf(stderr, "uv_loop_init failed\n");
        exit(EXIT_FAILURE);
    }
    uv_timer_init(&s->loop, &s->watchdog);
    s->watchdog.data = s;
    uv_timer_start(&s->watchdog, on_watchdog, LC_WATCHDOG_MS, 0);
    /* The watchdog must not keep the loop alive: uv_run() returns once the test is over. */
    uv_unref((uv_handle_t *)&s->watchdog);

    int rc = adieu_server_new(&s->loop, &s->cfg, &s->server);
    if (rc == 0)
        rc = adieu_server_listen(s->server, ADIEU_FRAMED, "127.0.0.1:0", &recording_handler, s);
    if (rc != 0 && may_fail) {
        if (s->server != NULL)
            H_CHECK_EQ(adieu_server_free(s->server), 0);
        s->server = NULL;
        uv_close((uv_handle_t *)&s->watchdog, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        H_CHECK_EQ(uv_loop_close(&s->loop), 0);
        return rc;
    }
    if (!H_CHECK_EQ(rc, 0))
        exit(EXIT_FAILURE);
    s->port = adieu_server_port(s->server, ADIEU_FRAMED);
    if (!H_CHECK(s->port > 0))
        exit(EXIT_FAILURE);
    return 0;
}

void lc__start(lc_server_t *s, const adieu_config_t *cfg, const lc_hooks_t *hooks,
               lc_report_fn reporter)
{
    start(s, cfg, hooks, reporter, false);
}

int lc__try_start(lc_server_t *s, const adieu_config_t *cfg, const lc_hooks_t *hooks,
                  lc_report_fn reporter)
{
    return start(s, cfg, hooks, reporter, true);
}

int lc_listen_ws(lc_server_t *s)
{
    int rc = adieu_server_listen(s->server, ADIEU_WEBSOCKET, "127.0.0.1:0", &recording_handler, s);
    if (rc != 0)
        return rc;
    s->ws_port = adieu_server_port(s->server, ADIEU_WEBSOCKET);
    return H_CHECK(s->ws_port > 0) ? 0 : s->ws_port;
}

void lc_run(lc_server_t *s)
{
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void lc__finish(lc_server_t *s, const char *file, int line)
{
    bool ok = true;
    ok &= report(adieu_server_done(s->server), file, line, "the server is not done");
    ok &= report(s->done_calls == s->shutdowns_started, file, line,
                 "the done callback ran %d times for %d shutdowns", s->done_calls,
                 s->shutdowns_started);
    for (int i = 0; i < s->nclients; i++)
        ok &= report(s->clients[i]->closed, file, line, "client %d is not closed",
                     s->clients[i]->index);
    int rc = adieu_server_free(s->server);
    ok &= report(rc == 0, file, line, "adieu_server_free() returned %s", adieu_err_name(rc));
    uv_close((uv_handle_t *)&s->watchdog, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&s->loop);
    if (rc != 0) {
        fprintf(stderr, "handles left on the loop:\n");
        uv_print_all_handles(&s->loop, stderr);
        /* Close what is left so that the report is not buried under leak reports. */
        uv_walk(&s->loop, on_walk_close, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
    }
    ok &= report(rc == 0, file, line, "uv_loop_close() returned %s", adieu_err_name(rc));
    if (!ok)
        lc_dump(s);
}

void lc_expect(lc_server_t *s, int n)
{
    s->pending = n;
}

void lc_arrive(lc_server_t *s)
{
    if (s->pending <= 0)
        return;
    if (--s->pending == 0) {
        int rc = lc_shutdown(s, LC_STOP_DEADLINE_MS);
        H_CHECK_EQ(rc, 0);
    }
}

uint64_t lc_now(lc_server_t *s)
{
    return uv_now(&s->loop);
}

adieu_stats_t lc_stats(const lc_server_t *s)
{
    adieu_stats_t st;
    adieu_server_stats(s->server, &st);
    return st;
}

lc_conn_t *lc_conn_of(lc_server_t *s, const lc_client_t *c)
{
    /* Two clients of different listeners may have the same local address (the kernel picks
     * ephemeral ports per destination): the listener tells them apart. */
    adieu_proto_t proto = c->port != 0 && c->port == s->ws_port ? ADIEU_WEBSOCKET : ADIEU_FRAMED;
    for (int i = 0; i < s->nconns; i++)
        if (c->local[0] != '\0' && s->conns[i].proto == proto &&
            strcmp(s->conns[i].peer, c->local) == 0)
            return &s->conns[i];
    return NULL;
}

void lc_dump(const lc_server_t *s)
{
    for (int i = 0; i < s->nconns; i++)
        fprintf(stderr, "  conn %d (%s): %s\n", i, s->conns[i].peer, s->conns[i].trace);
    for (int i = 0; i < s->nclients; i++) {
        const lc_client_t *c = s->clients[i];
        fprintf(stderr,
                "  client %d (%s): connect=%s msgs=%zu bytes_in=%zu ended=%d eof=%d read_err=%s "
                "closed=%d\n",
                c->index, c->local, adieu_err_name(c->connect_status), c->msgs, c->bytes_in,
                c->ended, c->eof, adieu_err_name(c->read_err), c->closed);
    }
    fprintf(stderr, "  done_calls=%d pending=%d\n", s->done_calls, s->pending);
}

typedef struct {
    uv_timer_t timer;
    void (*fn)(void *arg);
    void *arg;
} lc_after_t;

static void on_after_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_after(uv_timer_t *t)
{
    lc_after_t *a = t->data;
    a->fn(a->arg);
    uv_close((uv_handle_t *)&a->timer, on_after_closed);
}

void lc_after(lc_server_t *s, uint64_t ms, void (*fn)(void *arg), void *arg)
{
    lc_after_t *a = malloc(sizeof(*a));
    if (!H_CHECK(a != NULL))
        exit(EXIT_FAILURE);
    a->fn = fn;
    a->arg = arg;
    uv_timer_init(&s->loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, on_after, ms, 0);
}

typedef struct {
    uv_prepare_t prepare;
    bool (*cond)(void *arg);
    void (*fn)(void *arg);
    void *arg;
} lc_when_t;

static void on_when(uv_prepare_t *p)
{
    lc_when_t *w = p->data;
    if (!w->cond(w->arg))
        return;
    uv_prepare_stop(p);
    w->fn(w->arg);
    uv_close((uv_handle_t *)p, on_after_closed);
}

void lc_when(lc_server_t *s, bool (*cond)(void *arg), void (*fn)(void *arg), void *arg)
{
    lc_when_t *w = malloc(sizeof(*w));
    if (!H_CHECK(w != NULL))
        exit(EXIT_FAILURE);
    w->cond = cond;
    w->fn = fn;
    w->arg = arg;
    uv_prepare_init(&s->loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_when);
}

size_t lc_more_than_kernel_buffers(void)
{
    unsigned long lo, def, max = 4ul << 20;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    if (f != NULL) {
        if (fscanf(f, "%lu %lu %lu", &lo, &def, &max) != 3)
            max = 4ul << 20;
        fclose(f);
    }
    size_t n = 2 * (size_t)max;
    return n < (8u << 20) ? (8u << 20) : n;
}

/* ---- adieu calls through the harness ----------------------------------------------------- */

void lc_api_begin(lc_server_t *s)
{
    s->api_depth++;
}

void lc_api_end(lc_server_t *s)
{
    s->api_depth--;
}

int lc_send(lc_conn_t *c, const void *data, size_t len)
{
    lc_api_begin(c->s);
    int rc = adieu_conn_send(c->conn, ADIEU_BINARY, data, len);
    lc_api_end(c->s);
    return rc;
}

int lc_close(lc_conn_t *c)
{
    lc_api_begin(c->s);
    int rc = adieu_conn_close(c->conn);
    lc_api_end(c->s);
    return rc;
}

static void h_on_done(adieu_server_t *server, void *data)
{
    lc_server_t *s = data;
    H_CHECK(server == s->server);
    report(s->depth == 0, __FILE__, __LINE__, "the done callback ran inside another callback");
    report(s->api_depth == 0, __FILE__, __LINE__,
           "the done callback ran before an adieu call returned");
    s->done_calls++;
    s->done_at = lc_now(s);
    H_CHECK(adieu_server_done(server));
    if (s->hooks.on_done)
        s->hooks.on_done(s);
}

int lc_shutdown(lc_server_t *s, uint64_t deadline_ms)
{
    s->shutdown_at = lc_now(s);
    lc_api_begin(s);
    int rc = adieu_server_shutdown(s->server, deadline_ms, h_on_done, s);
    lc_api_end(s);
    if (rc == 0)
        s->shutdowns_started++;
    return rc;
}

int lc_force(lc_server_t *s)
{
    lc_api_begin(s);
    int rc = adieu_server_force(s->server);
    lc_api_end(s);
    return rc;
}

void lc__check_conn(const lc_conn_t *c, adieu_reason_t reason, int sys_err, const char *file,
                    int line)
{
    bool ok = true;
    ok &= report(c->opens == 1, file, line, "conn %d: on_open %d times", c->index, c->opens);
    ok &= report(c->closes == 1, file, line, "conn %d: on_close %d times", c->index, c->closes);
    for (int i = 0; i < LC_DEFERS; i++)
        ok &= report(c->defers[i].ran == (c->defers[i].registered ? 1 : 0), file, line,
                     "conn %d: clean-up %d (%s) ran %d times", c->index, i,
                     c->defers[i].registered ? "registered" : "not registered", c->defers[i].ran);
    ok &= report(c->reason == reason, file, line, "conn %d: reason %s, expected %s", c->index,
                 adieu_reason_name(c->reason), adieu_reason_name(reason));
    if (sys_err != LC_ANY_ERR)
        ok &= report(c->sys_err == sys_err, file, line, "conn %d: sys_err %s, expected %s",
                     c->index, adieu_err_name(c->sys_err), adieu_err_name(sys_err));
    /* The trace pins the order: on_open first, then on_close, then the clean-ups last first,
     * and nothing after them. */
    char tail[LC_TRACE_MAX];
    int n = snprintf(tail, sizeof(tail), "close:%s", adieu_reason_name(reason));
    for (int i = c->defers_registered - 1; i >= 0 && n > 0 && (size_t)n < sizeof(tail); i--)
        n += snprintf(tail + n, sizeof(tail) - (size_t)n, " d%d", c->defer_order[i]);
    size_t tl = strlen(tail);
    size_t len = strlen(c->trace);
    ok &= report(
        strncmp(c->trace, "open", 4) == 0 && len >= tl && strcmp(c->trace + len - tl, tail) == 0,
        file, line, "conn %d: trace \"%s\" does not end with \"%s\"", c->index, c->trace, tail);
    if (!ok)
        fprintf(stderr, "  conn %d: %s\n", c->index, c->trace);
}

/* ---- clients ---------------------------------------------------------------------------- */

size_t lc_prefix(uint8_t out[4], unsigned prefix_bytes, size_t len)
{
    if (prefix_bytes == 4) {
        out[0] = (uint8_t)(len >> 24);
        out[1] = (uint8_t)(len >> 16);
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    return 2;
}

void lc_client_init(lc_server_t *s, lc_client_t *c)
{
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->prefix_bytes = s->cfg.prefix_bytes;
    if (H_CHECK(s->nclients < LC_MAX_CLIENTS)) {
        c->index = s->nclients;
        s->clients[s->nclients++] = c;
    }
}

static void on_client_closed(uv_handle_t *h)
{
    lc_client_t *c = h->data;
    c->closed = true;
    free(c->rx);
    c->rx = NULL;
    c->rx_len = 0;
    c->rx_cap = 0;
    if (c->on_closed)
        c->on_closed(c);
    lc_arrive(c->s);
}

void lc_client_close(lc_client_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

void lc_client_reset(lc_client_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    int rc = uv_tcp_close_reset(&c->tcp, on_client_closed);
    report(rc == 0, __FILE__, __LINE__, "client %d: uv_tcp_close_reset: %s", c->index,
           adieu_err_name(rc));
}

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    lc_client_t *c = h->data;
    buf->base = c->rbuf;
    buf->len = sizeof(c->rbuf);
}

static void client_end(lc_client_t *c)
{
    c->ended = true;
    c->msgs_at_end = c->msgs;
    c->rx_at_end = c->rx_len;
    c->end_at = lc_now(c->s);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    if (c->on_end)
        c->on_end(c);
    if (!c->keep_open)
        lc_client_close(c);
}

/* Appends n bytes and hands out every complete message. */
static void client_input(lc_client_t *c, const uint8_t *data, size_t n)
{
    if (c->rx_len + n > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + n)
            cap *= 2;
        uint8_t *p = realloc(c->rx, cap);
        if (!H_CHECK(p != NULL))
            exit(EXIT_FAILURE);
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, data, n);
    c->rx_len += n;
    size_t pb = c->prefix_bytes;
    size_t pos = 0;
    while (c->rx_len - pos >= pb) {
        size_t len = 0;
        for (size_t i = 0; i < pb; i++)
            len = (len << 8) | c->rx[pos + i];
        if (c->rx_len - pos - pb < len)
            break;
        c->msgs++;
        if (c->on_message)
            c->on_message(c, c->rx + pos + pb, len);
        pos += pb + len;
    }
    memmove(c->rx, c->rx + pos, c->rx_len - pos);
    c->rx_len -= pos;
}

static void on_client_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    lc_client_t *c = stream->data;
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        c->eof = true;
        client_end(c);
        return;
    }
    if (nread < 0) {
        c->read_err = (int)nread;
        client_end(c);
        return;
    }
    c->bytes_in += (size_t)nread;
    if (c->on_data)
        c->on_data(c, (const uint8_t *)buf->base, (size_t)nread);
    else
        client_input(c, (const uint8_t *)buf->base, (size_t)nread);
}

void lc_client_read_start(lc_client_t *c)
{
    if (c->reading || c->closing || c->ended)
        return;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read);
    report(rc == 0, __FILE__, __LINE__, "client %d: uv_read_start: %s", c->index,
           adieu_err_name(rc));
    c->reading = rc == 0;
}

static void on_client_connect(uv_connect_t *req, int status)
{
    lc_client_t *c = req->data;
    c->connect_status = status;
    if (status == 0) {
        c->connected = true;
        c->connected_at = lc_now(c->s);
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        char ip[48] = "?";
        if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0 &&
            ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof(ip));
            snprintf(c->local, sizeof(c->local), "%s:%u", ip, (unsigned)ntohs(a->sin_port));
        }
        if (!c->no_read)
            lc_client_read_start(c);
    }
    if (c->on_connect)
        c->on_connect(c, status);
    if (status < 0)
        lc_client_close(c);
}

void lc_client_connect(lc_client_t *c)
{
    lc_server_t *s = c->s;
    int rc;
    if (c->rcvbuf > 0) {
        rc = uv_tcp_init_ex(&s->loop, &c->tcp, AF_INET);
        uv_os_fd_t fd;
        if (rc == 0)
            rc = uv_fileno((uv_handle_t *)&c->tcp, &fd);
        if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf, sizeof(c->rcvbuf)) != 0)
            rc = UV_EINVAL;
    } else {
        rc = uv_tcp_init(&s->loop, &c->tcp);
    }
    if (!H_CHECK_EQ(rc, 0))
        exit(EXIT_FAILURE);
    c->tcp.data = c;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", c->port != 0 ? c->port : s->port, &addr);
    c->connect_req.data = c;
    rc =
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&addr, on_client_connect);
    if (!H_CHECK_EQ(rc, 0))
        exit(EXIT_FAILURE);
}

typedef struct {
    uv_write_t req;
    lc_client_t *c;
    uint8_t data[];
} client_write_t;

static void on_client_write(uv_write_t *req, int status)
{
    client_write_t *w = req->data;
    if (status < 0 && status != UV_ECANCELED && w->c->write_err == 0)
        w->c->write_err = status;
    free(w);
}

void lc_client_send_raw(lc_client_t *c, const void *data, size_t len)
{
    if (!report(!c->closing, __FILE__, __LINE__, "client %d: send after close", c->index))
        return;
    client_write_t *w = malloc(sizeof(*w) + len);
    if (!H_CHECK(w != NULL))
        exit(EXIT_FAILURE);
    w->c = c;
    w->req.data = w;
    if (len > 0)
        memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_client_write);
    if (!report(rc == 0, __FILE__, __LINE__, "client %d: uv_write: %s", c->index,
                adieu_err_name(rc)))
        free(w);
}

void lc_client_send(lc_client_t *c, const void *payload, size_t len)
{
    uint8_t *frame = malloc(4 + len + 1);
    if (!H_CHECK(frame != NULL))
        exit(EXIT_FAILURE);
    size_t pl = lc_prefix(frame, c->prefix_bytes, len);
    if (len > 0)
        memcpy(frame + pl, payload, len);
    lc_client_send_raw(c, frame, pl + len);
    free(frame);
}

static void on_client_shutdown(uv_shutdown_t *req, int status)
{
    lc_client_t *c = req->data;
    c->shutdown_status = status;
}

void lc_client_shutdown(lc_client_t *c)
{
    c->shutdown_req.data = c;
    int rc = uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_client_shutdown);
    report(rc == 0, __FILE__, __LINE__, "client %d: uv_shutdown: %s", c->index, adieu_err_name(rc));
}

/* SPDX-License-Identifier: MIT */
/*
 * The server state machine: RUNNING -> DRAINING -> CLOSING -> DONE (SPEC C4).
 *
 *   RUNNING   listeners accept; connections serve.
 *   DRAINING  the framed listener is closed; on a later loop turn every connection gets
 *             on_shutdown and starts a graceful close (flush, FIN, lingering read); the
 *             deadline timer force-closes what is left with shutdown_timeout.
 *   CLOSING   every connection and listener has closed: the server's own handles close.
 *   DONE      nothing of the server is left on the loop; done_cb has run.
 *
 * The steps that call application callbacks run from the kick timer, never from inside
 * adieu_server_shutdown() or adieu_server_force(), so those may be called from a handler.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/alloc.h"
#include "io/internal.h"
#include "util/log.h"

#define READBUF_SIZE (64u * 1024u)

static void flush_dirty(adieu_server_t *server)
{
    while (!adieu_list_empty(&server->dirty)) {
        adieu_conn_t *conn = ADIEU_CONTAINER_OF(server->dirty.next, adieu_conn_t, dirty);
        adieu__conn_pump(conn);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    flush_dirty(h->data);
}

static void on_check(uv_check_t *h)
{
    flush_dirty(h->data);
}

static void on_kick(uv_timer_t *t);
static void on_deadline(uv_timer_t *t);

/* The server's own handles start with the first listener, so a server freed before it
 * listened leaves nothing on the loop. */
static void handles_start(adieu_server_t *server)
{
    if (server->handles_started)
        return;
    server->handles_started = true;
    uv_prepare_init(server->loop, &server->prepare);
    uv_check_init(server->loop, &server->check);
    uv_timer_init(server->loop, &server->deadline);
    uv_timer_init(server->loop, &server->kick);
    adieu__timers_init(server);
    server->prepare.data = server;
    server->check.data = server;
    server->deadline.data = server;
    server->kick.data = server;
    uv_prepare_start(&server->prepare, on_prepare);
    uv_check_start(&server->check, on_check);
    /* Flushing alone must not keep the loop alive: sockets and timers do that. */
    uv_unref((uv_handle_t *)&server->prepare);
    uv_unref((uv_handle_t *)&server->check);
}

int adieu_server_new(uv_loop_t *loop, const adieu_config_t *cfg, adieu_server_t **out)
{
    adieu_config_t c;
    if (cfg != NULL)
        c = *cfg;
    else
        adieu_config_init(&c);
    if (loop == NULL || out == NULL || (c.prefix_bytes != 2 && c.prefix_bytes != 4) ||
        c.write_low_watermark > c.write_high_watermark ||
        c.write_high_watermark > c.write_hard_limit || c.max_connections == 0)
        return ADIEU_EINVAL;

    adieu_server_t *server = adieu__calloc(1, sizeof(*server));
    if (server == NULL)
        goto fail;
    server->readbuf = adieu__malloc(READBUF_SIZE);
    if (server->readbuf == NULL)
        goto fail_server;
    server->readbuf_size = READBUF_SIZE;
    /* Output storage of connections that have nothing queued, for the next to queue: blocks
     * up to the size of the replies to a whole read and more, enough for many connections'
     * replies at once, and never more than a few MiB whatever the peak was. */
    server->out_pool.max_block = (size_t)1024 * 1024;
    server->out_pool.max_bytes = (size_t)8 * 1024 * 1024;
    server->ends_pool.max_block = (size_t)64 * 1024;
    server->ends_pool.max_bytes = (size_t)256 * 1024;
    /* Assembly storage: up to the largest message reserved whole (64 KiB, proto/frame.c and
     * proto/ws_conn.c). */
    server->in_pool.max_block = (size_t)64 * 1024;
    server->in_pool.max_bytes = (size_t)4 * 1024 * 1024;
    server->loop = loop;
    server->cfg = c;
    adieu_list_init(&server->conns);
    adieu_list_init(&server->dirty);
    for (int p = 0; p < ADIEU_PROTO_COUNT; p++) {
        server->listeners[p].server = server;
        server->listeners[p].proto = (adieu_proto_t)p;
        server->listeners[p].fd = -1;
    }
    /* The spare descriptor that lets a listener out of descriptors drop a connection rather
     * than spin (src/io/listener.c). */
    server->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* A write to a peer that is gone must fail with EPIPE, not kill the process. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    *out = server;
    return 0;

fail_server:
    adieu__free(server);
fail:
    return ADIEU_ENOMEM;
}

int adieu_server_listen(adieu_server_t *server, adieu_proto_t proto, const char *addr,
                        const adieu_handler_t *handler, void *user_data)
{
    if ((unsigned)proto >= ADIEU_PROTO_COUNT || handler == NULL)
        return ADIEU_EINVAL;
    adieu_listener_t *l = &server->listeners[proto];
    if (server->state != ADIEU__SRV_RUNNING || l->active || l->closing)
        return ADIEU_EINVALID_STATE;
    handles_start(server);
    l->handler = *handler;
    l->user_data = user_data;
    return adieu__listener_start(l, addr);
}

int adieu_server_port(const adieu_server_t *server, adieu_proto_t proto)
{
    if ((unsigned)proto >= ADIEU_PROTO_COUNT || !server->listeners[proto].active)
        return ADIEU_EINVALID_STATE;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(server->listeners[proto].fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

const char *adieu__server_listen_addr(const adieu_server_t *server, adieu_proto_t proto)
{
    return server->listeners[proto].addr;
}

/* ---- shutdown --------------------------------------------------------------------------- */

static uint64_t sum(const uint64_t v[ADIEU_PROTO_COUNT])
{
    uint64_t s = 0;
    for (int p = 0; p < ADIEU_PROTO_COUNT; p++)
        s += v[p];
    return s;
}

static void stop_signals(adieu_server_t *server);

static void on_server_handle_closed(uv_handle_t *h)
{
    adieu_server_t *server = h->data;
    if (--server->handles > 0)
        return;
    server->state = ADIEU__SRV_DONE;
    adieu_log(ADIEU_LOG_INFO, "shutdown",
              "done connections=%llu messages_in=%llu messages_out=%llu",
              (unsigned long long)server->stats.connections,
              (unsigned long long)sum(server->stats.messages_in),
              (unsigned long long)sum(server->stats.messages_out));
    stop_signals(server);
    if (server->done_cb)
        server->done_cb(server, server->done_data);
}

static bool listeners_closed(const adieu_server_t *server)
{
    for (int p = 0; p < ADIEU_PROTO_COUNT; p++)
        if (server->listeners[p].active || server->listeners[p].closing)
            return false;
    return true;
}

/* SPEC section 4: health checks and refused upgrades do not delay the end of the drain.
 * Once only such connections are left, they are closed. */
static void close_http_conns(adieu_server_t *server)
{
    if (server->closing_http)
        return;
    server->closing_http = true;
    while (!adieu_list_empty(&server->conns)) {
        adieu_conn_t *conn = ADIEU_CONTAINER_OF(server->conns.next, adieu_conn_t, link);
        adieu__conn_finish(conn, ADIEU_REASON_SHUTDOWN, 0);
    }
    server->closing_http = false;
}

void adieu__server_check_done(adieu_server_t *server)
{
    adieu__listeners_resume(server);
    if (server->state != ADIEU__SRV_DRAINING || !server->drain_step_done || server->closing_http ||
        server->nconns > server->nhttp)
        return;
    close_http_conns(server);
    /* Listeners that stayed open for health checks close once the connections are gone. */
    for (int p = 0; p < ADIEU_PROTO_COUNT; p++)
        adieu__listener_close(&server->listeners[p]);
    if (!listeners_closed(server))
        return;
    server->state = ADIEU__SRV_CLOSING;
    server->handles = 5;
    uv_close((uv_handle_t *)&server->tick, on_server_handle_closed);
    uv_close((uv_handle_t *)&server->prepare, on_server_handle_closed);
    uv_close((uv_handle_t *)&server->check, on_server_handle_closed);
    uv_close((uv_handle_t *)&server->deadline, on_server_handle_closed);
    uv_close((uv_handle_t *)&server->kick, on_server_handle_closed);
}

static void finish_all(adieu_server_t *server, adieu_reason_t reason)
{
    while (!adieu_list_empty(&server->conns)) {
        adieu_conn_t *conn = ADIEU_CONTAINER_OF(server->conns.next, adieu_conn_t, link);
        adieu__conn_finish(conn, reason, 0);
    }
}

static void drain_step(adieu_server_t *server)
{
    /* Walk a private copy of the list: a callback may close other connections, and a
     * connection that finishes unlinks itself from whichever list holds it. */
    adieu_list_t walk;
    adieu_list_init(&walk);
    adieu_list_splice(&walk, &server->conns);
    while (!adieu_list_empty(&walk)) {
        adieu_conn_t *conn = ADIEU_CONTAINER_OF(walk.next, adieu_conn_t, link);
        adieu_list_remove(&conn->link);
        adieu_list_push_back(&server->conns, &conn->link);
        if (conn->phase == ADIEU__PHASE_HTTP)
            continue; /* not the application's: answers its request, or closes at the end */
        adieu_conn_ref(conn);
        if (!conn->shutdown_notified && conn->state != ADIEU__CONN_CLOSED) {
            conn->shutdown_notified = true;
            if (conn->opened && conn->listener->handler.on_shutdown)
                conn->listener->handler.on_shutdown(conn, conn->listener->user_data);
        }
        if (conn->state == ADIEU__CONN_OPEN)
            adieu__conn_begin_close(conn, ADIEU_REASON_SHUTDOWN, 0);
        if (conn->state != ADIEU__CONN_CLOSED)
            adieu__conn_pump(conn);
        adieu_conn_unref(conn);
    }
    server->drain_step_done = true;
    if (server->deadline_ms == 0 && server->nconns > 0) {
        adieu_log(ADIEU_LOG_WARN, "shutdown", "deadline passed, forcing count=%llu",
                  (unsigned long long)server->nconns);
        finish_all(server, ADIEU_REASON_SHUTDOWN_TIMEOUT);
    }
    adieu__server_check_done(server);
}

static void on_kick(uv_timer_t *t)
{
    adieu_server_t *server = t->data;
    if (server->force_pending) {
        finish_all(server, ADIEU_REASON_FORCED);
        server->drain_step_done = true;
        adieu__server_check_done(server);
    } else if (!server->drain_step_done) {
        drain_step(server);
    }
}

static void on_deadline(uv_timer_t *t)
{
    adieu_server_t *server = t->data;
    if (server->state != ADIEU__SRV_DRAINING)
        return;
    if (server->nconns > 0)
        adieu_log(ADIEU_LOG_WARN, "shutdown", "deadline passed, forcing count=%llu",
                  (unsigned long long)server->nconns);
    finish_all(server, ADIEU_REASON_SHUTDOWN_TIMEOUT);
    server->drain_step_done = true;
    adieu__server_check_done(server);
}

int adieu_server_shutdown(adieu_server_t *server, uint64_t deadline_ms, adieu_server_done_cb done,
                          void *data)
{
    if (server->shutdown_started)
        return ADIEU_EINVALID_STATE;
    server->shutdown_started = true;
    server->state = ADIEU__SRV_DRAINING;
    server->stats.draining = true;
    server->done_cb = done;
    server->done_data = data;
    server->deadline_ms = deadline_ms;
    handles_start(server);
    /* SPEC C4 (1): the framed listener closes at once; the HTTP/WebSocket one stays to
     * answer health checks until the drain ends. */
    adieu__listener_close(&server->listeners[ADIEU_FRAMED]);
    if (deadline_ms > 0)
        uv_timer_start(&server->deadline, on_deadline, deadline_ms, 0);
    uv_timer_start(&server->kick, on_kick, 0, 0);
    return 0;
}

int adieu_server_force(adieu_server_t *server)
{
    if (server->state == ADIEU__SRV_CLOSING || server->state == ADIEU__SRV_DONE)
        return 0;
    if (!server->shutdown_started)
        adieu_server_shutdown(server, 0, NULL, NULL);
    server->force_pending = true;
    uv_timer_start(&server->kick, on_kick, 0, 0);
    return 0;
}

bool adieu_server_done(const adieu_server_t *server)
{
    return server->state == ADIEU__SRV_DONE;
}

int adieu_server_free(adieu_server_t *server)
{
    if (server == NULL)
        return 0;
    if (server->state != ADIEU__SRV_DONE && (server->handles_started || !listeners_closed(server)))
        return ADIEU_EINVALID_STATE;
    if (server->reserve_fd >= 0)
        close(server->reserve_fd);
    adieu__free(server->readbuf);
    adieu__timers_free(server);
    adieu_buf_pool_free(&server->out_pool);
    adieu_buf_pool_free(&server->ends_pool);
    adieu_buf_pool_free(&server->in_pool);
    while (server->free_reqs != NULL) {
        adieu_req_t *req = server->free_reqs;
        server->free_reqs = req->next_free;
        adieu__free(req);
    }
    adieu__free(server);
    return 0;
}

void adieu_server_stats(const adieu_server_t *server, adieu_stats_t *out)
{
    *out = server->stats;
}

uv_loop_t *adieu_server_loop(const adieu_server_t *server)
{
    return server->loop;
}

/* ---- adieu_server_run: signals ------------------------------------------------------- */

static const char *signal_name(int signum)
{
    return signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : "signal";
}

static void on_signal(uv_signal_t *h, int signum)
{
    adieu_server_t *server = h->data;
    if (!server->shutdown_started) {
        server->first_signal = signum;
        adieu_log(ADIEU_LOG_INFO, "shutdown",
                  "draining signal=%s connections=%llu deadline_ms=%llu", signal_name(signum),
                  (unsigned long long)server->nconns, (unsigned long long)server->deadline_ms);
        adieu_server_shutdown(server, server->deadline_ms, NULL, NULL);
    } else if (server->second_signal == 0 && server->state == ADIEU__SRV_DRAINING) {
        server->second_signal = signum;
        adieu_log(ADIEU_LOG_WARN, "shutdown", "forced signal=%s connections=%llu",
                  signal_name(signum), (unsigned long long)server->nconns);
        adieu_server_force(server);
    }
}

static void on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

static void stop_signals(adieu_server_t *server)
{
    if (!server->running_signals)
        return;
    server->running_signals = false;
    uv_close((uv_handle_t *)&server->sig[0], on_signal_closed);
    uv_close((uv_handle_t *)&server->sig[1], on_signal_closed);
}

int adieu_server_catch_signals(adieu_server_t *server, uint64_t drain_ms)
{
    static const int signums[2] = {SIGINT, SIGTERM};
    if (server->running_signals || server->state != ADIEU__SRV_RUNNING)
        return ADIEU_EINVALID_STATE;
    server->deadline_ms = drain_ms;
    for (int i = 0; i < 2; i++) {
        uv_signal_init(server->loop, &server->sig[i]);
        server->sig[i].data = server;
        int rc = uv_signal_start(&server->sig[i], on_signal, signums[i]);
        if (rc < 0) {
            uv_close((uv_handle_t *)&server->sig[i], on_signal_closed);
            if (i == 1)
                uv_close((uv_handle_t *)&server->sig[0], on_signal_closed);
            return rc;
        }
    }
    server->running_signals = true;
    return 0;
}

int adieu_server_run(adieu_server_t *server, uint64_t drain_ms)
{
    if (!server->running_signals)
        adieu_server_catch_signals(server, drain_ms);
    uv_run(server->loop, UV_RUN_DEFAULT);
    return server->second_signal ? 128 + server->second_signal : 0;
}

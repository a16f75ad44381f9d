/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket listener's connections on the lifecycle core of conn.c: the HTTP phase
 * (request head, /healthz, /metrics, refusals, the upgrade) and the WebSocket phase (the
 * sans-I/O ws_conn driven from reads, control output taken into the write queue, the close
 * handshake, the keep-alive ping). Every ending still goes through adieu__conn_begin_close()
 * and adieu__conn_finish().
 */
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "io/internal.h"
#include "proto/handshake.h"
#include "server/metrics.h"
#include "util/log.h"

/* ---- HTTP phase ------------------------------------------------------------------------ */

static void answer_and_close(adieu_conn_t *conn, const char *bytes, int n, adieu_reason_t reason,
                             const char *detail)
{
    /* An answer that could not be queued was not given: the close says so. */
    if (n <= 0 || adieu__conn_out_append(conn, bytes, (size_t)n) < 0) {
        reason = ADIEU_REASON_SERVER_ERROR;
        detail = n <= 0 ? "answer not written" : "out of memory";
    }
    if (detail != NULL)
        snprintf(conn->detail, sizeof(conn->detail), "%s", detail);
    adieu__conn_begin_close(conn, reason, 0);
}

void adieu__ws_accept(adieu_conn_t *conn)
{
    adieu_http_parser_init(&conn->http, conn->server->cfg.max_header);
    if (conn->server->nconns > conn->server->cfg.max_connections) {
        /* SPEC section 4: over --max-connections, WebSocket gets 503 first. */
        adieu_handshake_t hs = {
            .kind = ADIEU_HS_REFUSE, .status = 503, .detail = "too many connections"};
        char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
        int n = adieu_handshake_write_refusal(&hs, out, sizeof(out));
        char detail[32];
        snprintf(detail, sizeof(detail), "limit %u", conn->server->cfg.max_connections);
        answer_and_close(conn, out, n, ADIEU_REASON_TOO_MANY_CONNECTIONS, detail);
        return;
    }
    adieu__conn_start_handshake_timer(conn);
}

static void answer_metrics(adieu_conn_t *conn)
{
    adieu_buf_t body;
    adieu_buf_init(&body);
    char head[ADIEU_HANDSHAKE_RESPONSE_MAX];
    int n = -1;
    if (adieu__metrics_format(&conn->server->stats, &body) == 0)
        n = adieu_handshake_write_metrics_head(adieu_buf_size(&body), head, sizeof(head));
    /* Head and body are queued together or not at all: never a head without its body. */
    size_t len = adieu_buf_size(&body);
    uint8_t *dst = n > 0 ? adieu_buf_reserve(&conn->out_pend, (size_t)n + len) : NULL;
    if (dst != NULL) {
        memcpy(dst, head, (size_t)n);
        memcpy(dst + n, adieu_buf_head(&body), len);
        adieu_buf_commit(&conn->out_pend, (size_t)n + len);
        conn->out_queued += (size_t)n + len;
        adieu__conn_begin_close(conn, ADIEU_REASON_HTTP_DONE, 0);
    } else {
        adieu__conn_begin_close(conn, ADIEU_REASON_SERVER_ERROR, 0);
    }
    adieu_buf_free(&body);
}

/* The 101 is written: the connection is handed to the application. Bytes after the head
 * are frames the client sent early. */
static void upgrade(adieu_conn_t *conn, const adieu_handshake_t *hs, size_t head_len)
{
    adieu_server_t *server = conn->server;
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
    int n = adieu_handshake_write_101(hs, out, sizeof(out));
    /* The 101 must be queued before the application is told: a peer that never gets it
     * would wait forever on a connection the application believes open. */
    if (n <= 0 || adieu__conn_out_append(conn, out, (size_t)n) < 0) {
        snprintf(conn->detail, sizeof(conn->detail), "out of memory");
        adieu__conn_finish(conn, ADIEU_REASON_SERVER_ERROR, 0);
        return;
    }
    /* NOTE: the early frames move out of the request buffer first: the WebSocket state
     * takes the request's storage, and frames are unmasked in place. */
    size_t rest = adieu_buf_size(&conn->inbuf) - head_len;
    uint8_t *early = rest > 0 ? adieu__malloc(rest) : NULL;
    if (rest > 0 && early == NULL) {
        snprintf(conn->detail, sizeof(conn->detail), "out of memory");
        adieu__conn_finish(conn, ADIEU_REASON_SERVER_ERROR, 0);
        return;
    }
    if (rest > 0)
        memcpy(early, adieu_buf_head(&conn->inbuf) + head_len, rest);
    adieu_buf_free(&conn->inbuf);
    memset(&conn->ws, 0, sizeof(conn->ws));
    adieu_ws_conn_init(&conn->ws.c, server->cfg.max_message);
    conn->ws.c.pool = &server->in_pool;
    conn->ws.subprotocol = hs->subprotocol;
    conn->phase = ADIEU__PHASE_WS;
    server->nhttp--;
    adieu__conn_start_idle(conn);
    if (adieu__log_enabled(ADIEU_LOG_DEBUG))
        adieu_log(ADIEU_LOG_DEBUG, "conn", "open peer=%s proto=ws", conn->peer);
    conn->opened = true;
    if (conn->listener->handler.on_open)
        conn->listener->handler.on_open(conn, conn->listener->user_data);
    if (early != NULL && conn->state != ADIEU__CONN_CLOSED)
        adieu__ws_input(conn, early, rest);
    adieu__free(early);
}

static void http_request(adieu_conn_t *conn, const adieu_http_request_t *req, size_t head_len)
{
    const adieu_config_t *cfg = &conn->server->cfg;
    adieu_handshake_opts_t opts = {
        .draining = conn->server->state != ADIEU__SRV_RUNNING,
        .subprotocols = cfg->subprotocols,
        .num_subprotocols = cfg->num_subprotocols,
    };
    adieu_handshake_t hs;
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
    switch (adieu_handshake_classify(req, &opts, &hs)) {
    case ADIEU_HS_UPGRADE:
        upgrade(conn, &hs, head_len);
        break;
    case ADIEU_HS_HEALTHZ:
        answer_and_close(conn, out, adieu_handshake_write_healthz(opts.draining, out, sizeof(out)),
                         ADIEU_REASON_HTTP_DONE, NULL);
        break;
    case ADIEU_HS_METRICS:
        answer_metrics(conn);
        break;
    case ADIEU_HS_REFUSE:
        answer_and_close(conn, out, adieu_handshake_write_refusal(&hs, out, sizeof(out)),
                         hs.status == 431 ? ADIEU_REASON_TOO_BIG : ADIEU_REASON_BAD_REQUEST,
                         hs.detail);
        break;
    }
}

static void http_input(adieu_conn_t *conn, const uint8_t *data, size_t len)
{
    if (adieu_buf_append(&conn->inbuf, data, len) < 0) {
        adieu__conn_finish(conn, ADIEU_REASON_SERVER_ERROR, 0);
        return;
    }
    adieu_http_header_t headers[ADIEU_HTTP_MAX_HEADERS];
    adieu_http_request_t req;
    size_t head_len = 0;
    int rc = adieu_http_parse(&conn->http, (const char *)adieu_buf_head(&conn->inbuf),
                              adieu_buf_size(&conn->inbuf), headers, ADIEU_HTTP_MAX_HEADERS, &req,
                              &head_len);
    if (rc == 0)
        return;
    if (rc == 1) {
        http_request(conn, &req, head_len);
        return;
    }
    adieu_handshake_t hs;
    adieu_handshake_refuse_parse(&conn->http, rc, &hs);
    char out[ADIEU_HANDSHAKE_RESPONSE_MAX];
    answer_and_close(conn, out, adieu_handshake_write_refusal(&hs, out, sizeof(out)),
                     hs.status == 431 ? ADIEU_REASON_TOO_BIG : ADIEU_REASON_BAD_REQUEST, hs.detail);
}

/* ---- WebSocket phase ------------------------------------------------------------------- */

static adieu_reason_t fail_reason(adieu_ws_fail_t fail)
{
    switch (fail) {
    case ADIEU_WS_FAIL_INVALID_UTF8:
        return ADIEU_REASON_INVALID_UTF8;
    case ADIEU_WS_FAIL_TOO_BIG:
        return ADIEU_REASON_TOO_BIG;
    case ADIEU_WS_FAIL_SERVER_ERROR:
        return ADIEU_REASON_SERVER_ERROR;
    default:
        return ADIEU_REASON_PROTOCOL_ERROR;
    }
}

static void ws_event(adieu_conn_t *conn, const adieu_ws_event_t *ev)
{
    adieu_ws_side_t *ws = &conn->ws;
    switch (ev->type) {
    case ADIEU_WS_EV_MESSAGE:
        if (conn->state == ADIEU__CONN_OPEN)
            adieu__conn_deliver(conn, ev->opcode == ADIEU_WS_OP_TEXT ? ADIEU_TEXT : ADIEU_BINARY,
                                ev->data, ev->len);
        break;
    case ADIEU_WS_EV_PING:
    case ADIEU_WS_EV_PONG:
        break; /* the pong is queued by the core; any input already counts as activity */
    case ADIEU_WS_EV_CLOSE:
        if (ws->code == 0) {
            ws->code = ev->code;
            /* At most 123 bytes (RFC 6455 §5.5). Without memory for it the reason is left
             * out of the close information, not the close. */
            ws->reason = ev->len > 0 ? adieu__malloc(ev->len) : NULL;
            if (ws->reason != NULL) {
                memcpy(ws->reason, ev->data, ev->len);
                ws->reason_len = (uint8_t)ev->len;
            }
        }
        /* This close answers ours when ours was out (taken for sending) before it came. */
        ws->answered = conn->state == ADIEU__CONN_CLOSING && adieu_ws_conn_done(&ws->c);
        adieu__conn_begin_close(conn, ADIEU_REASON_NORMAL, 0);
        adieu__conn_mark_dirty(conn);
        break;
    case ADIEU_WS_EV_FAIL:
        if (ws->code == 0)
            ws->code = ev->code;
        snprintf(conn->detail, sizeof(conn->detail), "%s", ev->detail);
        adieu__conn_begin_close(conn, fail_reason(ev->fail), 0);
        break;
    }
}

static void ws_frames(adieu_conn_t *conn, uint8_t *data, size_t len)
{
    conn->ws.ping_sent = false;
    while (conn->state == ADIEU__CONN_OPEN || conn->state == ADIEU__CONN_CLOSING) {
        size_t used = 0;
        adieu_ws_event_t ev;
        int rc = adieu_ws_conn_recv(&conn->ws.c, data, len, &used, &ev);
        data += used;
        len -= used;
        if (rc == 0) {
            /* The read is used up and its events handled: storage kept for assembling
             * messages goes, unless a message is still being assembled across reads (then
             * keeping it spares an allocation per message), so an idle connection holds
             * none. */
            adieu_ws_conn_trim(&conn->ws.c);
            return;
        }
        ws_event(conn, &ev);
        /* Control output is taken after every event: each ping gets its own pong, in
         * order with the replies around it (the core keeps one pong slot). Usually there
         * is none, which the inline check answers without a call. */
        if (conn->state != ADIEU__CONN_CLOSED && adieu_ws_conn_has_output(&conn->ws.c))
            adieu__ws_collect_output(conn);
    }
}

void adieu__ws_input(adieu_conn_t *conn, uint8_t *data, size_t len)
{
    if (conn->phase == ADIEU__PHASE_HTTP)
        http_input(conn, data, len);
    else
        ws_frames(conn, data, len);
}

void adieu__ws_eof(adieu_conn_t *conn)
{
    int truncated = conn->phase == ADIEU__PHASE_HTTP ? adieu_http_parser_eof(&conn->http)
                                                     : adieu_ws_conn_eof(&conn->ws.c);
    if (truncated < 0) {
        snprintf(conn->detail, sizeof(conn->detail), "%s",
                 conn->phase == ADIEU__PHASE_HTTP ? "stream ended inside the request"
                                                  : "stream ended inside a frame");
        adieu__conn_begin_close(conn, ADIEU_REASON_TRUNCATED, 0);
    } else {
        adieu__conn_begin_close(conn, ADIEU_REASON_PEER_EOF, 0);
    }
}

/* The close code we send for a close we start (SPEC section 4). */
static unsigned close_code(adieu_reason_t reason, const char **text)
{
    switch (reason) {
    case ADIEU_REASON_SHUTDOWN:
    case ADIEU_REASON_IDLE_TIMEOUT:
        *text = "going away";
        return 1001;
    case ADIEU_REASON_SERVER_ERROR:
        *text = "server error";
        return 1011;
    default:
        *text = "";
        return 1000;
    }
}

/* Queues our close frame. Only a reason needs memory: when none is left the peer still gets
 * the code, rather than no close frame at all. */
static int ws_send_close(adieu_ws_conn_t *c, unsigned code, const char *text)
{
    int rc = adieu_ws_conn_send_close(c, code, text, strlen(text));
    if (rc == ADIEU_ENOMEM)
        rc = adieu_ws_conn_send_close(c, code, "", 0);
    return rc;
}

void adieu__ws_begin_close(adieu_conn_t *conn, adieu_reason_t reason)
{
    adieu_ws_side_t *ws = &conn->ws;
    /* A peer that closed TCP gets no close frame; one whose close came first, or that broke
     * the protocol, already has its answer queued by the core. */
    if (conn->eof_seen || adieu_ws_conn_state(&ws->c) != ADIEU_WS_OPEN)
        return;
    const char *text;
    unsigned code = close_code(reason, &text);
    if (ws_send_close(&ws->c, code, text) == 0 && ws->code == 0)
        ws->code = code;
}

bool adieu__ws_idle(adieu_conn_t *conn)
{
    adieu_ws_side_t *ws = &conn->ws;
    uint8_t hdr[10];
    if (ws->ping_sent)
        return false;
    int n = adieu_ws_conn_send_header(&ws->c, ADIEU_WS_OP_PING, 0, hdr);
    if (n < 0 || adieu__conn_out_append(conn, hdr, (size_t)n) < 0)
        return false;
    ws->ping_sent = true;
    return true;
}

void adieu__ws_collect_output(adieu_conn_t *conn)
{
    const uint8_t *bytes;
    size_t n;
    while ((n = adieu_ws_conn_output(&conn->ws.c, &bytes)) > 0) {
        if (adieu__conn_out_append(conn, bytes, n) < 0) {
            /* A pong or close frame we owe cannot be queued, and nothing would retry it:
             * the close handshake could only end in close_timeout, blaming the peer. */
            snprintf(conn->detail, sizeof(conn->detail), "out of memory");
            adieu__conn_finish(conn, ADIEU_REASON_SERVER_ERROR, 0);
            return;
        }
        adieu_ws_conn_output_consume(&conn->ws.c, n);
    }
}

int adieu__ws_send(adieu_conn_t *conn, adieu_opcode_t opcode, size_t len, uint8_t hdr[10])
{
    adieu_ws_opcode_t op = opcode == ADIEU_TEXT ? ADIEU_WS_OP_TEXT : ADIEU_WS_OP_BINARY;
    int n = adieu_ws_conn_send_header(&conn->ws.c, op, len, hdr);
    return n == ADIEU_EINVALID_STATE ? ADIEU_ECLOSED : n;
}

void adieu__ws_fill_close_info(const adieu_conn_t *conn, adieu_close_info_t *info)
{
    memset(info, 0, sizeof(*info));
    info->reason = conn->reason;
    info->sys_err = conn->sys_err;
    info->ws_reason = "";
    if (conn->phase != ADIEU__PHASE_WS)
        return;
    const adieu_ws_side_t *ws = &conn->ws;
    /* RFC 6455 §7.4.1: 1006 stands for a connection that ended without a close frame. */
    info->ws_code = ws->code != 0 ? (int)ws->code : 1006;
    if (ws->reason != NULL) {
        info->ws_reason = ws->reason;
        info->ws_reason_len = ws->reason_len;
    }
}

void adieu__ws_free(adieu_conn_t *conn)
{
    adieu_ws_conn_free(&conn->ws.c);
    adieu__free(conn->ws.reason);
    conn->ws.reason = NULL;
}

const char *adieu_conn_subprotocol(const adieu_conn_t *conn)
{
    return conn->phase == ADIEU__PHASE_WS ? conn->ws.subprotocol : NULL;
}

int adieu_conn_close_code(adieu_conn_t *conn, unsigned code, const char *reason)
{
    if (conn->state != ADIEU__CONN_OPEN)
        return ADIEU_ECLOSED;
    if (conn->phase == ADIEU__PHASE_WS) {
        const char *text = reason != NULL ? reason : "";
        int rc = ws_send_close(&conn->ws.c, code, text);
        if (rc < 0)
            return rc;
        conn->ws.code = code;
    }
    adieu__conn_begin_close(conn, ADIEU_REASON_LOCAL, 0);
    return 0;
}

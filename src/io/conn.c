/* SPDX-License-Identifier: MIT */
/*
 * A connection on libuv: reading, the framed codec, the output queue with its watermarks,
 * the pump that decides what happens next, and the one exit path, conn_finish().
 *
 * Rules that keep SPEC C1-C3 true:
 *  - Every ending calls adieu__conn_finish(); the first reason wins (only the drain
 *    deadline, a forced stop, and a close timeout after a local close override a
 *    tentative reason); later calls are no-ops.
 *  - Nothing is torn down under an application callback: adieu_conn_close() and sends only
 *    mark the connection dirty; the pump runs after the callback returned.
 *  - Memory goes only when the last reference is released, which is never before the TCP
 *    handle has closed.
 */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "util/alloc.h"
#include "io/internal.h"
#include "util/log.h"

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void flush(adieu_conn_t *conn);
static void written(adieu_conn_t *conn, size_t bytes);

/* Reasons that replace a tentative one: the deadline and force end a graceful close that
 * did not finish; a reset ends a cooperative close (drain, half-close, local) that then did
 * not finish cleanly, so the log says replies may have been lost; and a local close whose
 * peer never closed ends as close_timeout. A close started for a violation or a timeout
 * keeps that reason. */
static bool reason_overrides(adieu_reason_t current, adieu_reason_t next)
{
    if (current == ADIEU_REASON_NONE)
        return true;
    switch (next) {
    case ADIEU_REASON_SHUTDOWN_TIMEOUT:
    case ADIEU_REASON_FORCED:
        return current != ADIEU_REASON_SHUTDOWN_TIMEOUT && current != ADIEU_REASON_FORCED;
    case ADIEU_REASON_PEER_RESET:
    case ADIEU_REASON_IDLE_TIMEOUT: /* from the kernel: keep-alive or TCP_USER_TIMEOUT */
        return current == ADIEU_REASON_SHUTDOWN || current == ADIEU_REASON_PEER_EOF ||
               current == ADIEU_REASON_LOCAL || current == ADIEU_REASON_NORMAL;
    case ADIEU_REASON_CLOSE_TIMEOUT:
        return current == ADIEU_REASON_LOCAL || current == ADIEU_REASON_NORMAL;
    case ADIEU_REASON_SERVER_ERROR:
        /* Out of memory in the middle of a cooperative close: it did not finish cleanly. */
        return current == ADIEU_REASON_SHUTDOWN || current == ADIEU_REASON_PEER_EOF ||
               current == ADIEU_REASON_LOCAL || current == ADIEU_REASON_NORMAL;
    default:
        return false;
    }
}

/* The reason for a failed system call on the socket. ETIMEDOUT is the kernel giving up on
 * a peer that stopped acknowledging (keep-alive probes or data unacknowledged past
 * TCP_USER_TIMEOUT): a silent peer, so idle_timeout; anything else is a reset. */
static adieu_reason_t sys_reason(int err)
{
    return err == UV_ETIMEDOUT ? ADIEU_REASON_IDLE_TIMEOUT : ADIEU_REASON_PEER_RESET;
}

static adieu_log_level_t reason_level(adieu_reason_t reason)
{
    switch (reason) {
#define ADIEU__REASON_LEVEL(upper, lower, level)                                                   \
    case ADIEU_REASON_##upper:                                                                     \
        return (adieu_log_level_t)(level);
        ADIEU_REASON_MAP(ADIEU__REASON_LEVEL)
#undef ADIEU__REASON_LEVEL
    default:
        return ADIEU_LOG_INFO;
    }
}

static size_t queued(const adieu_conn_t *conn)
{
    return adieu_buf_size(&conn->out_pend) + adieu_buf_size(&conn->out_fly);
}

/* Requests come from a free list that grows to the most writes (and FINs) ever in flight at
 * once and is freed with the server: a steady state takes and returns, never allocates. */
static adieu_req_t *req_take(adieu_server_t *server)
{
    adieu_req_t *req = server->free_reqs;
    if (req == NULL)
        return adieu__malloc(sizeof(*req));
    server->free_reqs = req->next_free;
    return req;
}

static void req_give(adieu_server_t *server, adieu_req_t *req)
{
    req->next_free = server->free_reqs;
    server->free_reqs = req;
}

/* Output storage goes back to the server's pools once empty (see adieu_conn_s). */
static void give_out(adieu_conn_t *conn, adieu_buf_t *b)
{
    adieu_buf_reset(b);
    adieu_buf_pool_give(&conn->server->out_pool, b);
}

static void give_ends(adieu_conn_t *conn)
{
    adieu_buf_reset(&conn->msg_ends);
    adieu_buf_pool_give(&conn->server->ends_pool, &conn->msg_ends);
}

static void conn_free(adieu_conn_t *conn)
{
    /* A request in flight completes (canceled) before the handle's close callback. */
    assert(conn->req == NULL);
    if (conn->phase == ADIEU__PHASE_FRAMED)
        adieu_frame_parser_free(&conn->frame);
    else if (conn->phase == ADIEU__PHASE_HTTP)
        adieu_buf_free(&conn->inbuf);
    else
        adieu__ws_free(conn);
    give_out(conn, &conn->out_pend);
    give_out(conn, &conn->out_fly);
    give_ends(conn);
    adieu__free(conn->defer_heap);
    adieu__free(conn);
}

adieu_conn_t *adieu_conn_ref(adieu_conn_t *conn)
{
    assert(conn->refs > 0);
    conn->refs++;
    return conn;
}

void adieu_conn_unref(adieu_conn_t *conn)
{
    assert(conn->refs > 0);
    if (--conn->refs == 0)
        conn_free(conn);
}

static void on_handle_closed(uv_handle_t *handle)
{
    adieu_conn_unref(handle->data);
}

void adieu__conn_mark_dirty(adieu_conn_t *conn)
{
    if (conn->state == ADIEU__CONN_CLOSED || adieu_list_linked(&conn->dirty))
        return;
    adieu_list_push_back(&conn->server->dirty, &conn->dirty);
}

static void read_start(adieu_conn_t *conn)
{
    if (conn->reading || conn->state == ADIEU__CONN_CLOSED)
        return;
    int rc = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
    if (rc == 0)
        conn->reading = true;
    else
        adieu__conn_finish(conn, sys_reason(rc), rc);
}

static void read_stop(adieu_conn_t *conn)
{
    if (!conn->reading)
        return;
    uv_read_stop((uv_stream_t *)&conn->tcp);
    conn->reading = false;
}

/* ---- the one exit path ---------------------------------------------------------------- */

static void log_close(adieu_conn_t *conn)
{
    adieu_log_level_t level = reason_level(conn->reason);
    if (!adieu__log_enabled(level))
        return;
    char err[48] = "";
    if (conn->sys_err != 0)
        snprintf(err, sizeof(err), " errno=%s", adieu_err_name(conn->sys_err));
    char detail[sizeof(conn->detail) + 12] = "";
    if (conn->detail[0] != '\0')
        snprintf(detail, sizeof(detail), " detail=\"%s\"", conn->detail);
    char code[16] = "";
    adieu_close_info_t info;
    adieu__ws_fill_close_info(conn, &info);
    if (info.ws_code != 0)
        snprintf(code, sizeof(code), " code=%d", info.ws_code);
    adieu_log(level, "conn", "closed peer=%s proto=%s reason=%s%s%s%s", conn->peer,
              adieu_proto_name(conn->proto), adieu_reason_name(conn->reason), code, err, detail);
}

static void run_defers(adieu_conn_t *conn)
{
    /* C2: last registered first, exactly once. A clean-up may not register another: the
     * connection is CLOSED, so adieu_conn_defer() refuses. */
    while (conn->ndefer > 0) {
        unsigned i = --conn->ndefer;
        adieu_defer_t d = i < ADIEU__DEFER_INLINE ? conn->defer_inline[i]
                                                  : conn->defer_heap[i - ADIEU__DEFER_INLINE];
        d.fn(d.arg);
    }
}

void adieu__conn_finish(adieu_conn_t *conn, adieu_reason_t reason, int sys_err)
{
    if (conn->state == ADIEU__CONN_CLOSED)
        return;
    if (reason_overrides(conn->reason, reason))
        conn->reason = reason;
    if (conn->sys_err == 0)
        conn->sys_err = sys_err;
    conn->state = ADIEU__CONN_CLOSED;

    adieu_server_t *server = conn->server;
    adieu_proto_t proto = conn->proto;
    adieu_list_remove(&conn->dirty);
    adieu_list_remove(&conn->link);
    server->nconns--;
    if (conn->phase == ADIEU__PHASE_HTTP)
        server->nhttp--;
    server->stats.open[proto]--;
    server->stats.closed[proto][conn->reason]++;
    read_stop(conn);
    adieu__timer_stop(conn);
    log_close(conn);

    /* The library's reference keeps the object alive through on_close and the clean-ups
     * even if the application drops its own references there. */
    if (conn->opened && conn->listener->handler.on_close) {
        adieu_close_info_t info;
        adieu__ws_fill_close_info(conn, &info);
        conn->listener->handler.on_close(conn, &info, conn->listener->user_data);
    }
    run_defers(conn);

    /* NOTE: closing the TCP handle cancels a write in flight (its callback sees
     * UV_ECANCELED); the buffers stay allocated until the object is freed. What libuv
     * already wrote of it is counted first: those messages reached the socket. */
    if (conn->writing && adieu_buf_size(&conn->out_fly) >= conn->tcp.write_queue_size)
        written(conn, adieu_buf_size(&conn->out_fly) - conn->tcp.write_queue_size);
    uv_close((uv_handle_t *)&conn->tcp, on_handle_closed);
    adieu__server_check_done(server);
}

/* ---- graceful close --------------------------------------------------------------------- */

void adieu__conn_begin_close(adieu_conn_t *conn, adieu_reason_t reason, int sys_err)
{
    if (conn->state != ADIEU__CONN_OPEN)
        return;
    conn->state = ADIEU__CONN_CLOSING;
    conn->reason = reason;
    if (conn->sys_err == 0)
        conn->sys_err = sys_err;
    if (conn->phase == ADIEU__PHASE_WS)
        adieu__ws_begin_close(conn, reason);
    /* Keep reading, discarding, so a reset or EOF is seen while replies are flushed. A
     * connection paused by back-pressure resumes: its input no longer produces output. */
    conn->paused = false;
    if (!conn->eof_seen)
        read_start(conn);
    /* During a drain the server's deadline bounds every connection; otherwise a close bound
     * of its own keeps a peer that never reads or never closes from holding it forever. */
    if (reason != ADIEU_REASON_SHUTDOWN)
        adieu__timer_start(conn, conn->server->cfg.linger_timeout_ms);
    else
        adieu__timer_stop(conn);
    adieu__conn_mark_dirty(conn);
}

/* The pump: after input, a write completion, a timer or an application call, decide what
 * the connection does next. Never called under an application callback. */
void adieu__conn_pump(adieu_conn_t *conn)
{
    adieu_list_remove(&conn->dirty);
    if (conn->state == ADIEU__CONN_CLOSED)
        return;
    if (conn->phase == ADIEU__PHASE_WS) {
        adieu__ws_collect_output(conn);
        if (conn->state == ADIEU__CONN_CLOSED)
            return;
    }
    flush(conn);
    if (conn->state != ADIEU__CONN_CLOSING || conn->writing || queued(conn) > 0 ||
        conn->holds > 0 || conn->shutdown_sent)
        return;
    /* RFC 6455 §7.1.1: after our close frame, the peer's close ends the handshake; the
     * server then closes TCP (here: FIN and the lingering read, like every close). */
    if (conn->phase == ADIEU__PHASE_WS && !conn->eof_seen &&
        conn->reason != ADIEU_REASON_IDLE_TIMEOUT && adieu_ws_conn_close_expected(&conn->ws.c))
        return;
    if (conn->eof_seen || conn->reason == ADIEU_REASON_IDLE_TIMEOUT ||
        (conn->phase == ADIEU__PHASE_WS && conn->ws.answered)) {
        /* The peer already half-closed and everything owed is written: closing the socket
         * sends our FIN, and with no unread input it cannot turn into a reset. A peer
         * closed for silence is not waited for again (SPEC: close frame, then TCP). A peer
         * that answered our close frame has read all we sent, the close last: nothing of
         * ours is left for a reset to lose, and RFC 6455 §7.1.1 has the server close TCP
         * then, without waiting for the client's FIN (a drain saves the shutdown(2), the
         * read of the EOF and a loop turn per connection). */
        adieu__conn_finish(conn, conn->reason, 0);
        return;
    }
    /* NOTE: shutdown(2) directly rather than uv_shutdown(): nothing is queued or in flight
     * here and nothing is written after it (flush()), which is all uv_shutdown() would wait
     * for, at the price of a poll for writability (an epoll_ctl and a loop turn) per
     * connection; a drain of many connections pays that many times. */
    conn->shutdown_sent = true;
    uv_os_fd_t fd;
    int rc = uv_fileno((const uv_handle_t *)&conn->tcp, &fd);
    if (rc == 0 && shutdown(fd, SHUT_WR) < 0)
        rc = uv_translate_sys_error(errno);
    if (rc < 0) {
        adieu__conn_finish(conn, sys_reason(rc), rc);
        return;
    }
    conn->state = ADIEU__CONN_LINGERING;
}

/* ---- output ---------------------------------------------------------------------------- */

static void written(adieu_conn_t *conn, size_t bytes)
{
    adieu_proto_t proto = conn->proto;
    conn->server->stats.bytes_out[proto] += bytes;
    conn->out_written += bytes;
    if (conn->out_written == conn->out_queued) {
        /* Everything queued is written (the usual case): every recorded message is done. */
        conn->server->stats.messages_out[proto] +=
            adieu_buf_size(&conn->msg_ends) / sizeof(uint64_t);
        give_ends(conn);
        return;
    }
    while (adieu_buf_size(&conn->msg_ends) >= sizeof(uint64_t)) {
        uint64_t end;
        memcpy(&end, adieu_buf_head(&conn->msg_ends), sizeof(end));
        if (end > conn->out_written)
            break;
        adieu_buf_consume(&conn->msg_ends, sizeof(end));
        conn->server->stats.messages_out[proto]++;
    }
}

/* Called when the queue shrank: resume reading and owe on_drain at the low watermark. */
static void queue_shrunk(adieu_conn_t *conn)
{
    if (queued(conn) > conn->server->cfg.write_low_watermark)
        return;
    if (conn->paused) {
        conn->paused = false;
        if (conn->state == ADIEU__CONN_OPEN)
            read_start(conn);
    }
    if (conn->bp_reported && conn->state != ADIEU__CONN_CLOSED) {
        conn->bp_reported = false;
        if (conn->listener->handler.on_drain)
            conn->listener->handler.on_drain(conn, conn->listener->user_data);
    }
}

static void on_write(uv_write_t *req, int status)
{
    adieu_conn_t *conn = req->data;
    conn->writing = false;
    conn->req = NULL;
    req_give(conn->server, (adieu_req_t *)req);
    if (conn->state == ADIEU__CONN_CLOSED)
        return; /* canceled by the close; nothing is owed any more */
    if (status < 0) {
        adieu__conn_finish(conn, sys_reason(status), status);
        return;
    }
    written(conn, adieu_buf_size(&conn->out_fly));
    give_out(conn, &conn->out_fly);
    if (adieu_buf_size(&conn->out_pend) == 0)
        give_out(conn, &conn->out_pend);
    queue_shrunk(conn);
    adieu__conn_pump(conn);
}

/* Writes out_pend: uv_try_write first (most replies leave here, with no request), and what
 * the kernel did not take moves to out_fly for one uv_write. */
static void flush(adieu_conn_t *conn)
{
    if (conn->writing || conn->shutdown_sent || adieu_buf_size(&conn->out_pend) == 0)
        return;
    uv_buf_t b = uv_buf_init((char *)adieu_buf_head(&conn->out_pend),
                             (unsigned)adieu_buf_size(&conn->out_pend));
    int n = uv_try_write((uv_stream_t *)&conn->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
        adieu__conn_finish(conn, sys_reason(n), n);
        return;
    }
    if (n == (int)b.len) {
        written(conn, (size_t)n);
        give_out(conn, &conn->out_pend);
        queue_shrunk(conn);
        return;
    }
    adieu_req_t *req = req_take(conn->server);
    if (req == NULL) {
        snprintf(conn->detail, sizeof(conn->detail), "out of memory");
        adieu__conn_finish(conn, ADIEU_REASON_SERVER_ERROR, 0);
        return;
    }
    if (n > 0) {
        written(conn, (size_t)n);
        adieu_buf_consume(&conn->out_pend, (size_t)n);
    }
    adieu_buf_t tmp = conn->out_fly;
    conn->out_fly = conn->out_pend;
    conn->out_pend = tmp;
    b = uv_buf_init((char *)adieu_buf_head(&conn->out_fly),
                    (unsigned)adieu_buf_size(&conn->out_fly));
    conn->req = req;
    req->write.data = conn;
    int rc = uv_write(&req->write, (uv_stream_t *)&conn->tcp, &b, 1, on_write);
    if (rc < 0) {
        conn->req = NULL;
        req_give(conn->server, req);
        adieu__conn_finish(conn, sys_reason(rc), rc);
        return;
    }
    conn->writing = true;
}

/* C5: stop reading from a peer that does not read what we write. */
static bool over_high_watermark(adieu_conn_t *conn)
{
    if (queued(conn) <= conn->server->cfg.write_high_watermark)
        return false;
    if (conn->state == ADIEU__CONN_OPEN && !conn->paused) {
        conn->paused = true;
        read_stop(conn);
    }
    return true;
}

int adieu__conn_out_append(adieu_conn_t *conn, const void *data, size_t len)
{
    adieu_buf_pool_take(&conn->server->out_pool, &conn->out_pend);
    if (adieu_buf_append(&conn->out_pend, data, len) < 0)
        return ADIEU_ENOMEM;
    conn->out_queued += len;
    if (!conn->in_read)
        adieu__conn_mark_dirty(conn);
    /* Control frames (a ping flood's pongs) count against the watermark like messages. */
    over_high_watermark(conn);
    return 0;
}

/* Copies a payload into the output queue. Most messages on a busy connection are small:
 * up to 16 bytes move as two overlapping words instead of a call into the C library. */
static inline void copy_payload(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (n > 16) {
        memcpy(dst, src, n);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, src, 8);
        memcpy(&b, src + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, src + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

/* A frame header or length prefix is 2, 4 or 10 bytes: copied with fixed sizes. */
static inline void copy_header(uint8_t *dst, const uint8_t *hdr, int n)
{
    if (n == 2)
        memcpy(dst, hdr, 2);
    else if (n == 4)
        memcpy(dst, hdr, 4);
    else
        memcpy(dst, hdr, (size_t)n);
}

int adieu_conn_send(adieu_conn_t *conn, adieu_opcode_t opcode, const void *data, size_t len)
{
    if (conn->state == ADIEU__CONN_CLOSED || conn->state == ADIEU__CONN_LINGERING ||
        conn->shutdown_sent)
        return ADIEU_ECLOSED;
    const adieu_config_t *cfg = &conn->server->cfg;
    uint8_t prefix[10];
    int plen;
    if (conn->phase == ADIEU__PHASE_WS)
        plen = adieu__ws_send(conn, opcode, len, prefix);
    else if (conn->phase == ADIEU__PHASE_FRAMED)
        plen = adieu_frame_prefix(prefix, cfg->prefix_bytes, len);
    else
        plen = ADIEU_EINVALID_STATE;
    if (plen < 0)
        return plen;
    size_t total = (size_t)plen + len;
    if (len > cfg->write_hard_limit || queued(conn) + total > cfg->write_hard_limit)
        return ADIEU_EBUFFULL;
    /* Where this message ends in the stream, for messages_out: reserved first, so that a
     * failure leaves nothing half-queued. Storage comes from the pools when there is none. */
    adieu_buf_pool_take(&conn->server->ends_pool, &conn->msg_ends);
    adieu_buf_pool_take(&conn->server->out_pool, &conn->out_pend);
    uint8_t *end_slot = adieu_buf_reserve(&conn->msg_ends, sizeof(uint64_t));
    uint8_t *dst = end_slot != NULL ? adieu_buf_reserve(&conn->out_pend, total) : NULL;
    if (dst == NULL)
        return ADIEU_ENOMEM;
    copy_header(dst, prefix, plen);
    if (len > 0)
        copy_payload(dst + plen, data, len);
    adieu_buf_commit(&conn->out_pend, total);
    conn->out_queued += total;
    memcpy(end_slot, &conn->out_queued, sizeof(uint64_t));
    adieu_buf_commit(&conn->msg_ends, sizeof(uint64_t));
    if (!conn->in_read)
        adieu__conn_mark_dirty(conn);
    if (queued(conn) > cfg->write_high_watermark && over_high_watermark(conn)) {
        conn->bp_reported = true;
        return ADIEU_BACKPRESSURE;
    }
    return 0;
}

/* ---- input ----------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    adieu_conn_t *conn = handle->data;
    adieu_server_t *server = conn->server;
    buf->base = (char *)server->readbuf;
    buf->len = server->readbuf_size;
}

/* Hands every complete message in data to the application, stopping when the connection
 * leaves OPEN (the application closed it, or a limit was broken). */
static void deliver(adieu_conn_t *conn, const uint8_t *data, size_t len)
{
    while (conn->state == ADIEU__CONN_OPEN) {
        size_t used = 0;
        adieu_frame_msg_t fm;
        int rc = adieu_frame_parse(&conn->frame, data, len, &used, &fm);
        data += used;
        len -= used;
        if (rc == 0) {
            /* The read is used up and its messages handled: storage for assembling split
             * payloads goes unless one is still being assembled, so an idle connection
             * holds none. */
            adieu_frame_parser_trim(&conn->frame);
            return;
        }
        if (rc < 0) {
            if (rc == ADIEU_ETOOBIG) {
                snprintf(conn->detail, sizeof(conn->detail), "declared length %zu over %zu",
                         conn->frame.len, conn->frame.max_message);
                adieu__conn_begin_close(conn, ADIEU_REASON_TOO_BIG, 0);
            } else {
                adieu__conn_begin_close(conn, ADIEU_REASON_SERVER_ERROR, 0);
            }
            return;
        }
        adieu__conn_deliver(conn, ADIEU_BINARY, fm.data, fm.len);
    }
}

void adieu__conn_deliver(adieu_conn_t *conn, adieu_opcode_t opcode, const uint8_t *data, size_t len)
{
    const adieu_handler_t *h = &conn->listener->handler;
    conn->server->stats.messages_in[conn->proto]++;
    if (h->on_message) {
        adieu_msg_t msg = {.data = data, .len = len, .opcode = opcode};
        h->on_message(conn, &msg, conn->listener->user_data);
    }
}

static void on_eof(adieu_conn_t *conn)
{
    conn->eof_seen = true;
    read_stop(conn);
    switch (conn->state) {
    case ADIEU__CONN_OPEN:
        if (conn->phase != ADIEU__PHASE_FRAMED) {
            adieu__ws_eof(conn);
        } else if (adieu_frame_parser_eof(&conn->frame) < 0) {
            snprintf(conn->detail, sizeof(conn->detail), "stream ended inside a frame");
            adieu__conn_begin_close(conn, ADIEU_REASON_TRUNCATED, 0);
        } else {
            adieu__conn_begin_close(conn, ADIEU_REASON_PEER_EOF, 0);
        }
        adieu__conn_pump(conn);
        break;
    case ADIEU__CONN_CLOSING:
        adieu__conn_pump(conn);
        break;
    case ADIEU__CONN_LINGERING:
        adieu__conn_finish(conn, conn->reason, 0);
        break;
    case ADIEU__CONN_CLOSED:
        break;
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    adieu_conn_t *conn = stream->data;
    if (nread == 0 || conn->state == ADIEU__CONN_CLOSED)
        return;
    if (nread == UV_EOF) {
        on_eof(conn);
        return;
    }
    if (nread < 0) {
        adieu__conn_finish(conn, sys_reason((int)nread), (int)nread);
        return;
    }
    conn->server->stats.bytes_in[conn->proto] += (uint64_t)nread;
    conn->last_active = uv_now(conn->server->loop);
    /* A WebSocket connection that is closing still reads frames: the peer's close frame
     * ends the handshake. Otherwise input after OPEN is read only to be discarded. */
    bool ws_closing = conn->state == ADIEU__CONN_CLOSING && conn->phase == ADIEU__PHASE_WS;
    if (conn->state != ADIEU__CONN_OPEN && !ws_closing)
        return;
    /* The reference keeps the object alive should a callback force the server closed. */
    adieu_conn_ref(conn);
    conn->in_read = true;
    if (conn->phase == ADIEU__PHASE_FRAMED)
        deliver(conn, (const uint8_t *)buf->base, (size_t)nread);
    else
        adieu__ws_input(conn, (uint8_t *)buf->base, (size_t)nread);
    conn->in_read = false;
    adieu__conn_pump(conn);
    adieu_conn_unref(conn);
}

void adieu__conn_on_timer(adieu_conn_t *conn)
{
    uint64_t idle = conn->server->cfg.idle_timeout_ms;
    switch (conn->state) {
    case ADIEU__CONN_OPEN: {
        if (conn->phase == ADIEU__PHASE_HTTP) {
            snprintf(conn->detail, sizeof(conn->detail), "request incomplete after %llu ms",
                     (unsigned long long)conn->server->cfg.handshake_timeout_ms);
            adieu__conn_finish(conn, ADIEU_REASON_HANDSHAKE_TIMEOUT, 0);
            return;
        }
        /* Activity only records a time; the timer re-arms itself for what is left rather
         * than being restarted on every read. */
        uint64_t quiet = uv_now(conn->server->loop) - conn->last_active;
        if (quiet < idle) {
            conn->idle_confirm = false;
            adieu__timer_start(conn, idle - quiet);
            return;
        }
        if (!conn->idle_confirm) {
            conn->idle_confirm = true;
            adieu__timer_start(conn, 1);
            return;
        }
        conn->idle_confirm = false;
        /* SPEC section 4: a silent WebSocket peer is pinged first, closed only if nothing
         * arrives within a second timeout. */
        if (conn->phase == ADIEU__PHASE_WS && adieu__ws_idle(conn)) {
            adieu__timer_start(conn, idle);
            adieu__conn_pump(conn);
            return;
        }
        snprintf(conn->detail, sizeof(conn->detail), "silent for %llu ms",
                 (unsigned long long)quiet);
        adieu__conn_begin_close(conn, ADIEU_REASON_IDLE_TIMEOUT, 0);
        adieu__conn_pump(conn);
        break;
    }
    case ADIEU__CONN_CLOSING:
    case ADIEU__CONN_LINGERING:
        adieu__conn_finish(conn, ADIEU_REASON_CLOSE_TIMEOUT, 0);
        break;
    case ADIEU__CONN_CLOSED:
        break;
    }
}

/* ---- accept ---------------------------------------------------------------------------- */

void adieu__conn_drop(adieu_listener_t *listener, int fd, const struct sockaddr *peer,
                      adieu_reason_t reason, int sys_err, const char *detail)
{
    /* SPEC section 4: an accepted connection is counted, and closed once with its close
     * line, even one that never got a connection object. */
    adieu_server_t *server = listener->server;
    char addr[ADIEU__PEER_MAX];
    adieu__format_addr(peer, addr, sizeof(addr));
    close(fd);
    server->stats.connections++;
    server->stats.opened[listener->proto]++;
    server->stats.closed[listener->proto][reason]++;
    char err[48] = "";
    if (sys_err != 0)
        snprintf(err, sizeof(err), " errno=%s", adieu_err_name(sys_err));
    adieu_log(reason_level(reason), "conn", "closed peer=%s proto=%s reason=%s%s detail=\"%s\"",
              addr, adieu_proto_name(listener->proto), adieu_reason_name(reason), err, detail);
}

/* Half-open peers (a client that lost power: no FIN, no reset ever comes) are found by the
 * kernel: keep-alive probes after ms of silence, every third of that, and TCP_USER_TIMEOUT
 * gives up once nothing (probe or data) has been acknowledged for 2 ms; the next read or
 * write then fails with ETIMEDOUT. Best effort: a socket that refuses an option keeps the
 * others, and the idle timeout still bounds such peers when it is set. */
static void set_keepalive(int fd, uint64_t ms)
{
    if (ms == 0)
        return;
    uint64_t secs = (ms + 999) / 1000;
    int idle = secs > 32767 ? 32767 : (int)secs; /* the kernel's MAX_TCP_KEEPIDLE */
    int intvl = idle / 3 > 0 ? idle / 3 : 1;
    int count = 3;
    unsigned user_timeout = 2 * ms > UINT32_MAX / 2 ? UINT32_MAX / 2 : (unsigned)(2 * ms);
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

void adieu__conn_accept(adieu_listener_t *listener, int fd, const struct sockaddr *peer)
{
    adieu_server_t *server = listener->server;
    /* Room in the timer heap for every connection, so that arming a timer cannot fail. */
    adieu_conn_t *conn = adieu__timers_reserve(server, (uint32_t)server->nconns + 1) == 0
                             ? adieu__calloc(1, sizeof(*conn))
                             : NULL;
    if (conn == NULL) {
        adieu__conn_drop(listener, fd, peer, ADIEU_REASON_SERVER_ERROR, 0, "out of memory");
        return;
    }
    conn->server = server;
    conn->listener = listener;
    conn->proto = listener->proto;
    conn->refs = 1;
    adieu_list_init(&conn->link);
    adieu_list_init(&conn->dirty);
    uv_tcp_init(server->loop, &conn->tcp);
    conn->tcp.data = conn;
    adieu__format_addr(peer, conn->peer, sizeof(conn->peer));
    int rc = uv_tcp_open(&conn->tcp, fd);
    if (rc < 0) {
        /* libuv did not take the descriptor: nothing was handed to anyone but the log. */
        adieu__conn_drop(listener, fd, peer, ADIEU_REASON_SERVER_ERROR, rc, "uv_tcp_open failed");
        conn->state = ADIEU__CONN_CLOSED;
        uv_close((uv_handle_t *)&conn->tcp, on_handle_closed);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    set_keepalive(fd, server->cfg.keepalive_ms);
    conn->phase = listener->proto == ADIEU_WEBSOCKET ? ADIEU__PHASE_HTTP : ADIEU__PHASE_FRAMED;
    if (conn->phase == ADIEU__PHASE_FRAMED) {
        adieu_frame_parser_init(&conn->frame, server->cfg.prefix_bytes, server->cfg.max_message);
        conn->frame.pool = &server->in_pool;
    }
    conn->last_active = uv_now(server->loop);
    adieu_proto_t proto = listener->proto;
    server->stats.connections++;
    server->stats.opened[proto]++;
    server->stats.open[proto]++;
    server->nconns++;
    if (conn->phase == ADIEU__PHASE_HTTP)
        server->nhttp++;
    adieu_list_push_back(&server->conns, &conn->link);

    if (server->nconns > server->cfg.max_connections && conn->phase == ADIEU__PHASE_FRAMED) {
        snprintf(conn->detail, sizeof(conn->detail), "limit %u", server->cfg.max_connections);
        adieu__conn_finish(conn, ADIEU_REASON_TOO_MANY_CONNECTIONS, 0);
        return;
    }
    read_start(conn);
    if (conn->state == ADIEU__CONN_CLOSED)
        return;
    if (conn->phase == ADIEU__PHASE_HTTP) {
        adieu__ws_accept(conn); /* on_open follows the upgrade */
        return;
    }
    adieu__conn_start_idle(conn);
    if (adieu__log_enabled(ADIEU_LOG_DEBUG))
        adieu_log(ADIEU_LOG_DEBUG, "conn", "open peer=%s proto=%s", conn->peer,
                  adieu_proto_name(proto));
    conn->opened = true;
    if (listener->handler.on_open)
        listener->handler.on_open(conn, listener->user_data);
}

/* ---- the rest of the public connection API ---------------------------------------------- */

void adieu__conn_start_idle(adieu_conn_t *conn)
{
    if (conn->server->cfg.idle_timeout_ms > 0)
        adieu__timer_start(conn, conn->server->cfg.idle_timeout_ms);
    else
        adieu__timer_stop(conn);
}

void adieu__conn_start_handshake_timer(adieu_conn_t *conn)
{
    if (conn->server->cfg.handshake_timeout_ms > 0)
        adieu__timer_start(conn, conn->server->cfg.handshake_timeout_ms);
    else
        adieu__timer_stop(conn);
}

int adieu_conn_close(adieu_conn_t *conn)
{
    if (conn->state != ADIEU__CONN_OPEN)
        return ADIEU_ECLOSED;
    adieu__conn_begin_close(conn, ADIEU_REASON_LOCAL, 0);
    return 0;
}

int adieu_conn_defer(adieu_conn_t *conn, void (*fn)(void *arg), void *arg)
{
    if (fn == NULL)
        return ADIEU_EINVAL;
    if (conn->state == ADIEU__CONN_CLOSED)
        return ADIEU_ECLOSED;
    unsigned i = conn->ndefer;
    if (i < ADIEU__DEFER_INLINE) {
        conn->defer_inline[i] = (adieu_defer_t){fn, arg};
    } else {
        unsigned j = i - ADIEU__DEFER_INLINE;
        if (j == conn->defer_cap) {
            unsigned cap = conn->defer_cap ? conn->defer_cap * 2 : 8;
            adieu_defer_t *p = adieu__realloc(conn->defer_heap, cap * sizeof(*p));
            if (p == NULL)
                return ADIEU_ENOMEM;
            conn->defer_heap = p;
            conn->defer_cap = cap;
        }
        conn->defer_heap[j] = (adieu_defer_t){fn, arg};
    }
    conn->ndefer++;
    return 0;
}

adieu_conn_t *adieu_conn_hold(adieu_conn_t *conn)
{
    conn->holds++;
    return adieu_conn_ref(conn);
}

void adieu_conn_release(adieu_conn_t *conn)
{
    assert(conn->holds > 0);
    if (--conn->holds == 0 && conn->state == ADIEU__CONN_CLOSING)
        adieu__conn_mark_dirty(conn);
    adieu_conn_unref(conn);
}

bool adieu_conn_is_open(const adieu_conn_t *conn)
{
    return conn->state == ADIEU__CONN_OPEN;
}

const char *adieu_conn_peer(const adieu_conn_t *conn)
{
    return conn->peer;
}

adieu_proto_t adieu_conn_proto(const adieu_conn_t *conn)
{
    return conn->proto;
}

adieu_server_t *adieu_conn_server(const adieu_conn_t *conn)
{
    return conn->server;
}

size_t adieu_conn_queued(const adieu_conn_t *conn)
{
    return queued(conn);
}

void adieu_conn_set_data(adieu_conn_t *conn, void *data)
{
    conn->data = data;
}

void *adieu_conn_get_data(const adieu_conn_t *conn)
{
    return conn->data;
}

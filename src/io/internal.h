/* SPDX-License-Identifier: MIT */
/*
 * Internal structures shared by the I/O layer (src/io) and the server lifecycle
 * (src/server). Not part of the public API.
 */
#ifndef ADIEU_IO_INTERNAL_H
#define ADIEU_IO_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "adieu/adieu.h"
#include "proto/frame.h"
#include "proto/http.h"
#include "proto/ws_conn.h"
#include "util/buf.h"
#include "util/list.h"

/* The connection state machine. Every ending goes through conn_finish(); see
 * docs/design.md.
 *
 *   OPEN ──(peer EOF, adieu_conn_close, shutdown, violation, idle)──> CLOSING
 *   CLOSING: no new message is delivered; what is queued and held is flushed;
 *            input is read and discarded (to see EOF and resets early)
 *   CLOSING ──(queue empty, no hold; peer still open)──> LINGERING: FIN sent, read and
 *            discard until the peer's EOF, so unread input never turns into a reset that
 *            destroys replies in flight
 *   any ──(finish: EOF in lingering, reset, timeout, deadline, force)──> CLOSED
 */
typedef enum {
    ADIEU__CONN_OPEN = 0,
    ADIEU__CONN_CLOSING,
    ADIEU__CONN_LINGERING,
    ADIEU__CONN_CLOSED
} adieu_conn_state_t;

typedef struct {
    void (*fn)(void *arg);
    void *arg;
} adieu_defer_t;

/* What a connection speaks: framed from accept; on the WebSocket listener, HTTP until an
 * upgrade (or a plain answer), then WebSocket. */
typedef enum { ADIEU__PHASE_FRAMED = 0, ADIEU__PHASE_HTTP, ADIEU__PHASE_WS } adieu_conn_phase_t;

/* The WebSocket side of a connection, from the upgrade on; it shares storage with the
 * parsers of the earlier phases. */
typedef struct {
    adieu_ws_conn_t c;
    bool ping_sent;          /* keep-alive ping sent, no input since */
    uint8_t reason_len;      /* of reason */
    bool answered;           /* the peer answered our close: the handshake we started is done */
    unsigned code;           /* close code exchanged: the peer's, or ours if we closed first */
    char *reason;            /* close reason exchanged (allocated, not NUL-terminated); NULL
                                while none */
    const char *subprotocol; /* selected, from the server's list; NULL if none */
} adieu_ws_side_t;

/* A write in flight. Taken from the server's pool only while one is pending, so an idle
 * connection does not carry libuv's request. */
typedef union adieu_req_u {
    uv_write_t write;
    union adieu_req_u *next_free; /* in the pool */
} adieu_req_t;

#define ADIEU__DEFER_INLINE 4
#define ADIEU__PEER_MAX 56

/* A listening socket. adieu accepts by itself (accept4 on a polled socket) rather than
 * through uv_listen: accept() is the only moment the peer's address is sure to be known (a
 * peer that resets before we look has none), and it lets EMFILE be handled here. */
typedef struct adieu_listener_s {
    uv_poll_t poll;
    int fd;
    adieu_server_t *server;
    adieu_proto_t proto;
    adieu_handler_t handler;
    void *user_data;
    bool active; /* listening, handle not closed */
    bool closing;
    bool starved; /* stopped polling after EMFILE; resumes when a connection closes */
    char addr[ADIEU__PEER_MAX];
} adieu_listener_t;

struct adieu_conn_s {
    uv_tcp_t tcp;
    /* The connection's one timer (src/io/timer.c): the handshake bound in PHASE_HTTP, the
     * idle timeout while OPEN, the close bound while CLOSING/LINGERING. */
    uint64_t timer_due;  /* loop time it fires at */
    uint32_t timer_slot; /* its place in the server's timer heap plus one; 0 when stopped */
    uint32_t timer_seq;  /* order of starting, for timers due at the same time */
    adieu_req_t *req;    /* the write in flight (at most one); NULL when none */
    adieu_server_t *server;
    adieu_listener_t *listener;
    adieu_proto_t proto; /* copied: the listener may be gone while references remain */
    adieu_list_t link;   /* server->conns while not CLOSED */
    adieu_list_t dirty;  /* server->dirty while a pump is owed */

    adieu_conn_state_t state;
    adieu_reason_t reason; /* tentative while CLOSING/LINGERING, final once CLOSED */
    int sys_err;
    char detail[80];

    unsigned refs;  /* one is the library's own, dropped when the TCP handle has closed */
    unsigned holds; /* answers the application still owes (adieu_conn_hold) */
    bool opened;    /* on_open was delivered: on_close is owed */
    bool eof_seen;
    bool reading;
    bool paused;      /* reading stopped by back-pressure */
    bool bp_reported; /* a send returned ADIEU_BACKPRESSURE: on_drain is owed */
    bool writing;     /* a uv_write is in flight (out_fly) */
    bool shutdown_sent;
    bool shutdown_notified;
    bool idle_confirm; /* the idle timer expired; judged after one more poll */
    bool in_read;      /* inside read_cb: its end pumps, the dirty list need not */
    uint64_t last_active;

    adieu_conn_phase_t phase;
    /* A connection is framed, or starts in HTTP and may become WebSocket: the state of each
     * phase shares storage. */
    union {
        adieu_frame_parser_t frame; /* PHASE_FRAMED */
        struct {
            adieu_http_parser_t http; /* PHASE_HTTP */
            adieu_buf_t inbuf;        /* PHASE_HTTP, and at the upgrade: the request head */
        };
        adieu_ws_side_t ws; /* PHASE_WS */
    };

    /* Output: the application appends to out_pend; out_fly is being written by libuv and
     * must not move. Their storage (and msg_ends') comes from the server's pools when
     * something is queued and goes back once everything is written, so a connection with
     * nothing queued holds no buffer and the steady state allocates nothing. */
    adieu_buf_t out_pend;
    adieu_buf_t out_fly;
    /* messages_out counts a message once its last byte is written (SPEC section 4), also
     * when a close cuts a write short: the stream offsets where queued messages end wait
     * here (a reused queue of uint64_t), against the bytes queued and written so far. */
    adieu_buf_t msg_ends;
    uint64_t out_queued;
    uint64_t out_written;

    adieu_defer_t defer_inline[ADIEU__DEFER_INLINE];
    adieu_defer_t *defer_heap;
    unsigned ndefer;
    unsigned defer_cap;

    void *data;
    char peer[ADIEU__PEER_MAX];
};

typedef enum {
    ADIEU__SRV_RUNNING = 0,
    ADIEU__SRV_DRAINING, /* shutdown started: listeners closed, connections closing */
    ADIEU__SRV_CLOSING,  /* every connection closed: the server's own handles closing */
    ADIEU__SRV_DONE
} adieu_server_state_t;

struct adieu_server_s {
    uv_loop_t *loop;
    adieu_config_t cfg;
    adieu_server_state_t state;
    adieu_listener_t listeners[ADIEU_PROTO_COUNT];
    adieu_list_t conns; /* every connection not yet CLOSED */
    adieu_list_t dirty; /* connections owed a pump before the loop sleeps */
    uint64_t nconns;    /* length of conns */
    uint64_t nhttp;     /* of those, not upgraded (PHASE_HTTP): they do not hold a drain */
    bool closing_http;  /* the drain is finishing the PHASE_HTTP connections */
    adieu_stats_t stats;

    /* Flushing: sends made outside a read callback (timers, other connections) are
     * written before the loop next polls (prepare) or right after this turn's I/O (check). */
    uv_prepare_t prepare;
    uv_check_t check;
    uv_timer_t deadline; /* drain deadline */
    /* Every connection's timer, in one binary min-heap on timer_due (src/io/timer.c) under
     * one libuv timer: a uv_timer_t per connection would cost 152 bytes each. Its room is
     * reserved at accept, so arming a timer never allocates or fails. */
    uv_timer_t tick;
    adieu_conn_t **timers;
    uint32_t ntimers;
    uint32_t timers_cap;
    uint32_t timer_seq; /* the next timer start's number */
    /* Requests and output storage for connections that are writing (see adieu_conn_s). */
    adieu_req_t *free_reqs;
    adieu_buf_pool_t out_pool;  /* out_pend and out_fly */
    adieu_buf_pool_t ends_pool; /* msg_ends */
    adieu_buf_pool_t in_pool;   /* assembly of messages split across reads */
    uv_timer_t kick;            /* runs shutdown/force steps on a later loop turn */
    unsigned handles;           /* server handles not yet closed, once closing */
    bool handles_started;

    bool shutdown_started;
    bool drain_step_done;
    bool force_pending;
    uint64_t deadline_ms;
    adieu_server_done_cb done_cb;
    void *done_data;

    int reserve_fd; /* spare descriptor given up to accept-and-drop under EMFILE; -1 if none */

    /* One read buffer for every connection: libuv calls alloc_cb and read_cb back to back
     * on this thread, so it is never shared by two reads at once. */
    uint8_t *readbuf;
    size_t readbuf_size;

    /* adieu_server_run() */
    uv_signal_t sig[2];
    int first_signal;
    int second_signal;
    bool running_signals;
};

/* src/io/conn_ws.c: the HTTP and WebSocket phases. */
void adieu__ws_accept(adieu_conn_t *conn);
void adieu__ws_input(adieu_conn_t *conn, uint8_t *data, size_t len);
void adieu__ws_eof(adieu_conn_t *conn);
void adieu__ws_begin_close(adieu_conn_t *conn, adieu_reason_t reason);
bool adieu__ws_idle(adieu_conn_t *conn);
void adieu__ws_collect_output(adieu_conn_t *conn);
/* Writes the header of a data frame of len bytes into hdr; returns its size or an error. */
int adieu__ws_send(adieu_conn_t *conn, adieu_opcode_t opcode, size_t len, uint8_t hdr[10]);
void adieu__ws_fill_close_info(const adieu_conn_t *conn, adieu_close_info_t *info);
void adieu__ws_free(adieu_conn_t *conn);

/* src/io/conn.c */
/* Appends raw bytes (an HTTP answer, a control frame) to the output; not a message. */
int adieu__conn_out_append(adieu_conn_t *conn, const void *data, size_t len);
void adieu__conn_deliver(adieu_conn_t *conn, adieu_opcode_t opcode, const uint8_t *data,
                         size_t len);
void adieu__conn_start_idle(adieu_conn_t *conn);
void adieu__conn_start_handshake_timer(adieu_conn_t *conn);

/* src/io/conn.c: takes ownership of fd, an accepted non-blocking socket. */
void adieu__conn_accept(adieu_listener_t *listener, int fd, const struct sockaddr *peer);
/* An accepted connection that gets no connection object (no memory, no descriptor to spare):
 * closes fd, counts it as opened and closed with reason, and logs its close line. */
void adieu__conn_drop(adieu_listener_t *listener, int fd, const struct sockaddr *peer,
                      adieu_reason_t reason, int sys_err, const char *detail);
void adieu__conn_begin_close(adieu_conn_t *conn, adieu_reason_t reason, int sys_err);
void adieu__conn_finish(adieu_conn_t *conn, adieu_reason_t reason, int sys_err);
void adieu__conn_pump(adieu_conn_t *conn);
void adieu__conn_mark_dirty(adieu_conn_t *conn);

/* src/io/conn.c: a connection's timer fired (it is stopped now). */
void adieu__conn_on_timer(adieu_conn_t *conn);

/* src/io/timer.c: the connection timers. */
void adieu__timers_init(adieu_server_t *server);
/* Room for n armed timers; 0 or ADIEU_ENOMEM. Called at accept for every connection. */
int adieu__timers_reserve(adieu_server_t *server, uint32_t n);
/* (Re)arms conn's timer to fire ms from the loop's now. */
void adieu__timer_start(adieu_conn_t *conn, uint64_t ms);
void adieu__timer_stop(adieu_conn_t *conn);
void adieu__timers_free(adieu_server_t *server);

/* src/server/lifecycle.c: called when a connection or listener has closed; finishes the
 * shutdown once nothing is left. */
void adieu__server_check_done(adieu_server_t *server);
/* The address a listener is bound to ("127.0.0.1:10999"), "" when not listening. */
const char *adieu__server_listen_addr(const adieu_server_t *server, adieu_proto_t proto);

/* src/io/listener.c */
int adieu__parse_addr(const char *addr, struct sockaddr_storage *out);
void adieu__format_addr(const struct sockaddr *sa, char *out, size_t outsz);
int adieu__listener_start(adieu_listener_t *l, const char *addr);
void adieu__listener_close(adieu_listener_t *l);
/* Resumes accepting on listeners stopped by descriptor exhaustion (a descriptor was freed). */
void adieu__listeners_resume(adieu_server_t *server);

#endif /* ADIEU_IO_INTERNAL_H */

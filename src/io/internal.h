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
    uv_timer_t timer; /* idle timeout while OPEN; close bound while CLOSING/LINGERING */
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    adieu_server_t *server;
    adieu_listener_t *listener;
    adieu_proto_t proto; /* copied: the listener may be gone while references remain */
    adieu_list_t link;   /* server->conns while not CLOSED */
    adieu_list_t dirty;  /* server->dirty while a pump is owed */

    adieu_conn_state_t state;
    adieu_reason_t reason; /* tentative while CLOSING/LINGERING, final once CLOSED */
    int sys_err;
    char detail[80];

    unsigned refs;    /* one is the library's own, dropped when both handles have closed */
    unsigned holds;   /* answers the application still owes (adieu_conn_hold) */
    unsigned handles; /* handles not yet closed */
    bool opened;      /* on_open was delivered: on_close is owed */
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

    adieu_frame_parser_t frame;

    /* Output: the application appends to out_pend; out_fly is being written by libuv and
     * must not move. Swapping them keeps two buffers' worth of storage and no allocation
     * in the steady state. */
    adieu_buf_t out_pend;
    adieu_buf_t out_fly;
    uint32_t pend_msgs;
    uint32_t fly_msgs;

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
    adieu_stats_t stats;

    /* Flushing: sends made outside a read callback (timers, other connections) are
     * written before the loop next polls (prepare) or right after this turn's I/O (check). */
    uv_prepare_t prepare;
    uv_check_t check;
    uv_timer_t deadline; /* drain deadline */
    uv_timer_t kick;     /* runs shutdown/force steps on a later loop turn */
    unsigned handles;    /* server handles not yet closed, once closing */
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

/* src/io/conn.c: takes ownership of fd, an accepted non-blocking socket. */
void adieu__conn_accept(adieu_listener_t *listener, int fd, const struct sockaddr *peer);
void adieu__conn_begin_close(adieu_conn_t *conn, adieu_reason_t reason, int sys_err);
void adieu__conn_finish(adieu_conn_t *conn, adieu_reason_t reason, int sys_err);
void adieu__conn_pump(adieu_conn_t *conn);
void adieu__conn_mark_dirty(adieu_conn_t *conn);

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

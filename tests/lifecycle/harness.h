/* SPDX-License-Identifier: MIT */
/*
 * harness.h: what every lifecycle test shares (STYLE 2.7, "Lifecycle"). A test runs a real
 * libuv loop with an adieu server listening on 127.0.0.1:0 (ADIEU_FRAMED; lc_listen_ws() adds
 * ADIEU_WEBSOCKET) and drives uv_tcp clients from the same loop, so every step is a loop event:
 * nothing sleeps to wait for another step, and a watchdog timer fails a test that runs too long.
 *
 * The server side records. Every connection handed to the application gets an lc_conn_t
 * (its adieu_conn_set_data() pointer) that counts each callback, keeps the close reason and
 * errno, and registers LC_DEFERS clean-ups at on_open. The harness itself checks, as they
 * happen, the rules of SPEC C1-C3 that hold for every scenario:
 *  - no callback runs inside another callback or inside an adieu call made through the
 *    lc_send/lc_close/lc_shutdown/lc_force/lc_api_begin wrappers (header: "No public call
 *    invokes a user callback before it returns");
 *  - no callback for a connection follows its on_close;
 *  - every clean-up runs once, after on_close, outside any callback, last registered first.
 * Each connection also keeps a trace ("open msg*3 shutdown close:shutdown d5 d4 d3 d2 d1
 * d0"), printed when a check fails, and lc_check_conn() pins its ending.
 *
 * A test ends with lc_finish(): the server must be done (its done callback called once when
 * lc_shutdown() started the shutdown), adieu_server_free() must return 0, and
 * uv_loop_close() must return 0.
 *
 * Checks count through tests/unit/check.h in the test's own translation unit: lc_start()
 * hands the harness that unit's reporter, so harness failures are counted by check_done().
 */
#ifndef ADIEU_TESTS_LIFECYCLE_HARNESS_H
#define ADIEU_TESTS_LIFECYCLE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "adieu/adieu.h"
#include "unit/check.h"

#define LC_MAX_CONNS 16
#define LC_MAX_CLIENTS 16
/* More than the library keeps inline (4), so the heap part of the defer stack is used too. */
#define LC_DEFERS 6
#define LC_TRACE_MAX 512
/* The watchdog: a test still running after this long has failed. */
#define LC_WATCHDOG_MS 8000
/* lc_expect()'s automatic shutdown uses this deadline. */
#define LC_STOP_DEADLINE_MS 2000
/* For lc_check_conn(): do not check sys_err. */
#define LC_ANY_ERR 1

typedef struct lc_server lc_server_t;
typedef struct lc_conn lc_conn_t;
typedef struct lc_client lc_client_t;

/* The reporter of check.h, check__result(). */
typedef bool (*lc_report_fn)(bool ok, const char *file, int line, const char *fmt, ...);

typedef struct {
    lc_conn_t *rec;
    int id;
    int ran;
    bool registered; /* adieu_conn_defer() returned 0 */
} lc_defer_t;

/* What the harness recorded about one connection handed to the application. */
struct lc_conn {
    lc_server_t *s;
    adieu_conn_t *conn; /* borrowed until on_close returns, unless the test took a reference */
    int index;          /* order of on_open on this server, from 0 */
    adieu_proto_t proto;
    int opens;
    int messages;
    int shutdowns;
    int drains;
    int closes;
    bool closed; /* on_close was called */
    adieu_reason_t reason;
    int sys_err;
    int ws_code;
    char peer[64];      /* adieu_conn_peer() at on_open */
    uint64_t opened_at; /* uv_now() */
    uint64_t closed_at;
    lc_defer_t defers[LC_DEFERS];
    int defers_ran;
    /* The clean-ups registered, in order: all LC_DEFERS unless tolerate_enomem let
     * adieu_conn_defer() fail (that one is then expected never to run). */
    int defers_registered;
    int defer_order[LC_DEFERS];
    char trace[LC_TRACE_MAX];
    void *data; /* the test's */
};

/* The test's own reactions, called by the harness after it recorded the event. Any member
 * may be NULL; a NULL on_message echoes the message back (lc_send). */
typedef struct {
    void (*on_open)(lc_conn_t *c);
    void (*on_message)(lc_conn_t *c, const adieu_msg_t *msg);
    void (*on_shutdown)(lc_conn_t *c);
    void (*on_drain)(lc_conn_t *c);
    void (*on_close)(lc_conn_t *c, const adieu_close_info_t *info);
    void (*on_done)(lc_server_t *s); /* the done callback of a shutdown started by lc_shutdown */
} lc_hooks_t;

struct lc_server {
    uv_loop_t loop;
    adieu_server_t *server;
    adieu_config_t cfg;
    lc_hooks_t hooks;
    int port;
    int ws_port; /* lc_listen_ws(): the WebSocket listener's port, 0 if none */
    /* Allocation-failure tests: adieu_conn_defer() may return ADIEU_ENOMEM at on_open; that
     * clean-up is then not registered and must not run. */
    bool tolerate_enomem;
    lc_conn_t conns[LC_MAX_CONNS];
    int nconns;
    lc_client_t *clients[LC_MAX_CLIENTS];
    int nclients;
    int depth;     /* adieu callbacks on the stack */
    int api_depth; /* adieu calls on the stack (through the wrappers) */
    int done_calls;
    int shutdowns_started; /* lc_shutdown() calls that returned 0 */
    int pending;           /* lc_expect(): events left before the automatic shutdown */
    uint64_t shutdown_at;
    uint64_t done_at;
    uv_timer_t watchdog;
    void *data; /* the test's */
};

/* A client connection driven from the server's loop. Initialise with lc_client_init(), set
 * the options and hooks, then lc_client_connect(). It parses framed replies with the
 * server's prefix size. By default it starts reading once connected and closes its handle
 * at EOF or on a read error. */
struct lc_client {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    lc_server_t *s;
    int index;
    unsigned prefix_bytes;
    int port; /* the port to connect to; 0 (the default) is the framed listener's */
    /* options */
    int rcvbuf;     /* SO_RCVBUF set before connecting; 0 keeps the default */
    bool no_read;   /* do not start reading when connected */
    bool keep_open; /* do not close the handle at EOF or on a read error */
    /* hooks */
    void (*on_connect)(lc_client_t *c, int status);
    void (*on_message)(lc_client_t *c, const uint8_t *data, size_t len);
    /* If set, every received chunk is handed over as it is, instead of being parsed as
     * framed messages (a WebSocket or HTTP client written in the test). */
    void (*on_data)(lc_client_t *c, const uint8_t *data, size_t len);
    void (*on_end)(lc_client_t *c); /* EOF (eof) or a read error (read_err) */
    void (*on_closed)(lc_client_t *c);
    void *data;
    /* state */
    int connect_status;
    char local[64]; /* "127.0.0.1:PORT" once connected: the server's adieu_conn_peer() */
    bool connected;
    bool reading;
    bool ended;
    bool eof;
    bool closing;
    bool closed;
    int read_err;
    int write_err;
    int shutdown_status;
    size_t msgs;        /* complete framed messages received */
    size_t msgs_at_end; /* msgs when EOF or the read error came */
    size_t rx_at_end;   /* bytes of an unfinished message then */
    size_t bytes_in;
    uint64_t connected_at;
    uint64_t end_at;
    uint8_t *rx; /* received bytes not yet forming a whole message */
    size_t rx_len;
    size_t rx_cap;
    char rbuf[64 * 1024];
};

/* ---- server ----------------------------------------------------------------------------- */

void lc__start(lc_server_t *s, const adieu_config_t *cfg, const lc_hooks_t *hooks,
               lc_report_fn report);
/* Initialises s and its loop, sets the log level (WARN, or $LC_LOG_LEVEL), creates the server
 * with cfg (NULL: defaults), listens on 127.0.0.1:0 and arms the watchdog. */
#define lc_start(s, cfg, hooks) lc__start((s), (cfg), (hooks), check__result)
int lc__try_start(lc_server_t *s, const adieu_config_t *cfg, const lc_hooks_t *hooks,
                  lc_report_fn report);
/* Like lc_start(), for a server that may fail to start (allocation-failure tests): returns
 * 0, or the error of adieu_server_new() or adieu_server_listen(), in which case the server is
 * freed and the loop closed again, and the test goes on without them. */
#define lc_try_start(s, cfg, hooks) lc__try_start((s), (cfg), (hooks), check__result)
/* Also listens for WebSocket connections (and plain HTTP) on 127.0.0.1:0 with the recording
 * handler, and sets s->ws_port. Returns 0 or the error of adieu_server_listen(). */
int lc_listen_ws(lc_server_t *s);
/* Runs the loop until nothing keeps it alive. */
void lc_run(lc_server_t *s);
void lc__finish(lc_server_t *s, const char *file, int line);
/* The common ending: the server is done, the done callback ran once if lc_shutdown() started
 * the shutdown (adieu_server_force() alone starts one without), adieu_server_free() returns
 * 0, every client is closed, and uv_loop_close() returns 0. */
#define lc_finish(s) lc__finish((s), __FILE__, __LINE__)

/* Automatic end: after n more lc_arrive() calls, start lc_shutdown(s, LC_STOP_DEADLINE_MS).
 * The harness arrives once per on_close and once per client handle closed. */
void lc_expect(lc_server_t *s, int n);
void lc_arrive(lc_server_t *s);

uint64_t lc_now(lc_server_t *s);
adieu_stats_t lc_stats(const lc_server_t *s);
/* The server's record of a client's connection (matched by address and listener), NULL if
 * none. */
lc_conn_t *lc_conn_of(lc_server_t *s, const lc_client_t *c);
/* Prints every connection's trace and every client's state on stderr. */
void lc_dump(const lc_server_t *s);

/* Runs fn(arg) once after ms milliseconds, from a timer the harness owns and closes. */
void lc_after(lc_server_t *s, uint64_t ms, void (*fn)(void *arg), void *arg);
/* Runs fn(arg) once, on the first loop turn (before the loop polls) on which cond(arg) holds:
 * waiting on a state change without a timer. cond must become true through some event. */
void lc_when(lc_server_t *s, bool (*cond)(void *arg), void (*fn)(void *arg), void *arg);

/* More bytes than the kernel can buffer between a server socket and a client that does not
 * read (with a small SO_RCVBUF): twice net.ipv4.tcp_wmem's maximum, the largest send buffer
 * the kernel autotunes a TCP socket to (the library does not set SO_SNDBUF), and at least
 * 8 MiB. Sent to a client that does not read, most of it stays in the library's own output
 * queue. */
size_t lc_more_than_kernel_buffers(void);

/* ---- adieu calls made through the harness: each is bracketed, so a callback that the call
 * would invoke before returning is caught. ------------------------------------------------- */
void lc_api_begin(lc_server_t *s);
void lc_api_end(lc_server_t *s);
int lc_send(lc_conn_t *c, const void *data, size_t len);
int lc_close(lc_conn_t *c);
/* adieu_server_shutdown() with the harness's done callback (counts done_calls). */
int lc_shutdown(lc_server_t *s, uint64_t deadline_ms);
int lc_force(lc_server_t *s);

void lc__check_conn(const lc_conn_t *c, adieu_reason_t reason, int sys_err, const char *file,
                    int line);
/* Checks the ending of a connection: on_open and on_close once each, every clean-up once and
 * last first after on_close, nothing after them, the close reason and (unless LC_ANY_ERR)
 * sys_err. */
#define lc_check_conn(c, reason, sys_err)                                                          \
    lc__check_conn((c), (reason), (sys_err), __FILE__, __LINE__)

/* ---- clients ---------------------------------------------------------------------------- */

void lc_client_init(lc_server_t *s, lc_client_t *c);
void lc_client_connect(lc_client_t *c);
/* Sends one framed message (prefix added). */
void lc_client_send(lc_client_t *c, const void *payload, size_t len);
/* Sends bytes as they are. */
void lc_client_send_raw(lc_client_t *c, const void *data, size_t len);
void lc_client_read_start(lc_client_t *c);
/* Half-close: FIN, reading goes on. */
void lc_client_shutdown(lc_client_t *c);
/* Closes with a reset (SO_LINGER 0, uv_tcp_close_reset). */
void lc_client_reset(lc_client_t *c);
void lc_client_close(lc_client_t *c);

/* Writes the big-endian length prefix of len into out; returns its size. */
size_t lc_prefix(uint8_t out[4], unsigned prefix_bytes, size_t len);

#endif /* ADIEU_TESTS_LIFECYCLE_HARNESS_H */

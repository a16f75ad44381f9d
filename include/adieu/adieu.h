/* SPDX-License-Identifier: MIT */
/*
 * adieu: TCP (length-prefixed) and WebSocket services in which every connection ends
 * properly. This is the one public header of libadieu.
 *
 * The contract (SPEC C1-C6), in short:
 *  - every connection handed to the application gets exactly one on_open and, later,
 *    exactly one on_close with a reason; no callback for it follows on_close;
 *  - clean-up registered with adieu_conn_defer() runs after on_close, last in first out,
 *    exactly once, on every path;
 *  - nothing is cancelled under a handler: a handler may keep a reference and answer
 *    later; sending on a closed connection returns ADIEU_ECLOSED;
 *  - adieu_server_shutdown() drains: stop accepting, on_shutdown, flush what is owed,
 *    FIN and lingering read, deadline; adieu_server_force() closes everything at once;
 *  - output is bounded by watermarks (back-pressure), input by limits.
 *
 * Threading: every function must be called on the thread that runs the server's loop.
 * No public call invokes a user callback before it returns.
 */
#ifndef ADIEU_ADIEU_H
#define ADIEU_ADIEU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "adieu/alloc.h"
#include "adieu/errors.h"
#include "adieu/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The name of an error code ("ECLOSED", "ECONNRESET"); a static string. */
const char *adieu_err_name(int err);
/* A sentence describing an error code; a static string. */
const char *adieu_strerror(int err);

/* ---------------------------------------------------------------------------------------
 * Close reasons (SPEC section 4). The names are stable: renaming one is an API break.
 * The second column is the log level of the close line: 1 INFO, 2 WARN, 3 ERROR.
 * ------------------------------------------------------------------------------------- */
#define ADIEU_REASON_MAP(XX)                                                                       \
    XX(NORMAL, normal, 1)                                                                          \
    XX(PEER_EOF, peer_eof, 1)                                                                      \
    XX(PEER_RESET, peer_reset, 1)                                                                  \
    XX(TRUNCATED, truncated, 1)                                                                    \
    XX(PROTOCOL_ERROR, protocol_error, 2)                                                          \
    XX(INVALID_UTF8, invalid_utf8, 2)                                                              \
    XX(TOO_BIG, too_big, 2)                                                                        \
    XX(BAD_REQUEST, bad_request, 2)                                                                \
    XX(HTTP_DONE, http_done, 1)                                                                    \
    XX(HANDSHAKE_TIMEOUT, handshake_timeout, 2)                                                    \
    XX(IDLE_TIMEOUT, idle_timeout, 2)                                                              \
    XX(CLOSE_TIMEOUT, close_timeout, 2)                                                            \
    XX(LOCAL, local, 1)                                                                            \
    XX(TOO_MANY_CONNECTIONS, too_many_connections, 2)                                              \
    XX(SHUTDOWN, shutdown, 1)                                                                      \
    XX(SHUTDOWN_TIMEOUT, shutdown_timeout, 2)                                                      \
    XX(FORCED, forced, 2)                                                                          \
    XX(SERVER_ERROR, server_error, 3)

typedef enum {
    ADIEU_REASON_NONE = 0,
#define ADIEU__REASON_ENUM(upper, lower, level) ADIEU_REASON_##upper,
    ADIEU_REASON_MAP(ADIEU__REASON_ENUM)
#undef ADIEU__REASON_ENUM
        ADIEU_REASON_COUNT
} adieu_reason_t;

/* The stable snake_case name of a reason ("peer_eof"); "none" for ADIEU_REASON_NONE and
 * "unknown" outside the enum. A static string. */
const char *adieu_reason_name(adieu_reason_t reason);

/* ---------------------------------------------------------------------------------------
 * Logging. One line per event on stderr: `TIME LEVEL component: message key=value ...`,
 * TIME in RFC 3339 UTC with milliseconds. The library logs connection close lines and
 * shutdown phases at the level the reason table gives.
 * ------------------------------------------------------------------------------------- */
typedef enum {
    ADIEU_LOG_DEBUG = 0,
    ADIEU_LOG_INFO = 1,
    ADIEU_LOG_WARN = 2,
    ADIEU_LOG_ERROR = 3,
    ADIEU_LOG_OFF = 4
} adieu_log_level_t;

/* Sets the lowest level written (default ADIEU_LOG_INFO). Process-wide. */
void adieu_log_set_level(adieu_log_level_t level);
adieu_log_level_t adieu_log_get_level(void);
/* Parses "debug", "info", "warn", "error"; returns 0 or ADIEU_EINVAL. */
int adieu_log_parse_level(const char *name, adieu_log_level_t *out);
/* Writes one log line: component and a printf-style message, usually ending with key=value
 * pairs. Values with spaces must be quoted by the caller (adieu_log_quote helps). */
void adieu_log(adieu_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------------------------------
 * Objects
 * ------------------------------------------------------------------------------------- */
typedef struct adieu_server_s adieu_server_t;
typedef struct adieu_conn_s adieu_conn_t;

typedef enum {
    ADIEU_FRAMED = 0,    /* length-prefixed messages (SPEC P1) */
    ADIEU_WEBSOCKET = 1, /* RFC 6455 with HTTP on the side (SPEC P2, P3) */
    ADIEU_PROTO_COUNT
} adieu_proto_t;

/* "frame" or "ws", as in log lines and metric labels. */
const char *adieu_proto_name(adieu_proto_t proto);

typedef enum {
    ADIEU_BINARY = 2, /* the framed protocol's only kind; WebSocket opcode 0x2 */
    ADIEU_TEXT = 1    /* WebSocket opcode 0x1 (valid UTF-8) */
} adieu_opcode_t;

/* Server configuration: a plain value, copied by adieu_server_new(). Always start from
 * adieu_config_init(), then change fields. */
typedef struct {
    size_t max_message;              /* largest message accepted (default 16 MiB) */
    unsigned prefix_bytes;           /* framed length prefix, 2 or 4 (default 2); with 2,
                                        messages are at most 65535 bytes whatever max_message */
    uint64_t idle_timeout_ms;        /* close connections silent this long; 0 = off */
    uint64_t keepalive_ms;           /* TCP keep-alive: probes after this much silence, and
                                        a peer that acknowledges nothing (probes or data)
                                        for twice this long is closed idle_timeout with
                                        ETIMEDOUT (TCP_USER_TIMEOUT); 0 = off (default 60 s) */
    uint64_t handshake_timeout_ms;   /* WebSocket upgrade deadline (default 10 s) */
    size_t max_header;               /* HTTP request line + headers (default 8192) */
    unsigned max_connections;        /* open connections at once (default 10000) */
    size_t write_high_watermark;     /* output queue size above which sends report
                                        back-pressure and reading pauses (default 1 MiB) */
    size_t write_low_watermark;      /* queue size at or below which on_drain fires and
                                        reading resumes (default 256 KiB) */
    size_t write_hard_limit;         /* queue size above which sends fail with ADIEU_EBUFFULL
                                        and are not queued (default 64 MiB) */
    uint64_t linger_timeout_ms;      /* bound on a graceful close: flushing, FIN and the
                                        lingering read (default 5 s) */
    const char *const *subprotocols; /* WebSocket subprotocols supported, NUL-terminated;
                                        borrowed: must outlive the server (default none) */
    size_t num_subprotocols;
} adieu_config_t;

/* Fills cfg with the defaults above. */
void adieu_config_init(adieu_config_t *cfg);

/* A received message. data is borrowed until the callback returns. */
typedef struct {
    const uint8_t *data;
    size_t len;
    adieu_opcode_t opcode; /* ADIEU_BINARY for framed connections */
} adieu_msg_t;

/* Why a connection ended. Borrowed until on_close returns. */
typedef struct {
    adieu_reason_t reason;
    int ws_code;           /* WebSocket close code exchanged, 0 where none applies */
    const char *ws_reason; /* WebSocket close reason text, "" where none (not NUL-safe: use
                              ws_reason_len) */
    size_t ws_reason_len;
    int sys_err; /* the libuv error (negative errno) of the system call that
                    failed, 0 where none did */
} adieu_close_info_t;

/* Application callbacks. The table is copied by adieu_server_listen(); any member may be
 * NULL. Each gets the connection first and the user_data given to adieu_server_listen().
 * Within one connection they come in this order:
 *   on_open, then any number of on_message / on_drain, then at most one on_shutdown
 *   (graceful drain started), then any on_message already on its way and on_drain (a
 *   handler streaming an owed answer goes on writing during the drain), then on_close.
 * After on_close returns, the connection's deferred clean-ups run, last first, and no
 * callback for that connection follows. */
typedef struct {
    void (*on_open)(adieu_conn_t *conn, void *user_data);
    void (*on_message)(adieu_conn_t *conn, const adieu_msg_t *msg, void *user_data);
    void (*on_shutdown)(adieu_conn_t *conn, void *user_data);
    void (*on_drain)(adieu_conn_t *conn, void *user_data);
    void (*on_close)(adieu_conn_t *conn, const adieu_close_info_t *info, void *user_data);
} adieu_handler_t;

/* Counters of a server, for logs, metrics and tests. */
typedef struct {
    uint64_t connections;               /* TCP connections accepted */
    uint64_t open[ADIEU_PROTO_COUNT];   /* open now, by listener */
    uint64_t opened[ADIEU_PROTO_COUNT]; /* accepted, by listener */
    uint64_t closed[ADIEU_PROTO_COUNT][ADIEU_REASON_COUNT];
    uint64_t messages_in[ADIEU_PROTO_COUNT];  /* handed to the application */
    uint64_t messages_out[ADIEU_PROTO_COUNT]; /* sent by the application, written */
    uint64_t bytes_in[ADIEU_PROTO_COUNT];     /* read from sockets */
    uint64_t bytes_out[ADIEU_PROTO_COUNT];    /* written to sockets */
    bool draining;
} adieu_stats_t;

/* ---------------------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------------------- */

/* Creates a server on loop. cfg is copied; NULL means the defaults. The loop is borrowed
 * and must outlive the server. Ignores SIGPIPE for the process (writes to a closed peer
 * then fail with EPIPE instead of killing it).
 * Returns 0 and sets *out, or ADIEU_EINVAL (bad config), ADIEU_ENOMEM. */
int adieu_server_new(uv_loop_t *loop, const adieu_config_t *cfg, adieu_server_t **out);

/* Listens on addr ("127.0.0.1:10999", "[::1]:9000", port 0 for any) for proto. handler is
 * copied; user_data is passed to every callback. Only one listener per protocol.
 * Returns 0, ADIEU_EINVAL (bad address or protocol), ADIEU_EINVALID_STATE (already
 * listening on proto, or shutting down), or a libuv error (UV_EADDRINUSE, ...). */
int adieu_server_listen(adieu_server_t *server, adieu_proto_t proto, const char *addr,
                        const adieu_handler_t *handler, void *user_data);

/* The port a listener is bound to (useful after port 0), or a negative error. */
int adieu_server_port(const adieu_server_t *server, adieu_proto_t proto);

typedef void (*adieu_server_done_cb)(adieu_server_t *server, void *data);

/* Starts the graceful drain (SPEC C4): listeners stop accepting, every open connection gets
 * on_shutdown, owed replies are flushed, framed connections get FIN and a lingering read,
 * WebSocket connections close 1001. When every connection has closed, or deadline_ms has
 * passed (the rest then close with reason shutdown_timeout and a WARN line counts them), the
 * server closes its own handles and calls done(server, data) from the loop. deadline_ms 0
 * force-closes at once. done may be NULL.
 * Returns 0, or ADIEU_EINVALID_STATE if a shutdown was already started. */
int adieu_server_shutdown(adieu_server_t *server, uint64_t deadline_ms, adieu_server_done_cb done,
                          void *data);

/* Closes every connection at once with reason ADIEU_REASON_FORCED (clean-ups still run) and
 * finishes the shutdown. Starts one (done = NULL) if none was started. Returns 0. */
int adieu_server_force(adieu_server_t *server);

/* True once the server has closed every connection and handle after a shutdown. */
bool adieu_server_done(const adieu_server_t *server);

/* Runs the loop until the server is done, handling signals: the first SIGINT or SIGTERM
 * starts adieu_server_shutdown(server, drain_ms); a second one forces it. Logs the phases and
 * a summary line (connections=, messages_in=, messages_out=).
 * Returns the process exit status: 0 after a graceful shutdown (deadline included), 128 +
 * the second signal's number after a forced one. */
int adieu_server_run(adieu_server_t *server, uint64_t drain_ms);

/* Installs the SIGINT/SIGTERM handling of adieu_server_run() now, so that a signal arriving
 * between the listen and the run is not lost to the default action (which kills the process
 * with no drain). Call it before adieu_server_listen(); adieu_server_run() then uses it.
 * Returns 0, ADIEU_EINVALID_STATE if already installed or shutting down, or a libuv error. */
int adieu_server_catch_signals(adieu_server_t *server, uint64_t drain_ms);

/* Frees a server. Valid before any listen, or once adieu_server_done() is true;
 * ADIEU_EINVALID_STATE otherwise (the server is then left untouched). */
int adieu_server_free(adieu_server_t *server);

/* Copies the server's counters into *out. */
void adieu_server_stats(const adieu_server_t *server, adieu_stats_t *out);

/* The loop the server runs on (borrowed). */
uv_loop_t *adieu_server_loop(const adieu_server_t *server);

/* ---------------------------------------------------------------------------------------
 * Connection
 *
 * A connection object is owned by the library and reference-counted. The application
 * borrows it inside callbacks; to keep it past a callback (to answer later) take a
 * reference with adieu_conn_ref() and release it with adieu_conn_unref(). The object stays
 * valid, its sends returning ADIEU_ECLOSED, until the last reference goes.
 * ------------------------------------------------------------------------------------- */

/* Queues one message. data is copied before the call returns. Framed connections ignore
 * opcode. The message is written later in the same loop turn, batched with others.
 * Returns 0; ADIEU_BACKPRESSURE (positive) if queued but the output queue is above the high
 * watermark (wait for on_drain); ADIEU_ECLOSED if the connection closed or is closing after
 * its lingering phase began; ADIEU_ETOOBIG if len exceeds what the protocol can carry;
 * ADIEU_EBUFFULL if the queue is over its hard limit (not queued); ADIEU_ENOMEM. */
int adieu_conn_send(adieu_conn_t *conn, adieu_opcode_t opcode, const void *data, size_t len);

/* Starts a graceful close with reason ADIEU_REASON_LOCAL: what is queued is flushed, then
 * FIN (framed) or close 1000 (WebSocket). on_close follows on a later loop turn.
 * Returns 0, or ADIEU_ECLOSED if the connection is already closing or closed. */
int adieu_conn_close(adieu_conn_t *conn);

/* Registers fn(arg) to run once after on_close, last registered first, on every path.
 * Returns 0, ADIEU_ECLOSED if the connection has closed (fn is then not registered and not
 * called), or ADIEU_ENOMEM. */
int adieu_conn_defer(adieu_conn_t *conn, void (*fn)(void *arg), void *arg);

/* Takes a reference. Returns conn. */
adieu_conn_t *adieu_conn_ref(adieu_conn_t *conn);
/* Releases a reference; the object is freed after its last reference and its close. */
void adieu_conn_unref(adieu_conn_t *conn);

/* Says the application owes this connection an answer it will send later (after a timer, a
 * database call): takes a reference, and graceful closes (peer half-close, shutdown drain,
 * adieu_conn_close) wait, within their deadlines, until every hold is released. */
adieu_conn_t *adieu_conn_hold(adieu_conn_t *conn);
/* Ends a hold taken by adieu_conn_hold() and drops its reference. */
void adieu_conn_release(adieu_conn_t *conn);

/* Like adieu_conn_close(), with the WebSocket close code and reason text to send (code
 * 1000-1003, 1007-1014 or 3000-4999; reason valid UTF-8 of at most 123 bytes, copied; NULL
 * for none). Framed connections ignore both. Returns 0, ADIEU_ECLOSED, or ADIEU_EINVAL for a
 * code or reason that may not be sent. */
int adieu_conn_close_code(adieu_conn_t *conn, unsigned code, const char *reason);

/* The WebSocket subprotocol selected at the upgrade (one of the configured names), or NULL:
 * none, or a framed connection. Borrowed from the configuration. */
const char *adieu_conn_subprotocol(const adieu_conn_t *conn);

/* True until the connection starts closing (peer EOF, close, shutdown, error). */
bool adieu_conn_is_open(const adieu_conn_t *conn);
/* The peer address, "127.0.0.1:54321" or "[::1]:54321"; borrowed for the object's life. */
const char *adieu_conn_peer(const adieu_conn_t *conn);
adieu_proto_t adieu_conn_proto(const adieu_conn_t *conn);
adieu_server_t *adieu_conn_server(const adieu_conn_t *conn);
/* Bytes queued and not yet written. */
size_t adieu_conn_queued(const adieu_conn_t *conn);
/* A pointer for the application, NULL at first. */
void adieu_conn_set_data(adieu_conn_t *conn, void *data);
void *adieu_conn_get_data(const adieu_conn_t *conn);

#ifdef __cplusplus
}
#endif

#endif /* ADIEU_ADIEU_H */

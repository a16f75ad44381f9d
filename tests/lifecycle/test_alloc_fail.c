/* SPDX-License-Identifier: MIT */
/*
 * Allocation failure (issue 4, "Fault matrix"): one whole lifecycle scenario, run again and
 * again with an allocator (adieu_replace_allocator) that fails the N-th allocation adieu
 * makes, for N = 1, 2, 3, ... until a run ends without reaching the N-th; then a second pass
 * that fails every allocation from the N-th on for a while (BURST attempts), like a machine
 * out of memory that recovers. libuv keeps its own allocator: it aborts on some failures.
 *
 * The scenario, on one server with both listeners:
 *  - framed clients: pipelined messages (one split across writes) then FIN (peer_eof); a
 *    reply then a reset (peer_reset); a message over max_message (too_big); a frame cut by
 *    FIN (truncated); one that stays for the drain (shutdown); one that never closes after
 *    the server's FIN, so the drain deadline closes it (shutdown_timeout);
 *  - WebSocket clients: upgrade, a text and a binary message, close 1000 (normal);
 *    a text message in three fragments with a ping between them, then FIN (peer_eof); the
 *    upgrade request and a frame in one write, then a reset (peer_reset); the text "close",
 *    on which the application closes (local); one that stays for the drain (shutdown);
 *  - GET /healthz and GET /metrics (http_done);
 *  - then a graceful shutdown with a short deadline.
 * The application echoes. When a send fails with ADIEU_ENOMEM it closes the connection
 * (WebSocket: 1011): a reply it cannot queue must not leave the peer waiting.
 *
 * At every N: no crash; every on_open has exactly one on_close and every registered clean-up
 * runs once, last first (the harness, which lets adieu_conn_defer() fail with ADIEU_ENOMEM);
 * every connection ends with a reason among those its script allows plus server_error and
 * local (the application's close on ENOMEM); no client waits forever (the scenario must reach
 * its end on its own); no client ever receives bytes that are wrong (missing or cut short is
 * allowed, never garbage); a close reason that claims success (normal, http_done) matches what
 * the client received; the counters add up (opened == closed, connections == TCP
 * connections made); no allocation is left after adieu_server_free(); uv_loop_close() == 0.
 * The run in which the failure is not reached is checked exactly, like any lifecycle test.
 *
 * Under valgrind (seen by its preload library in LD_PRELOAD) only every AF_VALGRIND_STRIDE-th
 * N is run and the deadline is longer; AF_STRIDE=k in the environment sets the stride.
 * To look at one case: AF_ONLY=P:N runs pass P (1 or 2) at N alone; AF_TRACE=1 (sanitizer
 * builds) prints the stack of each failed allocation; LC_LOG_LEVEL=debug shows the log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAX_MESSAGE 256
#define BURST 24             /* pass 2: allocations failed in a row from the N-th on */
#define DEADLINE_MS 40       /* the drain deadline (the deaf client waits it out) */
#define DEADLINE_MS_VG 300   /* the same under valgrind */
#define LINGER_MS 300        /* bounds every graceful close (linger_timeout_ms) */
#define LINGER_MS_VG 1500    /* the same under valgrind */
#define STUCK_MS 1000        /* a scenario not over by then has a client waiting forever */
#define STUCK_MS_VG 5000     /* the same under valgrind */
#define AF_VALGRIND_STRIDE 5 /* under valgrind, every 5th N */
#define MAX_RUNS 100000      /* a bound on N in case the count never converges */

/* ---- the allocator ---------------------------------------------------------------------- */

static struct {
    unsigned long attempts; /* allocation attempts in this run */
    unsigned long fail_at;  /* 0: fail none */
    unsigned long fail_len; /* attempts failed from fail_at on */
    unsigned long failed;   /* attempts failed in this run */
    long live;              /* blocks handed out and not yet freed */
    bool bad_realloc;
} A;

/* In a sanitizer build, AF_TRACE=1 prints where each failed allocation came from. */
extern void __sanitizer_print_stack_trace(void) __attribute__((weak));
static bool trace_failures;

static bool af_fail(void)
{
    A.attempts++;
    if (A.fail_at != 0 && A.attempts >= A.fail_at && A.attempts - A.fail_at < A.fail_len) {
        A.failed++;
        if (trace_failures && __sanitizer_print_stack_trace != NULL) {
            fprintf(stderr, "allocation %lu fails:\n", A.attempts);
            __sanitizer_print_stack_trace();
        }
        return true;
    }
    return false;
}

static void *af_malloc(size_t n)
{
    if (af_fail())
        return NULL;
    void *p = malloc(n);
    if (p != NULL)
        A.live++;
    return p;
}

static void *af_calloc(size_t n, size_t m)
{
    if (af_fail())
        return NULL;
    void *p = calloc(n, m);
    if (p != NULL)
        A.live++;
    return p;
}

static void *af_realloc(void *p, size_t n)
{
    if (n == 0) {
        /* The C library may free and return NULL: adieu must not rely on either meaning. */
        A.bad_realloc = true;
        return NULL;
    }
    if (af_fail())
        return NULL;
    void *q = realloc(p, n);
    if (q != NULL && p == NULL)
        A.live++;
    return q;
}

static void af_free(void *p)
{
    if (p != NULL)
        A.live--;
    free(p);
}

/* ---- the scenario's clients ------------------------------------------------------------- */

typedef enum {
    F_PIPE,    /* three pipelined messages, one split across writes, then FIN */
    F_RESET,   /* a reply, then a reset */
    F_BIG,     /* a message, then one over max_message */
    F_TRUNC,   /* a message, then half a frame and FIN */
    F_STAY,    /* a reply, then waits for the drain */
    F_DEAF,    /* a reply, then never closes after the server's FIN */
    W_MSG,     /* upgrade, text and binary messages, close 1000 */
    W_FRAG,    /* upgrade, a fragmented text message with a ping inside, FIN */
    W_EARLY,   /* upgrade and a frame in one write, then a reset */
    W_LOCAL,   /* upgrade, "close": the application closes */
    W_STAY,    /* upgrade, a message, waits for the drain */
    H_HEALTH,  /* GET /healthz */
    H_METRICS, /* GET /metrics */
    NPEERS
} kind_t;

static const char *const kind_names[NPEERS] = {
    "f_pipe", "f_reset", "f_big",   "f_trunc", "f_stay",    "f_deaf",   "w_msg",
    "w_frag", "w_early", "w_local", "w_stay",  "h_healthz", "h_metrics"};

/* The reason each script ends with when nothing fails. */
static const adieu_reason_t expected_reason[NPEERS] = {
    ADIEU_REASON_PEER_EOF,  ADIEU_REASON_PEER_RESET, ADIEU_REASON_TOO_BIG,
    ADIEU_REASON_TRUNCATED, ADIEU_REASON_SHUTDOWN,   ADIEU_REASON_SHUTDOWN_TIMEOUT,
    ADIEU_REASON_NORMAL,    ADIEU_REASON_PEER_EOF,   ADIEU_REASON_PEER_RESET,
    ADIEU_REASON_LOCAL,     ADIEU_REASON_SHUTDOWN,   ADIEU_REASON_HTTP_DONE,
    ADIEU_REASON_HTTP_DONE};

/* Messages each application connection receives when nothing fails. */
static const int expected_messages[NPEERS] = {3, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 0, 0};

typedef struct {
    lc_client_t lc;
    kind_t kind;
    int step;        /* script progress: replies or echoes received */
    bool ready;      /* a staying client got its reply and now waits for the drain */
    bool done;       /* the script ran to its end as written */
    bool bad;        /* received bytes that are wrong */
    char why[96];    /* what was wrong */
    bool head_done;  /* HTTP: the response head was read */
    bool upgraded;   /* WebSocket: 101 received */
    bool close_sent; /* WebSocket: our close frame went out */
    bool fin_sent;   /* our FIN went out: nothing more may be written */
    bool close_got;  /* WebSocket: the server's close frame came */
    unsigned close_code;
    bool pong_got;
    int status;          /* HTTP status */
    long content_length; /* HTTP, -1 if none */
    bool http_complete;  /* HTTP: the whole body came */
    uint8_t in[16384];   /* bytes not yet parsed */
    size_t in_len;
} peer_t;

static lc_server_t S;
static peer_t P[NPEERS];
static bool shutdown_started;
static bool stuck;
static uv_timer_t stuck_timer;
static uv_prepare_t progress;
static uint64_t deadline_ms = DEADLINE_MS;
static uint64_t stuck_ms = STUCK_MS;
static uint64_t linger_ms = LINGER_MS;
static int app_enomem; /* sends the application saw fail with ADIEU_ENOMEM */

static const char upgrade_request[] = "GET /chat HTTP/1.1\r\n"
                                      "Host: 127.0.0.1\r\n"
                                      "Upgrade: websocket\r\n"
                                      "Connection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Sec-WebSocket-Version: 13\r\n"
                                      "\r\n";
/* RFC 6455 1.3: the answer to the key above. */
static const char accept_header[] = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

static peer_t *peer_of(lc_client_t *c)
{
    return (peer_t *)c; /* lc is the first member */
}

static bool is_ws(kind_t k)
{
    return k >= W_MSG && k <= W_STAY;
}

static bool is_http(kind_t k)
{
    return k == H_HEALTH || k == H_METRICS;
}

static void set_bad(peer_t *p, const char *why)
{
    if (!p->bad)
        snprintf(p->why, sizeof(p->why), "%s", why);
    p->bad = true;
}

/* ---- WebSocket client side -------------------------------------------------------------- */

/* Writes one masked frame. */
static void ws_send(peer_t *p, bool fin, unsigned opcode, const void *data, size_t len)
{
    uint8_t f[4 + 4 + MAX_MESSAGE * 2];
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t n = 0;
    if (len >= sizeof(f) - 8)
        return;
    f[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        f[n++] = (uint8_t)(0x80 | len);
    } else {
        f[n++] = 0x80 | 126;
        f[n++] = (uint8_t)(len >> 8);
        f[n++] = (uint8_t)len;
    }
    memcpy(f + n, mask, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        f[n + i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
    lc_client_send_raw(&p->lc, f, n + len);
}

static void ws_close(peer_t *p, unsigned code)
{
    if (p->close_sent || p->fin_sent || p->lc.closing)
        return;
    uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    ws_send(p, true, 0x8, b, 2);
    p->close_sent = true;
}

/* What the scripts do next, after each reply or echo (step counts them). */
static void advance(peer_t *p)
{
    lc_client_t *c = &p->lc;
    if (c->closing)
        return;
    switch (p->kind) {
    case F_PIPE:
        if (p->step == 2) {
            /* The rest of the split message: 37 more bytes of 'c'. */
            uint8_t rest[37];
            memset(rest, 'c', sizeof(rest));
            lc_client_send_raw(c, rest, sizeof(rest));
        } else if (p->step == 3) {
            p->done = true;
            p->fin_sent = true;
            lc_client_shutdown(c);
        }
        break;
    case F_RESET:
    case W_EARLY:
        if (p->step == 1) {
            p->done = true;
            lc_client_reset(c);
        }
        break;
    case F_BIG:
    case F_TRUNC:
        break; /* done at EOF */
    case F_STAY:
    case F_DEAF:
    case W_STAY:
        if (p->step == 1)
            p->ready = true;
        break;
    case W_MSG:
        if (p->step == 2)
            ws_close(p, 1000);
        break;
    case W_FRAG:
        if (p->step == 1 && p->pong_got) {
            p->done = true;
            p->fin_sent = true;
            lc_client_shutdown(c);
        }
        break;
    case W_LOCAL:
    case H_HEALTH:
    case H_METRICS:
    case NPEERS:
        break;
    }
}

/* The echo a WebSocket script expects as its step-th (from 0) message. */
static bool ws_expected(const peer_t *p, unsigned op, const uint8_t *d, size_t n)
{
    static const uint8_t bin[3] = {1, 2, 3};
    switch (p->kind) {
    case W_MSG:
        if (p->step == 0)
            return op == 1 && n == 5 && memcmp(d, "hello", 5) == 0;
        return p->step == 1 && op == 2 && n == 3 && memcmp(d, bin, 3) == 0;
    case W_FRAG:
        return p->step == 0 && op == 1 && n == 10 && memcmp(d, "fragmented", 10) == 0;
    case W_EARLY:
        return p->step == 0 && op == 1 && n == 5 && memcmp(d, "early", 5) == 0;
    case W_STAY:
        return p->step == 0 && op == 1 && n == 2 && memcmp(d, "w5", 2) == 0;
    default:
        return false;
    }
}

static void on_upgraded(peer_t *p)
{
    switch (p->kind) {
    case W_MSG: {
        static const uint8_t bin[3] = {1, 2, 3};
        ws_send(p, true, 0x1, "hello", 5);
        ws_send(p, true, 0x2, bin, 3);
        break;
    }
    case W_FRAG:
        ws_send(p, false, 0x1, "frag", 4);
        ws_send(p, true, 0x9, "p", 1);
        ws_send(p, false, 0x0, "men", 3);
        ws_send(p, true, 0x0, "ted", 3);
        break;
    case W_LOCAL:
        ws_send(p, true, 0x1, "close", 5);
        break;
    case W_STAY:
        ws_send(p, true, 0x1, "w5", 2);
        break;
    default:
        break;
    }
}

/* Parses the server's frames in p->in. */
static void ws_frames(peer_t *p)
{
    size_t pos = 0;
    while (!p->bad && p->in_len - pos >= 2) {
        const uint8_t *h = p->in + pos;
        unsigned op = h[0] & 0x0f;
        bool fin = (h[0] & 0x80) != 0;
        size_t len = h[1] & 0x7f;
        size_t hl = 2;
        if ((h[0] & 0x70) != 0 || (h[1] & 0x80) != 0 || !fin) {
            set_bad(p, "server frame with RSV, mask or fragmentation");
            return;
        }
        if (len == 126) {
            if (p->in_len - pos < 4)
                break;
            len = (size_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            set_bad(p, "server frame with a 64-bit length");
            return;
        }
        if (p->in_len - pos - hl < len)
            break;
        const uint8_t *d = h + hl;
        pos += hl + len;
        if (p->close_got) {
            set_bad(p, "a frame after the server's close frame");
            return;
        }
        if (op == 0x8) {
            p->close_got = true;
            p->close_code = len >= 2 ? (unsigned)d[0] << 8 | d[1] : 1005;
            if (p->kind == W_MSG && p->close_sent && p->close_code == 1000)
                p->done = true;
            if (p->kind == W_LOCAL && p->close_code == 1000)
                p->done = true;
            if (p->kind == W_STAY && p->close_code == 1001 && shutdown_started)
                p->done = true;
            ws_close(p, p->close_code == 1005 ? 1000 : p->close_code);
        } else if (op == 0xA) {
            if (p->kind != W_FRAG || len != 1 || d[0] != 'p' || p->pong_got)
                set_bad(p, "unexpected pong");
            p->pong_got = true;
            advance(p);
        } else if (op == 0x1 || op == 0x2) {
            if (!ws_expected(p, op, d, len)) {
                set_bad(p, "unexpected message");
                return;
            }
            p->step++;
            advance(p);
        } else {
            set_bad(p, "unexpected opcode");
            return;
        }
    }
    memmove(p->in, p->in + pos, p->in_len - pos);
    p->in_len -= pos;
}

static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    return false;
}

/* Reads the response head; returns its length, 0 if incomplete. */
static size_t http_head(peer_t *p)
{
    const uint8_t *end = NULL;
    for (size_t i = 0; i + 4 <= p->in_len; i++)
        if (memcmp(p->in + i, "\r\n\r\n", 4) == 0) {
            end = p->in + i + 4;
            break;
        }
    if (end == NULL)
        return 0;
    size_t n = (size_t)(end - p->in);
    char head[2048];
    if (n >= sizeof(head)) {
        set_bad(p, "response head too long");
        return 0;
    }
    memcpy(head, p->in, n);
    head[n] = '\0';
    if (sscanf(head, "HTTP/1.1 %d ", &p->status) != 1) {
        set_bad(p, "not an HTTP/1.1 response");
        return 0;
    }
    const char *cl = strstr(head, "Content-Length: ");
    p->content_length = cl != NULL ? strtol(cl + 16, NULL, 10) : -1;
    if (is_ws(p->kind) && (p->status != 101 || strstr(head, accept_header) == NULL))
        set_bad(p, "no 101 with the right Sec-WebSocket-Accept");
    if (is_http(p->kind) && (p->status != 200 || p->content_length < 0))
        set_bad(p, "no 200 with a Content-Length");
    return n;
}

static void on_data(lc_client_t *c, const uint8_t *data, size_t len)
{
    peer_t *p = peer_of(c);
    if (p->bad)
        return;
    if (len > sizeof(p->in) - p->in_len) {
        set_bad(p, "more input than expected");
        return;
    }
    memcpy(p->in + p->in_len, data, len);
    p->in_len += len;
    if (!p->head_done) {
        size_t n = http_head(p);
        if (n == 0)
            return;
        p->head_done = true;
        if (is_ws(p->kind)) {
            memmove(p->in, p->in + n, p->in_len - n);
            p->in_len -= n;
            p->upgraded = true;
            on_upgraded(p);
        } else {
            memmove(p->in, p->in + n, p->in_len - n);
            p->in_len -= n;
        }
    }
    if (is_ws(p->kind)) {
        ws_frames(p);
    } else if ((long)p->in_len > p->content_length) {
        set_bad(p, "more body than Content-Length");
    } else if ((long)p->in_len == p->content_length) {
        p->http_complete = true;
        bool ok = p->kind == H_HEALTH ? p->in_len == 2 && memcmp(p->in, "ok", 2) == 0
                                      : contains(p->in, p->in_len, "adieu_connections_open");
        if (!ok)
            set_bad(p, "wrong body");
    }
}

/* ---- framed client side ----------------------------------------------------------------- */

static void on_framed_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    peer_t *p = peer_of(c);
    static const char *const pipe_replies[3] = {"a1", "a2", NULL};
    bool ok;
    if (shutdown_started && (p->kind == F_STAY || p->kind == F_DEAF)) {
        ok = len == 3 && memcmp(data, "bye", 3) == 0;
        if (ok)
            p->done = true;
        if (!ok)
            set_bad(p, "wrong goodbye");
        return;
    }
    switch (p->kind) {
    case F_PIPE:
        if (p->step < 2) {
            ok = len == 2 && memcmp(data, pipe_replies[p->step], 2) == 0;
        } else {
            ok = p->step == 2 && len == 40;
            for (size_t i = 0; ok && i < len; i++)
                ok = data[i] == 'c';
        }
        break;
    case F_RESET:
        ok = p->step == 0 && len == 2 && memcmp(data, "r1", 2) == 0;
        break;
    case F_BIG:
        ok = p->step == 0 && len == 2 && memcmp(data, "b1", 2) == 0;
        break;
    case F_TRUNC:
        ok = p->step == 0 && len == 2 && memcmp(data, "t1", 2) == 0;
        break;
    case F_STAY:
        ok = p->step == 0 && len == 2 && memcmp(data, "s1", 2) == 0;
        break;
    case F_DEAF:
        ok = p->step == 0 && len == 2 && memcmp(data, "d1", 2) == 0;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok) {
        set_bad(p, "unexpected reply");
        return;
    }
    p->step++;
    advance(p);
}

static void on_connect(lc_client_t *c, int status)
{
    peer_t *p = peer_of(c);
    if (status != 0)
        return; /* the harness closes it; the check on counters sees it */
    /* Small writes leave at once: no Nagle wait behind a delayed ACK in the scripts. */
    uv_tcp_nodelay(&c->tcp, 1);
    uint8_t buf[512];
    size_t n = 0;
    switch (p->kind) {
    case F_PIPE: {
        /* "a1", "a2" and the first byte of a 40-byte message, in one write. */
        static const uint8_t head[] = {0, 2, 'a', '1', 0, 2, 'a', '2', 0, 40, 'c', 'c', 'c'};
        lc_client_send_raw(c, head, sizeof(head));
        break;
    }
    case F_RESET:
        lc_client_send(c, "r1", 2);
        break;
    case F_BIG:
        lc_client_send(c, "b1", 2);
        memset(buf, 'B', MAX_MESSAGE + 1);
        lc_client_send(c, buf, MAX_MESSAGE + 1);
        break;
    case F_TRUNC:
        lc_client_send(c, "t1", 2);
        buf[0] = 0;
        buf[1] = 100;
        memset(buf + 2, 'T', 10);
        lc_client_send_raw(c, buf, 12);
        p->fin_sent = true;
        lc_client_shutdown(c);
        break;
    case F_STAY:
        lc_client_send(c, "s1", 2);
        break;
    case F_DEAF:
        lc_client_send(c, "d1", 2);
        break;
    case W_EARLY: {
        /* The upgrade request and a masked text frame "early" in one write. */
        static const uint8_t mask[4] = {1, 2, 3, 4};
        n = strlen(upgrade_request);
        memcpy(buf, upgrade_request, n);
        buf[n++] = 0x81;
        buf[n++] = 0x80 | 5;
        memcpy(buf + n, mask, 4);
        n += 4;
        for (int i = 0; i < 5; i++)
            buf[n++] = (uint8_t)("early"[i] ^ mask[i % 4]);
        lc_client_send_raw(c, buf, n);
        break;
    }
    case W_MSG:
    case W_FRAG:
    case W_LOCAL:
    case W_STAY:
        lc_client_send_raw(c, upgrade_request, strlen(upgrade_request));
        break;
    case H_HEALTH:
        n = (size_t)snprintf((char *)buf, sizeof(buf),
                             "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        lc_client_send_raw(c, buf, n);
        break;
    case H_METRICS:
        n = (size_t)snprintf((char *)buf, sizeof(buf),
                             "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        lc_client_send_raw(c, buf, n);
        break;
    case NPEERS:
        break;
    }
}

static void on_end(lc_client_t *c)
{
    peer_t *p = peer_of(c);
    switch (p->kind) {
    case F_BIG:
    case F_TRUNC:
        p->done = c->eof && p->step == 1;
        break;
    case H_HEALTH:
    case H_METRICS:
        p->done = c->eof && p->http_complete && !p->bad;
        break;
    default:
        break;
    }
    if (p->kind == F_DEAF && shutdown_started)
        return; /* deaf: keeps its socket until the server is done */
    if (c->keep_open)
        lc_client_close(c);
}

/* ---- the application -------------------------------------------------------------------- */

/* A reply the application cannot queue: it closes the connection rather than leave the
 * peer waiting for it. */
static void app_send(lc_conn_t *c, adieu_opcode_t op, const void *data, size_t len)
{
    lc_api_begin(c->s);
    int rc = adieu_conn_send(c->conn, op, data, len);
    lc_api_end(c->s);
    if (rc == ADIEU_ENOMEM) {
        app_enomem++;
        lc_api_begin(c->s);
        if (c->proto == ADIEU_WEBSOCKET)
            rc = adieu_conn_close_code(c->conn, 1011, "out of memory");
        else
            rc = adieu_conn_close(c->conn);
        lc_api_end(c->s);
        CHECK(rc == 0 || rc == ADIEU_ECLOSED);
        return;
    }
    /* ECLOSED: a reply owed while the connection closes (after the drain's close frame). */
    CHECK(rc == 0 || rc == ADIEU_ECLOSED);
}

static void app_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    if (c->proto == ADIEU_WEBSOCKET && msg->opcode == ADIEU_TEXT && msg->len == 5 &&
        memcmp(msg->data, "close", 5) == 0) {
        CHECK_EQ(lc_close(c), 0);
        return;
    }
    app_send(c, msg->opcode, msg->data, msg->len);
}

static void app_shutdown(lc_conn_t *c)
{
    if (c->proto == ADIEU_FRAMED)
        app_send(c, ADIEU_BINARY, "bye", 3);
}

static void app_done(lc_server_t *s)
{
    /* The deaf client, and any other left open, closes now: the harness wants every client
     * closed at the end. */
    for (int i = 0; i < s->nclients; i++)
        lc_client_close(s->clients[i]);
}

/* ---- progress --------------------------------------------------------------------------- */

static void begin_shutdown(void)
{
    shutdown_started = true;
    uv_prepare_stop(&progress);
    uv_close((uv_handle_t *)&progress, NULL);
    uv_timer_stop(&stuck_timer);
    uv_close((uv_handle_t *)&stuck_timer, NULL);
    CHECK_EQ(lc_shutdown(&S, deadline_ms), 0);
}

/* Every client has either finished (closed) or, for the staying ones, is waiting for the
 * drain. */
static bool scenario_over(void)
{
    for (int i = 0; i < NPEERS; i++) {
        const peer_t *p = &P[i];
        if (!p->lc.closed &&
            !(p->ready && (p->kind == F_STAY || p->kind == F_DEAF || p->kind == W_STAY)))
            return false;
    }
    return true;
}

static void on_progress(uv_prepare_t *h)
{
    (void)h;
    if (!shutdown_started && scenario_over())
        begin_shutdown();
}

static void on_stuck(uv_timer_t *t)
{
    (void)t;
    stuck = true;
    fprintf(stderr, "  [%s] the scenario did not end by itself within %llu ms; waiting:\n",
            check__scenario, (unsigned long long)stuck_ms);
    for (int i = 0; i < NPEERS; i++) {
        const peer_t *p = &P[i];
        if (!p->lc.closed && !p->ready)
            fprintf(stderr,
                    "    %s: step=%d head=%d status=%d upgraded=%d close_sent=%d close_got=%d "
                    "unparsed=%zu bytes_in=%zu\n",
                    kind_names[i], p->step, p->head_done, p->status, p->upgraded, p->close_sent,
                    p->close_got, p->in_len, p->lc.bytes_in);
    }
    if (!shutdown_started)
        begin_shutdown();
}

/* ---- one run ------------------------------------------------------------------------------ */

typedef struct {
    bool started;
    bool hit; /* the allocator failed at least once */
} run_t;

static bool reason_allowed(const peer_t *p, adieu_reason_t r, bool hit)
{
    if (r == expected_reason[p->kind])
        return true;
    if (!hit)
        return false;
    /* The allocation failure itself, or the application's close when a send failed. */
    return r == ADIEU_REASON_SERVER_ERROR || r == ADIEU_REASON_LOCAL;
}

static void check_run(bool hit)
{
    adieu_stats_t st = lc_stats(&S);
    int connected = 0;
    for (int i = 0; i < NPEERS; i++) {
        peer_t *p = &P[i];
        if (p->lc.connect_status == 0)
            connected++;
        if (!CHECK(!p->bad))
            fprintf(stderr, "  %s received wrong bytes: %s\n", kind_names[p->kind], p->why);
        if (is_http(p->kind))
            continue;
        lc_conn_t *c = lc_conn_of(&S, &p->lc);
        if (c == NULL) {
            /* Never handed to the application: refused at accept or before the upgrade. */
            CHECK(hit);
            continue;
        }
        /* C1, C2: one open, one close, each registered clean-up once, last first. */
        lc_check_conn(c, c->reason, LC_ANY_ERR);
        if (!CHECK(reason_allowed(p, c->reason, hit)))
            fprintf(stderr,
                    "  %s: reason %s (expected %s), trace \"%s\"; client: step=%d ready=%d "
                    "close_sent=%d close_got=%d code=%u eof=%d read_err=%s write_err=%s\n",
                    kind_names[p->kind], adieu_reason_name(c->reason),
                    adieu_reason_name(expected_reason[p->kind]), c->trace, p->step, p->ready,
                    p->close_sent, p->close_got, p->close_code, p->lc.eof,
                    adieu_err_name(p->lc.read_err), adieu_err_name(p->lc.write_err));
        /* A close that reports a completed handshake had one. */
        if (c->reason == ADIEU_REASON_NORMAL && !CHECK(p->close_got && p->close_sent))
            fprintf(stderr, "  %s: reason normal but the client got no close frame\n",
                    kind_names[p->kind]);
    }
    int http_ok = (P[H_HEALTH].http_complete ? 1 : 0) + (P[H_METRICS].http_complete ? 1 : 0);
    /* http_done means the answer went out whole: as many as the clients received. */
    if (!CHECK_EQ(st.closed[ADIEU_WEBSOCKET][ADIEU_REASON_HTTP_DONE], http_ok))
        fprintf(stderr, "  %d HTTP answers received whole, %llu closed as http_done\n", http_ok,
                (unsigned long long)st.closed[ADIEU_WEBSOCKET][ADIEU_REASON_HTTP_DONE]);
    /* Counting (SPEC section 4): every accepted connection is counted and closed once. */
    for (int proto = 0; proto < ADIEU_PROTO_COUNT; proto++) {
        uint64_t closed = 0;
        for (int r = 0; r < ADIEU_REASON_COUNT; r++)
            closed += st.closed[proto][r];
        CHECK_EQ(st.open[proto], 0);
        if (!CHECK_EQ(closed, st.opened[proto]))
            fprintf(stderr, "  %s: opened %llu, closed %llu\n",
                    adieu_proto_name((adieu_proto_t)proto), (unsigned long long)st.opened[proto],
                    (unsigned long long)closed);
    }
    if (!CHECK_EQ(st.connections, connected))
        fprintf(stderr, "  %d TCP connections made, connections=%llu\n", connected,
                (unsigned long long)st.connections);
    CHECK(!stuck); /* on_stuck() said who waits */
    if (hit)
        return;
    /* Nothing failed: the whole scenario, exactly. */
    for (int i = 0; i < NPEERS; i++) {
        peer_t *p = &P[i];
        if (!CHECK(p->done))
            fprintf(stderr, "  %s did not finish its script\n", kind_names[i]);
        if (is_http(p->kind))
            continue;
        lc_conn_t *c = lc_conn_of(&S, &p->lc);
        if (CHECK(c != NULL)) {
            CHECK_EQ(c->messages, expected_messages[i]);
            CHECK_EQ(c->defers_registered, LC_DEFERS);
        }
    }
    CHECK_EQ(st.closed[ADIEU_WEBSOCKET][ADIEU_REASON_HTTP_DONE], 2);
    CHECK_EQ(st.connections, NPEERS);
    CHECK_EQ(app_enomem, 0);
}

/* Runs the scenario once with the allocator failing attempts [fail_at, fail_at + len). */
static run_t run(unsigned long fail_at, unsigned long len)
{
    run_t r = {false, false};
    memset(&A, 0, sizeof(A));
    memset(P, 0, sizeof(P));
    shutdown_started = false;
    stuck = false;
    app_enomem = 0;
    A.fail_at = fail_at;
    A.fail_len = len;

    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.max_message = MAX_MESSAGE;
    cfg.linger_timeout_ms = linger_ms;
    static const lc_hooks_t hooks = {
        .on_message = app_message,
        .on_shutdown = app_shutdown,
        .on_done = app_done,
    };
    int rc = lc_try_start(&S, &cfg, &hooks);
    if (rc == 0)
        rc = lc_listen_ws(&S);
    if (rc != 0) {
        /* Refused to start: the one answer, with nothing left behind. */
        CHECK_EQ(rc, ADIEU_ENOMEM);
        if (S.server != NULL) {
            /* The framed listener is up: finish the server properly. */
            CHECK_EQ(lc_shutdown(&S, 0), 0);
            lc_run(&S);
            lc_finish(&S);
        }
        r.hit = A.failed > 0;
        CHECK(r.hit);
        CHECK_EQ(A.live, 0);
        return r;
    }
    r.started = true;
    if (getenv("LC_LOG_LEVEL") == NULL)
        adieu_log_set_level(ADIEU_LOG_OFF);
    S.tolerate_enomem = true;

    uv_prepare_init(&S.loop, &progress);
    uv_prepare_start(&progress, on_progress);
    uv_timer_init(&S.loop, &stuck_timer);
    uv_timer_start(&stuck_timer, on_stuck, stuck_ms, 0);

    for (int i = 0; i < NPEERS; i++) {
        peer_t *p = &P[i];
        p->kind = (kind_t)i;
        p->content_length = -1;
        lc_client_init(&S, &p->lc);
        p->lc.on_connect = on_connect;
        p->lc.on_end = on_end;
        if (i >= W_MSG) {
            p->lc.port = S.ws_port;
            p->lc.on_data = on_data;
        } else {
            p->lc.on_message = on_framed_message;
        }
        /* The deaf client keeps its socket after EOF; on_end closes the others itself. */
        p->lc.keep_open = true;
        lc_client_connect(&p->lc);
    }

    lc_run(&S);
    r.hit = A.failed > 0;
    check_run(r.hit);
    lc_finish(&S);
    CHECK(!A.bad_realloc);
    if (!CHECK_EQ(A.live, 0))
        fprintf(stderr, "  %ld allocations left after adieu_server_free()\n", A.live);
    return r;
}

/* ---- main ---------------------------------------------------------------------------------- */

static bool under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

/* One pass: N = 1, 1 + stride, ... until a run does not reach the N-th allocation. Returns
 * the number of runs. */
static int pass(const char *name, unsigned long len, unsigned long stride, unsigned long *last)
{
    static char scenario[64];
    int runs = 0;
    for (unsigned long n = 1; n < MAX_RUNS; n += stride) {
        snprintf(scenario, sizeof(scenario), "%s N=%lu", name, n);
        check__scenario = scenario;
        long failed_before = check__failed;
        run_t r = run(n, len);
        runs++;
        if (check__failed != failed_before)
            fprintf(stderr, "  (in %s: %lu allocation attempts, %lu failed)\n", scenario,
                    A.attempts, A.failed);
        if (!r.hit) {
            *last = n;
            break;
        }
    }
    check__scenario = "main";
    return runs;
}

/* AF_ONLY=P:N runs pass P (1 or 2) at N alone, to reproduce one case (with LC_LOG_LEVEL=debug
 * for the library's log). */
static bool only(void)
{
    const char *env = getenv("AF_ONLY");
    unsigned p;
    unsigned long n;
    if (env == NULL || sscanf(env, "%u:%lu", &p, &n) != 2)
        return false;
    static char scenario[64];
    snprintf(scenario, sizeof(scenario), "%s N=%lu", p == 2 ? "fail from N-th" : "fail N-th", n);
    check__scenario = scenario;
    run_t r = run(n, p == 2 ? BURST : 1);
    printf("alloc_fail: %s: %lu allocation attempts, %lu failed, hit=%d\n", scenario, A.attempts,
           A.failed, r.hit);
    return true;
}

int main(void)
{
    if (!CHECK_EQ(adieu_replace_allocator(af_malloc, af_realloc, af_calloc, af_free), 0))
        return check_done();
    trace_failures = getenv("AF_TRACE") != NULL;
    if (only())
        return check_done();
    unsigned long stride = 1;
    if (under_valgrind()) {
        stride = AF_VALGRIND_STRIDE;
        deadline_ms = DEADLINE_MS_VG;
        stuck_ms = STUCK_MS_VG;
        linger_ms = LINGER_MS_VG;
    }
    const char *env = getenv("AF_STRIDE");
    if (env != NULL && atol(env) > 0)
        stride = (unsigned long)atol(env);

    uint64_t t0 = uv_hrtime();
    check__scenario = "baseline";
    run(0, 0);
    unsigned long baseline = A.attempts;
    check__scenario = "main";
    unsigned long last1 = 0, last2 = 0;
    int runs1 = pass("fail N-th", 1, stride, &last1);
    int runs2 = pass("fail from N-th", BURST, stride, &last2);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    printf("alloc_fail: %lu allocations in the scenario; pass 1 (fail the N-th): %d runs, "
           "N = 1..%lu; pass 2 (fail %d from the N-th on): %d runs, N = 1..%lu; stride %lu; "
           "%.1f s\n",
           baseline, runs1, last1, BURST, runs2, last2, stride, secs);
    return check_done();
}

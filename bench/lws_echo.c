/* SPDX-License-Identifier: MIT */
/*
 * bench-lws-echo: a WebSocket echo server on libwebsockets, the C library most servers of
 * this kind are built on, for bench/run to compare adieu against.
 *
 * libwebsockets allows one lws_write() per LWS_CALLBACK_SERVER_WRITEABLE, so a received
 * message cannot be echoed from the receive callback: each one is copied into a queue on
 * the connection and written when lws says the socket is writable, one per callback, in
 * the order received. Messages arrive in pieces of at most rx_buffer_size; each piece is
 * echoed as a fragment of the same message (same text or binary type), so the peer sees
 * the message it sent. Reading from a connection pauses while its queue is long, so a
 * peer that does not read cannot grow it without bound. Pings are answered and closes
 * echoed by libwebsockets itself; text is UTF-8 validated, as RFC 6455 asks.
 *
 *   bench-lws-echo [--host 127.0.0.1] [--port 9101]
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

enum {
    RX_BUFFER = 64 * 1024,
    /* Reading pauses at QUEUE_HIGH queued pieces and resumes at QUEUE_LOW. */
    QUEUE_HIGH = 64,
    QUEUE_LOW = 16,
};

/* One received piece waiting to be echoed; LWS_PRE bytes of headroom precede the payload,
 * where lws_write() puts the frame header. */
struct piece {
    struct piece *next;
    size_t len;
    int flags; /* LWS_WRITE_TEXT / _BINARY / _CONTINUATION, with _NO_FIN */
    unsigned char buf[];
};

/* Per connection, zeroed by libwebsockets before LWS_CALLBACK_ESTABLISHED. */
struct session {
    struct piece *head;
    struct piece *tail;
    unsigned count;
    bool paused;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* NOTE: a signal that lands between the loop's check of stop_requested and lws's poll()
 * would not end that poll, which waits for the next event or timer: this timer makes sure
 * the loop looks again within TICK_MS. */
enum { TICK_MS = 200 };
static struct lws_context *context;
static lws_sorted_usec_list_t tick;

static void on_tick(lws_sorted_usec_list_t *sul)
{
    lws_sul_schedule(context, 0, sul, on_tick, TICK_MS * LWS_US_PER_MS);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench-lws-echo [--host ADDR] [--port PORT]\n");
    exit(2);
}

static int enqueue(struct lws *wsi, struct session *ss, const void *in, size_t len)
{
    struct piece *p = malloc(sizeof *p + LWS_PRE + len);
    if (p == NULL)
        return -1;
    p->next = NULL;
    p->len = len;
    p->flags = lws_write_ws_flags(lws_frame_is_binary(wsi) ? LWS_WRITE_BINARY : LWS_WRITE_TEXT,
                                  lws_is_first_fragment(wsi), lws_is_final_fragment(wsi));
    if (len > 0)
        memcpy(p->buf + LWS_PRE, in, len);
    if (ss->tail != NULL)
        ss->tail->next = p;
    else
        ss->head = p;
    ss->tail = p;
    ss->count++;
    /* NOTE: after rx flow control is turned off, lws keeps what it has already read and
     * may still deliver the rest of it, so the queue is a list and never refuses. */
    if (ss->count >= QUEUE_HIGH && !ss->paused) {
        ss->paused = true;
        lws_rx_flow_control(wsi, 0);
    }
    lws_callback_on_writable(wsi);
    return 0;
}

static int write_one(struct lws *wsi, struct session *ss)
{
    struct piece *p = ss->head;
    if (p == NULL)
        return 0;
    /* lws_write() keeps whatever the socket did not take and reports the whole length. */
    int n = lws_write(wsi, p->buf + LWS_PRE, p->len, (enum lws_write_protocol)p->flags);
    if (n < 0 || (size_t)n < p->len)
        return -1;
    ss->head = p->next;
    if (ss->head == NULL)
        ss->tail = NULL;
    ss->count--;
    free(p);
    if (ss->paused && ss->count <= QUEUE_LOW) {
        ss->paused = false;
        lws_rx_flow_control(wsi, 1);
    }
    if (ss->head != NULL)
        lws_callback_on_writable(wsi);
    return 0;
}

static void drop_all(struct session *ss)
{
    while (ss->head != NULL) {
        struct piece *p = ss->head;
        ss->head = p->next;
        free(p);
    }
    ss->tail = NULL;
    ss->count = 0;
}

static int echo_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct session *ss = user;
    switch (reason) {
    case LWS_CALLBACK_RECEIVE:
        return enqueue(wsi, ss, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return write_one(wsi, ss);
    case LWS_CALLBACK_CLOSED:
        drop_all(ss);
        return 0;
    default:
        /* Plain HTTP on the port (a health poll) and everything else: lws's defaults. */
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* The first protocol is the one a client that names none gets. */
static const struct lws_protocols protocols[] = {
    {
        .name = "echo",
        .callback = echo_callback,
        .per_session_data_size = sizeof(struct session),
        .rx_buffer_size = RX_BUFFER,
    },
    {0},
};

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 9101;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *val = argv[++i];
        if (strcmp(argv[i - 1], "--host") == 0) {
            host = val;
        } else if (strcmp(argv[i - 1], "--port") == 0) {
            char *end;
            long p = strtol(val, &end, 10);
            if (*end != '\0' || p < 1 || p > 65535)
                usage();
            port = (int)p;
        } else {
            usage();
        }
    }

    /* Without SA_RESTART, a signal ends lws's poll() so the loop sees the flag at once. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = host;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.pt_serv_buf_size = RX_BUFFER;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (strchr(host, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;

    context = lws_create_context(&info);
    if (context == NULL) {
        fprintf(stderr, "bench-lws-echo: cannot listen on %s:%d\n", host, port);
        return 1;
    }
    on_tick(&tick);
    while (!stop_requested && lws_service(context, 0) >= 0)
        ;
    lws_sul_cancel(&tick);
    lws_context_destroy(context);
    return 0;
}

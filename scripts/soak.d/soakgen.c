/* SPDX-License-Identifier: MIT */
/*
 * soakgen: the load generator of scripts/soak (issue 4, "Soak"). Built by the script with the
 * system compiler at run time; Linux only (epoll, /proc), no library but libc.
 *
 *   soakgen --pid PID --ws-port P --frame-port P [--connections N] [--seconds S]
 *           [--concurrency C] [--sources K] [--interval SEC] [--csv FILE]
 *
 * Runs N connections (alternately framed and WebSocket), at most C at once, each one:
 * connect, upgrade (WebSocket), 1 to 3 messages whose echoes are checked byte for byte, then
 * one of five departures chosen in turn:
 *   framed:    FIN after the replies; RST after the replies; half a frame then FIN;
 *              half a frame then RST; vanish (close right after sending, replies unread);
 *   WebSocket: close frame 1000 (handshake completed); FIN without a close frame; RST;
 *              half a frame then FIN; vanish.
 * Client sockets are bound to 127.0.0.2 .. 127.0.0.(K+1) so that TIME_WAIT on a million
 * short connections does not exhaust the ephemeral ports of one address.
 *
 * Every SEC seconds it samples the server's RSS (/proc/PID/status) and open descriptors
 * (/proc/PID/fd) into the CSV. Before the load it waits for GET /healthz == 200; after it,
 * it scrapes GET /metrics. It prints key=value lines on stdout for the script: made=,
 * errors=, probes=, the scrape's counters, and the first and last samples. Exit status 0, or
 * 1 when something went wrong (an error is a check that failed: wrong bytes, a refused
 * connection, an unexpected end, a connection still unfinished after 10 s).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONC 4096
#define CONN_TIMEOUT_MS 10000
#define INBUF 4096

enum { FRAMED = 0, WS = 1 };

enum {
    ST_FREE = 0,
    ST_CONNECTING,
    ST_UPGRADING, /* ws: waiting for the 101 */
    ST_READING,   /* waiting for echoes */
    ST_CLOSING,   /* ws: our close sent, waiting for the server's */
    ST_DRAINING   /* our FIN sent (or the server's expected): read until EOF */
};

/* Departures, by protocol. */
enum { F_FIN, F_RST, F_MID_FIN, F_MID_RST, F_VANISH, F_MODES };
enum { W_CLOSE, W_FIN, W_RST, W_MID_FIN, W_VANISH, W_MODES };

static const char *const fmode_names[F_MODES] = {"fin", "rst", "midframe_fin", "midframe_rst",
                                                 "vanish"};
static const char *const wmode_names[W_MODES] = {"close", "fin", "rst", "midframe_fin", "vanish"};

typedef struct {
    int fd;
    int state;
    int proto;
    int mode;
    int msgs;   /* messages sent */
    int echoed; /* echoes received */
    bool got_close;
    uint64_t seq;
    uint64_t started;
    size_t in_len;
    uint8_t in[INBUF];
} conn_t;

static struct {
    int pid;
    int ws_port;
    int frame_port;
    uint64_t connections;
    uint64_t seconds;
    int concurrency;
    int sources;
    double interval;
    const char *csv;
} opt = {0, 0, 0, 1000000, 0, 256, 8, 2.0, NULL};

static int ep;
static conn_t *conns;
static uint64_t started_count, made, errors, timeouts, refused;
static uint64_t per_mode[2][5];
static uint64_t err_kind[8];
static const char *const err_names[8] = {"connect", "bytes", "early_end", "timeout",
                                         "upgrade", "send",  "other",     "socket"};
static FILE *csv;
static uint64_t t0;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- sampling ----------------------------------------------------------------------------- */

typedef struct {
    double t;
    long rss_kb;
    long fds;
    uint64_t done;
} sample_t;

static sample_t first_sample, last_sample, max_sample;
static bool have_sample;

static long read_rss_kb(void)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", opt.pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

static long count_fds(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", opt.pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static bool sample(void)
{
    sample_t s = {(double)(now_ms() - t0) / 1000.0, read_rss_kb(), count_fds(), made};
    if (s.rss_kb < 0 || s.fds < 0) {
        fprintf(stderr, "soakgen: the server (pid %d) is gone\n", opt.pid);
        return false;
    }
    if (!have_sample)
        first_sample = max_sample = s;
    have_sample = true;
    last_sample = s;
    if (s.rss_kb > max_sample.rss_kb)
        max_sample.rss_kb = s.rss_kb;
    if (s.fds > max_sample.fds)
        max_sample.fds = s.fds;
    if (csv != NULL) {
        fprintf(csv, "%.1f,%ld,%ld,%llu\n", s.t, s.rss_kb, s.fds, (unsigned long long)s.done);
        fflush(csv);
    }
    return true;
}

/* ---- blocking HTTP helpers (health check and scrape) ------------------------------------- */

/* Sends a GET and reads the whole answer (the server closes after it). Returns its length,
 * or -1 if no connection could be made. */
static long http_get(int port, const char *path, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, out + len, cap - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == cap - 1)
            break;
    }
    out[len] = '\0';
    close(fd);
    return (long)len;
}

static uint64_t probes;

static bool wait_healthy(void)
{
    static char buf[4096];
    uint64_t until = now_ms() + 10000;
    while (now_ms() < until) {
        long n = http_get(opt.ws_port, "/healthz", buf, sizeof(buf));
        if (n >= 0)
            probes++;
        if (n > 0 && strncmp(buf, "HTTP/1.1 200", 12) == 0)
            return true;
        usleep(50000);
    }
    return false;
}

/* ---- connections -------------------------------------------------------------------------- */

static void fail(conn_t *c, int kind);

static void conn_free(conn_t *c, bool reset)
{
    if (reset) {
        struct linger l = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = ST_FREE;
}

/* The connection ran its script to the end. */
static void finish(conn_t *c, bool reset)
{
    conn_free(c, reset);
    made++;
    per_mode[c->proto][c->mode]++;
}

static void fail(conn_t *c, int kind)
{
    errors++;
    err_kind[kind]++;
    if (errors <= 10)
        fprintf(stderr, "soakgen: connection %llu (%s %s, state %d): %s\n",
                (unsigned long long)c->seq, c->proto == WS ? "ws" : "frame",
                c->proto == WS ? wmode_names[c->mode] : fmode_names[c->mode], c->state,
                err_names[kind]);
    /* A connection that was never made is not counted among those made. */
    if (kind == 0)
        conn_free(c, true);
    else
        finish(c, true);
}

static bool send_all(conn_t *c, const void *p, size_t n)
{
    /* Small writes into an empty socket buffer: all or nothing in practice. */
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w == (ssize_t)n)
        return true;
    fail(c, 5);
    return false;
}

/* The payload of message i of a connection: its sequence number and i, then filler. */
static size_t payload(const conn_t *c, int i, uint8_t *out)
{
    int n = snprintf((char *)out, 64, "{\"seq\":%llu,\"i\":%d,\"pad\":\"%.*s\"}",
                     (unsigned long long)c->seq, i, (int)(c->seq % 17), "abcdefghijklmnopq");
    return (size_t)n;
}

static size_t ws_frame(uint8_t *out, unsigned opcode, const uint8_t *data, size_t len)
{
    static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t n = 0;
    out[n++] = (uint8_t)(0x80 | opcode);
    out[n++] = (uint8_t)(0x80 | len); /* len < 126 here */
    memcpy(out + n, mask, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        out[n + i] = data[i] ^ mask[i % 4];
    return n + len;
}

static void half_close(conn_t *c)
{
    shutdown(c->fd, SHUT_WR);
    c->state = ST_DRAINING;
}

/* Connected: send what the script sends first. */
static void on_connected(conn_t *c)
{
    uint8_t buf[1024];
    size_t n = 0;
    if (c->proto == FRAMED) {
        for (int i = 0; i < c->msgs; i++) {
            size_t len = payload(c, i, buf + n + 2);
            buf[n] = (uint8_t)(len >> 8);
            buf[n + 1] = (uint8_t)len;
            n += 2 + len;
        }
        if (c->mode == F_MID_FIN || c->mode == F_MID_RST) {
            /* Half a frame: declares 100 bytes, sends 10. */
            buf[n++] = 0;
            buf[n++] = 100;
            memset(buf + n, 'x', 10);
            n += 10;
        }
        if (!send_all(c, buf, n))
            return;
        if (c->mode == F_VANISH) {
            finish(c, false);
        } else if (c->mode == F_MID_FIN) {
            half_close(c); /* the replies still come, then the server's FIN */
        } else {
            c->state = ST_READING;
        }
        return;
    }
    static const char req[] = "GET /soak HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";
    if (!send_all(c, req, sizeof(req) - 1))
        return;
    c->state = ST_UPGRADING;
}

static void on_upgraded(conn_t *c)
{
    uint8_t buf[1024], p[64];
    size_t n = 0;
    for (int i = 0; i < c->msgs; i++)
        n += ws_frame(buf + n, 0x1, p, payload(c, i, p));
    if (c->mode == W_MID_FIN) {
        /* A masked frame header declaring 100 bytes, and 10 of them. */
        buf[n++] = 0x82;
        buf[n++] = 0x80 | 100;
        memset(buf + n, 0, 4 + 10);
        n += 14;
    }
    if (!send_all(c, buf, n))
        return;
    if (c->mode == W_VANISH)
        finish(c, false);
    else if (c->mode == W_MID_FIN)
        half_close(c);
    else
        c->state = ST_READING;
}

/* All echoes are in: depart. */
static void depart(conn_t *c)
{
    if (c->proto == FRAMED) {
        if (c->mode == F_RST || c->mode == F_MID_RST) {
            if (c->mode == F_MID_RST) {
                uint8_t half[12] = {0, 100};
                memset(half + 2, 'x', 10);
                if (!send_all(c, half, sizeof(half)))
                    return;
            }
            finish(c, true);
        } else {
            half_close(c);
        }
        return;
    }
    switch (c->mode) {
    case W_CLOSE: {
        uint8_t code[2] = {0x03, 0xe8}, f[16];
        if (send_all(c, f, ws_frame(f, 0x8, code, 2)))
            c->state = ST_CLOSING;
        break;
    }
    case W_FIN:
        half_close(c);
        break;
    case W_RST:
        finish(c, true);
        break;
    default:
        break;
    }
}

/* Checks framed replies in c->in. */
static void framed_input(conn_t *c)
{
    size_t pos = 0;
    uint8_t want[64];
    while (c->in_len - pos >= 2) {
        size_t len = (size_t)c->in[pos] << 8 | c->in[pos + 1];
        if (c->in_len - pos - 2 < len)
            break;
        size_t wl = c->echoed < c->msgs ? payload(c, c->echoed, want) : 0;
        if (c->echoed >= c->msgs || len != wl || memcmp(c->in + pos + 2, want, wl) != 0) {
            fail(c, 1);
            return;
        }
        c->echoed++;
        pos += 2 + len;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    if (c->state == ST_READING && c->echoed == c->msgs)
        depart(c);
}

/* Checks the server's frames in c->in. */
static void ws_input(conn_t *c)
{
    size_t pos = 0;
    uint8_t want[64];
    while (c->fd >= 0 && c->in_len - pos >= 2) {
        const uint8_t *h = c->in + pos;
        size_t len = h[1] & 0x7f;
        if (len >= 126 || (h[1] & 0x80) != 0) {
            fail(c, 1);
            return;
        }
        if (c->in_len - pos - 2 < len)
            break;
        unsigned op = h[0] & 0x0f;
        const uint8_t *d = h + 2;
        pos += 2 + len;
        if (op == 0x8) {
            c->got_close = true;
            continue;
        }
        size_t wl = c->echoed < c->msgs ? payload(c, c->echoed, want) : 0;
        if (op != 0x1 || c->echoed >= c->msgs || len != wl || memcmp(d, want, wl) != 0) {
            fail(c, 1);
            return;
        }
        c->echoed++;
    }
    if (c->fd < 0)
        return;
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    if (c->state == ST_READING && c->got_close) {
        fail(c, 2); /* the server closed before answering */
        return;
    }
    if (c->state == ST_READING && c->echoed == c->msgs)
        depart(c);
}

static void upgrade_input(conn_t *c)
{
    uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (c->in_len >= INBUF)
            fail(c, 4);
        return;
    }
    size_t head = (size_t)(end + 4 - c->in);
    if (strncmp((const char *)c->in, "HTTP/1.1 101 ", 13) != 0 ||
        memmem(c->in, head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28) == NULL) {
        fail(c, 4);
        return;
    }
    memmove(c->in, c->in + head, c->in_len - head);
    c->in_len -= head;
    on_upgraded(c);
}

static void on_readable(conn_t *c)
{
    for (;;) {
        if (c->in_len == INBUF) {
            fail(c, 1);
            return;
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, INBUF - c->in_len, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* A reset while we wait for the end after a rude departure of ours is an
             * ending like another; anywhere else it is an error. */
            if (c->state == ST_DRAINING)
                finish(c, false);
            else
                fail(c, 2);
            return;
        }
        if (r == 0) {
            /* EOF: expected once we half-closed or sent our close frame. */
            if (c->state == ST_DRAINING) {
                /* Half a frame then FIN: every complete message is answered before the
                 * server's FIN (SPEC P1, the framed half-close). */
                if (c->echoed != c->msgs) {
                    fail(c, 2);
                    return;
                }
                finish(c, false);
            } else if (c->state == ST_CLOSING && c->got_close) {
                finish(c, false);
            } else {
                fail(c, 2);
            }
            return;
        }
        c->in_len += (size_t)r;
        switch (c->state) {
        case ST_UPGRADING:
            upgrade_input(c);
            if (c->fd >= 0 && c->state == ST_READING && c->in_len > 0)
                ws_input(c);
            break;
        case ST_READING:
        case ST_CLOSING:
        case ST_DRAINING:
            if (c->proto == FRAMED)
                framed_input(c);
            else
                ws_input(c);
            break;
        default:
            break;
        }
        if (c->fd < 0 || c->state == ST_FREE)
            return;
    }
}

static bool start(conn_t *c)
{
    memset(c, 0, offsetof(conn_t, in));
    c->seq = started_count++;
    c->proto = (int)(c->seq % 2);
    c->mode = (int)((c->seq / 2) % 5);
    c->msgs = 1 + (int)(c->seq % 3);
    c->started = now_ms();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = ST_FREE;
        errors++;
        err_kind[7]++;
        return false;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(c->seq % (uint64_t)opt.sources));
    bind(c->fd, (struct sockaddr *)&src, sizeof(src));
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_port = htons((uint16_t)(c->proto == WS ? opt.ws_port : opt.frame_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->state = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        refused++;
        fail(c, 0);
        return false;
    }
    return true;
}

static void on_event(conn_t *c, uint32_t events)
{
    if (c->state == ST_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            refused++;
            fail(c, 0);
            return;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        on_connected(c);
        if (c->state == ST_FREE)
            return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        on_readable(c);
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: soakgen --pid PID --ws-port P --frame-port P [--connections N] "
                    "[--seconds S] [--concurrency C] [--sources K] [--interval SEC] "
                    "[--csv FILE]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(k, "--pid") == 0)
            opt.pid = atoi(v);
        else if (strcmp(k, "--ws-port") == 0)
            opt.ws_port = atoi(v);
        else if (strcmp(k, "--frame-port") == 0)
            opt.frame_port = atoi(v);
        else if (strcmp(k, "--connections") == 0)
            opt.connections = strtoull(v, NULL, 10);
        else if (strcmp(k, "--seconds") == 0)
            opt.seconds = strtoull(v, NULL, 10);
        else if (strcmp(k, "--concurrency") == 0)
            opt.concurrency = atoi(v);
        else if (strcmp(k, "--sources") == 0)
            opt.sources = atoi(v);
        else if (strcmp(k, "--interval") == 0)
            opt.interval = atof(v);
        else if (strcmp(k, "--csv") == 0)
            opt.csv = v;
        else
            usage();
    }
    if (opt.pid <= 0 || opt.ws_port <= 0 || opt.frame_port <= 0 || opt.concurrency < 1 ||
        opt.concurrency > MAX_CONC || opt.sources < 1 || opt.sources > 250 || opt.interval <= 0)
        usage();
}

/* The sum of a metric's samples whose labels contain `match` (NULL: all). */
static uint64_t metric(const char *body, const char *name, const char *match)
{
    uint64_t sum = 0;
    size_t nl = strlen(name);
    for (const char *p = body; p != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && (p[nl] == '{' || p[nl] == ' ')) {
            char line[512];
            snprintf(line, sizeof(line), "%.*s", (int)len, p);
            if (match == NULL || strstr(line, match) != NULL) {
                const char *sp = strrchr(line, ' ');
                if (sp != NULL)
                    sum += strtoull(sp + 1, NULL, 10);
            }
        }
        p = eol != NULL ? eol + 1 : NULL;
    }
    return sum;
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    t0 = now_ms();
    if (opt.csv != NULL) {
        csv = fopen(opt.csv, "w");
        if (csv == NULL) {
            perror(opt.csv);
            return 1;
        }
        fprintf(csv, "seconds,rss_kb,fds,connections\n");
    }
    if (!wait_healthy()) {
        fprintf(stderr, "soakgen: GET /healthz never answered 200\n");
        return 1;
    }
    /* The health check's connection closes on the server's side once our close reaches it:
     * the first sample waits until the descriptor count holds still. */
    for (int i = 0, same = 0; i < 40 && same < 3; i++) {
        long before = count_fds();
        usleep(50000);
        same = count_fds() == before ? same + 1 : 0;
    }
    t0 = now_ms(); /* time 0 of the CSV: the load starts now */
    if (!sample())
        return 1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)opt.concurrency, sizeof(*conns));
    if (ep < 0 || conns == NULL)
        return 1;
    uint64_t cap_ms = opt.seconds > 0 ? opt.seconds * 1000 : UINT64_MAX;
    uint64_t next_sample = now_ms() + (uint64_t)(opt.interval * 1000);
    uint64_t next_progress = now_ms() + 10000;
    int active = 0;
    struct epoll_event evs[512];
    bool gone = false;
    for (;;) {
        uint64_t now = now_ms();
        bool more = started_count < opt.connections && now - t0 < cap_ms;
        active = 0;
        for (int i = 0; i < opt.concurrency; i++) {
            conn_t *c = &conns[i];
            if (c->state == ST_FREE && more) {
                start(c);
                more = started_count < opt.connections;
            }
            if (c->state != ST_FREE) {
                active++;
                if (now > c->started && now - c->started > CONN_TIMEOUT_MS) {
                    timeouts++;
                    fail(c, 3);
                }
            }
        }
        if (active == 0 && !more)
            break;
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->state != ST_FREE)
                on_event(c, evs[i].events);
        }
        now = now_ms();
        if (now >= next_sample) {
            next_sample += (uint64_t)(opt.interval * 1000);
            if (!sample()) {
                gone = true;
                break;
            }
        }
        if (now >= next_progress) {
            next_progress += 10000;
            fprintf(stderr, "soakgen: %.0f s: %llu connections, %llu errors\n",
                    (double)(now - t0) / 1000.0, (unsigned long long)made,
                    (unsigned long long)errors);
        }
    }
    double secs = (double)(now_ms() - t0) / 1000.0;
    if (gone)
        return 1;
    /* Let the server finish closing what the last departures left (lingering reads, a
     * reset still in flight) before the last sample and the scrape. */
    for (int i = 0; i < 50; i++) {
        usleep(100000);
        sample();
        if (last_sample.fds <= first_sample.fds)
            break;
    }
    sample();
    static char body[1 << 16];
    long n = http_get(opt.ws_port, "/metrics", body, sizeof(body));
    if (n <= 0) {
        fprintf(stderr, "soakgen: GET /metrics failed\n");
        return 1;
    }
    printf("made=%llu\n", (unsigned long long)made);
    printf("started=%llu\n", (unsigned long long)started_count);
    printf("errors=%llu\n", (unsigned long long)errors);
    for (int k = 0; k < 8; k++)
        if (err_kind[k] > 0)
            printf("error_%s=%llu\n", err_names[k], (unsigned long long)err_kind[k]);
    printf("probes=%llu\n", (unsigned long long)probes);
    printf("scrapes=1\n");
    printf("load_seconds=%.1f\n", secs);
    printf("rate=%.0f\n", secs > 0 ? (double)made / secs : 0.0);
    for (int m = 0; m < F_MODES; m++)
        printf("frame_%s=%llu\n", fmode_names[m], (unsigned long long)per_mode[FRAMED][m]);
    for (int m = 0; m < W_MODES; m++)
        printf("ws_%s=%llu\n", wmode_names[m], (unsigned long long)per_mode[WS][m]);
    printf("rss_start_kb=%ld\nrss_end_kb=%ld\nrss_max_kb=%ld\n", first_sample.rss_kb,
           last_sample.rss_kb, max_sample.rss_kb);
    printf("fds_start=%ld\nfds_end=%ld\nfds_max=%ld\n", first_sample.fds, last_sample.fds,
           max_sample.fds);
    static const char *const protos[2] = {"frame", "ws"};
    for (int p = 0; p < 2; p++) {
        char lab[32];
        snprintf(lab, sizeof(lab), "proto=\"%s\"", protos[p]);
        printf("metrics_opened_%s=%llu\n", protos[p],
               (unsigned long long)metric(body, "adieu_connections_opened_total", lab));
        printf("metrics_closed_%s=%llu\n", protos[p],
               (unsigned long long)metric(body, "adieu_connections_closed_total", lab));
        printf("metrics_open_%s=%llu\n", protos[p],
               (unsigned long long)metric(body, "adieu_connections_open", lab));
    }
    /* The closed totals by reason, for the report. */
    for (const char *p = strstr(body, "adieu_connections_closed_total{"); p != NULL;
         p = strstr(p + 1, "adieu_connections_closed_total{")) {
        const char *eol = strchr(p, '\n');
        const char *sp = memrchr(p, ' ', eol != NULL ? (size_t)(eol - p) : strlen(p));
        if (sp != NULL && strtoull(sp + 1, NULL, 10) > 0)
            printf("closed %.*s\n", (int)(eol != NULL ? eol - p : (long)strlen(p)), p);
    }
    if (csv != NULL)
        fclose(csv);
    return errors == 0 ? 0 : 1;
}

/* SPDX-License-Identifier: MIT */
/*
 * bench-ceiling-ws: a WebSocket echo server that does as little as a WebSocket echo can,
 * so that bench/run can show how far adieu is from what the kernel allows for the same
 * traffic. No allocation after start, no validation: the upgrade request is searched for
 * its Sec-WebSocket-Key and nothing else, frames are echoed with the first byte the client
 * sent (FIN, RSV and opcode) and their payload unmasked, a ping gets a pong, a pong is
 * dropped, a close is echoed and the connection closed. No UTF-8 check, no limits, no
 * fragment assembly: a payload is forwarded as it arrives.
 *
 * One thread, level-triggered epoll. Each connection owns one input and one output buffer
 * from a slab mapped at start; everything one read() produces is sent with one send(),
 * and what the socket does not take waits for EPOLLOUT (reading stops while the output
 * buffer is full, so memory stays fixed whatever the peer does).
 *
 *   bench-ceiling-ws [--host 127.0.0.1] [--port 9100] [--max-connections 10000]
 */
#define _GNU_SOURCE /* accept4, memmem, signalfd */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <openssl/evp.h>

enum {
    IN_CAP = 64 * 1024,
    OUT_CAP = 64 * 1024,
    MAX_EVENTS = 256,
    /* epoll tokens below FIRST_CONN are the listener and the signalfd. */
    TOKEN_LISTEN = 0,
    TOKEN_SIGNAL = 1,
    FIRST_CONN = 2,
};

enum conn_state {
    CONN_FREE,      /* slot unused */
    CONN_HANDSHAKE, /* waiting for the end of the upgrade request */
    CONN_OPEN,      /* echoing frames */
    CONN_CLOSING,   /* no more input: close once the output is written */
};

struct conn {
    int fd;
    enum conn_state state;
    uint32_t events; /* what epoll currently watches for this fd */
    uint32_t next;   /* free list link */
    unsigned char *in;
    unsigned char *out;
    size_t in_len;  /* bytes in in[0..in_len) not yet parsed */
    size_t out_off; /* out[out_off..out_len) is still to be sent */
    size_t out_len;
    /* The frame whose payload is being copied. */
    bool in_frame;
    bool drop;        /* the payload is not echoed (a client pong) */
    bool close_after; /* a close frame: close once it is echoed */
    uint64_t need;    /* payload bytes still to come */
    unsigned char key[4];
    unsigned key_pos; /* index into key of the next payload byte */
};

struct server {
    int epfd;
    int lfd;
    int sfd;
    int spare_fd; /* kept open so that EMFILE can be answered by closing a connection */
    uint32_t max_conns;
    struct conn *conns;
    unsigned char *slab;
    size_t slab_len;
    uint32_t free_head; /* UINT32_MAX: none */
    /* Slots closed during the current epoll batch, freed after it, so that an event
     * still queued for the old fd cannot reach a new connection in the same slot. */
    uint32_t *dead;
    uint32_t n_dead;
};

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static void usage(void)
{
    fprintf(stderr, "usage: bench-ceiling-ws [--host ADDR] [--port PORT] [--max-connections N]\n");
    exit(2);
}

static void conn_close(struct server *s, struct conn *c)
{
    if (c->fd < 0)
        return;
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = CONN_FREE;
    s->dead[s->n_dead++] = (uint32_t)(c - s->conns);
}

static void conn_watch(struct server *s, struct conn *c)
{
    uint32_t want = 0;
    if (c->state != CONN_CLOSING && c->in_len < IN_CAP)
        want |= EPOLLIN;
    if (c->out_off < c->out_len)
        want |= EPOLLOUT;
    if (want == c->events)
        return;
    struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)(c - s->conns) + FIRST_CONN};
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_close(s, c);
        return;
    }
    c->events = want;
}

/* Answers the upgrade request once its blank line has arrived. Returns false to close. */
static bool handshake(struct conn *c)
{
    unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (end == NULL)
        return c->in_len < IN_CAP;
    size_t head_len = (size_t)(end - c->in) + 4;

    const char *key = NULL;
    size_t key_len = 0;
    const char *p = (const char *)c->in;
    const char *stop = (const char *)end;
    while (p < stop) {
        const char *eol = memchr(p, '\n', (size_t)(stop - p));
        const char *line_end = eol ? eol : stop;
        if (line_end - p > 18 && strncasecmp(p, "Sec-WebSocket-Key:", 18) == 0) {
            key = p + 18;
            while (key < line_end && (*key == ' ' || *key == '\t'))
                key++;
            const char *kend = line_end;
            while (kend > key && (kend[-1] == '\r' || kend[-1] == ' ' || kend[-1] == '\t'))
                kend--;
            key_len = (size_t)(kend - key);
            break;
        }
        p = line_end + 1;
    }

    unsigned char input[128];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    char accept[32];
    if (key == NULL || key_len == 0 || key_len + sizeof WS_GUID - 1 > sizeof input)
        goto refuse;
    memcpy(input, key, key_len);
    memcpy(input + key_len, WS_GUID, sizeof WS_GUID - 1);
    if (EVP_Digest(input, key_len + sizeof WS_GUID - 1, digest, &digest_len, EVP_sha1(), NULL) != 1)
        goto refuse;
    EVP_EncodeBlock((unsigned char *)accept, digest, 20);

    int n = snprintf((char *)c->out + c->out_len, OUT_CAP - c->out_len,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    c->out_len += (size_t)n;
    c->in_len -= head_len;
    memmove(c->in, c->in + head_len, c->in_len);
    c->state = CONN_OPEN;
    return true;

refuse:;
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                              "Content-Length: 0\r\n\r\n";
    memcpy(c->out + c->out_len, bad, sizeof bad - 1);
    c->out_len += sizeof bad - 1;
    c->in_len = 0;
    c->state = CONN_CLOSING;
    return true;
}

/* Copies n payload bytes from src to dst, unmasking eight bytes at a time. */
static void unmask_copy(unsigned char *dst, const unsigned char *src, size_t n,
                        const unsigned char key[4], unsigned key_pos)
{
    unsigned char k8[8];
    for (unsigned j = 0; j < 8; j++)
        k8[j] = key[(key_pos + j) & 3];
    uint64_t k;
    memcpy(&k, k8, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k8[i & 7];
}

/* Reads one frame header at in[0..avail) into c and writes the echo's header to out.
 * Returns the header's length, or 0 when more input (or output room) is needed. */
static size_t frame_start(struct conn *c, const unsigned char *in, size_t avail)
{
    if (avail < 2)
        return 0;
    unsigned b0 = in[0];
    unsigned len7 = in[1] & 0x7f;
    bool masked = in[1] & 0x80;
    size_t hlen = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (avail < hlen || OUT_CAP - c->out_len < 10)
        return 0;
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)in[2] << 8 | in[3];
    } else if (len7 == 127) {
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | in[i];
    }
    if (masked)
        memcpy(c->key, in + hlen - 4, 4);
    else
        memset(c->key, 0, 4);
    c->key_pos = 0;
    c->need = len;
    c->in_frame = true;

    unsigned opcode = b0 & 0x0f;
    c->drop = opcode == 0xA;
    c->close_after = opcode == 0x8;
    if (c->drop)
        return hlen;
    if (opcode == 0x9)
        b0 = (b0 & 0xf0) | 0xA; /* a ping's answer is a pong with its payload */

    unsigned char *o = c->out + c->out_len;
    o[0] = (unsigned char)b0;
    if (len < 126) {
        o[1] = (unsigned char)len;
        c->out_len += 2;
    } else if (len <= 0xffff) {
        o[1] = 126;
        o[2] = (unsigned char)(len >> 8);
        o[3] = (unsigned char)len;
        c->out_len += 4;
    } else {
        o[1] = 127;
        for (int i = 0; i < 8; i++)
            o[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        c->out_len += 10;
    }
    return hlen;
}

/* Turns as much buffered input into echoes as the output buffer has room for. */
static void ws_process(struct conn *c)
{
    size_t pos = 0;
    while (c->state == CONN_OPEN) {
        if (!c->in_frame) {
            size_t hlen = frame_start(c, c->in + pos, c->in_len - pos);
            if (hlen == 0)
                break;
            pos += hlen;
        }
        size_t n = c->in_len - pos;
        if (n > c->need)
            n = (size_t)c->need;
        if (!c->drop && n > OUT_CAP - c->out_len)
            n = OUT_CAP - c->out_len;
        if (n == 0 && c->need > 0)
            break;
        if (!c->drop) {
            unmask_copy(c->out + c->out_len, c->in + pos, n, c->key, c->key_pos);
            c->out_len += n;
        }
        c->key_pos = (c->key_pos + (unsigned)n) & 3;
        pos += n;
        c->need -= n;
        if (c->need == 0) {
            c->in_frame = false;
            if (c->close_after)
                c->state = CONN_CLOSING;
        }
    }
    if (c->state == CONN_CLOSING)
        pos = c->in_len; /* whatever follows a close is not answered */
    c->in_len -= pos;
    if (c->in_len > 0 && pos > 0)
        memmove(c->in, c->in + pos, c->in_len);
}

/* One send() for everything pending; the rest waits for EPOLLOUT. */
static void conn_flush(struct server *s, struct conn *c)
{
    if (c->out_off < c->out_len) {
        ssize_t n;
        do {
            n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_close(s, c);
            return;
        }
        if (n > 0)
            c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->state == CONN_CLOSING) {
            conn_close(s, c);
            return;
        }
    }
    conn_watch(s, c);
}

/* Makes room at the front of the output buffer before new echoes are appended. */
static void out_compact(struct conn *c)
{
    if (c->out_off == 0)
        return;
    c->out_len -= c->out_off;
    memmove(c->out, c->out + c->out_off, c->out_len);
    c->out_off = 0;
}

static void conn_advance(struct conn *c)
{
    out_compact(c);
    if (c->state == CONN_HANDSHAKE && !handshake(c)) {
        c->state = CONN_CLOSING;
        c->in_len = 0;
    }
    if (c->state == CONN_OPEN)
        ws_process(c);
}

static void on_readable(struct server *s, struct conn *c, uint32_t got)
{
    if (c->state == CONN_CLOSING || c->in_len == IN_CAP) {
        /* Not reading: only a hang-up matters, and nothing more can be sent after it. */
        if (got & EPOLLHUP)
            conn_close(s, c);
        return;
    }
    ssize_t n;
    do {
        n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_close(s, c);
        return;
    }
    if (n == 0) {
        /* Answer what came before the FIN, then close. */
        conn_advance(c);
        c->state = CONN_CLOSING;
        conn_flush(s, c);
        return;
    }
    c->in_len += (size_t)n;
    conn_advance(c);
    conn_flush(s, c);
}

static void on_writable(struct server *s, struct conn *c)
{
    conn_flush(s, c);
    /* Input left over because the output buffer was full is answered now. */
    if (c->fd >= 0 && c->out_off == c->out_len && c->in_len > 0) {
        conn_advance(c);
        conn_flush(s, c);
    }
}

static void accept_all(struct server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && s->spare_fd >= 0) {
                /* NOTE: level-triggered epoll would report the pending connection
                 * forever: take it with the spare descriptor and close it at once. */
                close(s->spare_fd);
                fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0)
                    close(fd);
                s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            return;
        }
        if (s->free_head == UINT32_MAX) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint32_t i = s->free_head;
        struct conn *c = &s->conns[i];
        s->free_head = c->next;
        unsigned char *in = c->in, *out = c->out;
        *c = (struct conn){
            .fd = fd, .state = CONN_HANDSHAKE, .events = EPOLLIN, .in = in, .out = out};
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i + FIRST_CONN};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(s, c);
    }
}

static void free_dead(struct server *s)
{
    for (uint32_t j = 0; j < s->n_dead; j++) {
        struct conn *c = &s->conns[s->dead[j]];
        c->next = s->free_head;
        s->free_head = s->dead[j];
    }
    s->n_dead = 0;
}

static int listen_on(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "bench-ceiling-ws: %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
        fprintf(stderr, "bench-ceiling-ws: cannot listen on %s:%s: %s\n", host, port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int server_init(struct server *s, const char *host, const char *port)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* NOTE: a shell starts a background job with SIGINT ignored, and an ignored signal
     * is discarded before it can reach the signalfd: restore the default first. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return -1;

    s->slab_len = (size_t)s->max_conns * (IN_CAP + OUT_CAP);
    /* NOTE: MAP_NORESERVE: pages are backed only once a connection touches them. */
    s->slab = mmap(NULL, s->slab_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s->slab == MAP_FAILED) {
        s->slab = NULL;
        fprintf(stderr, "bench-ceiling-ws: cannot map %zu bytes\n", s->slab_len);
        return -1;
    }
    s->conns = calloc(s->max_conns, sizeof *s->conns);
    s->dead = calloc(s->max_conns, sizeof *s->dead);
    if (s->conns == NULL || s->dead == NULL)
        return -1;
    s->free_head = UINT32_MAX;
    for (uint32_t i = s->max_conns; i-- > 0;) {
        struct conn *c = &s->conns[i];
        c->fd = -1;
        c->in = s->slab + (size_t)i * (IN_CAP + OUT_CAP);
        c->out = c->in + IN_CAP;
        c->next = s->free_head;
        s->free_head = i;
    }

    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s->lfd = listen_on(host, port);
    if (s->epfd < 0 || s->sfd < 0 || s->lfd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TOKEN_LISTEN};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) < 0)
        return -1;
    ev.data.u64 = TOKEN_SIGNAL;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sfd, &ev) < 0)
        return -1;
    return 0;
}

static void server_close(struct server *s)
{
    if (s->conns != NULL) {
        for (uint32_t i = 0; i < s->max_conns; i++)
            if (s->conns[i].fd >= 0)
                close(s->conns[i].fd);
    }
    free(s->conns);
    free(s->dead);
    if (s->slab != NULL)
        munmap(s->slab, s->slab_len);
    int fds[] = {s->lfd, s->sfd, s->epfd, s->spare_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static int run(struct server *s)
{
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(s->epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("bench-ceiling-ws: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            uint64_t token = events[i].data.u64;
            uint32_t got = events[i].events;
            if (token == TOKEN_SIGNAL)
                return 0;
            if (token == TOKEN_LISTEN) {
                accept_all(s);
                continue;
            }
            struct conn *c = &s->conns[token - FIRST_CONN];
            if (c->fd < 0)
                continue;
            if (got & EPOLLERR) {
                conn_close(s, c);
                continue;
            }
            if (got & EPOLLOUT)
                on_writable(s, c);
            if (c->fd >= 0 && (got & (EPOLLIN | EPOLLHUP)))
                on_readable(s, c, got);
        }
        free_dead(s);
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *port = "9100";
    unsigned long max_conns = 10000;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *val = argv[++i];
        if (strcmp(arg, "--host") == 0) {
            host = val;
        } else if (strcmp(arg, "--port") == 0) {
            port = val;
        } else if (strcmp(arg, "--max-connections") == 0) {
            char *end;
            max_conns = strtoul(val, &end, 10);
            if (*end != '\0' || max_conns == 0 || max_conns > 1000000)
                usage();
        } else {
            usage();
        }
    }

    struct server s = {
        .epfd = -1, .lfd = -1, .sfd = -1, .spare_fd = -1, .max_conns = (uint32_t)max_conns};
    int rc = server_init(&s, host, port) == 0 ? run(&s) : 1;
    server_close(&s);
    return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * bench-ceiling-frame: a framed TCP echo server that does as little as a framed echo can,
 * so that bench/run can show how far adieu is from what the kernel allows for the same
 * traffic. Each message is a big-endian length prefix (2 or 4 bytes) and its payload;
 * the server walks the prefixes to find the message boundaries and echoes every message
 * unchanged. No allocation after start, no limits, no message assembly: a payload is
 * forwarded as it arrives.
 *
 * One thread, level-triggered epoll. Each connection owns one input and one output buffer
 * from a slab mapped at start; everything one read() produces is sent with one send(),
 * and what the socket does not take waits for EPOLLOUT (reading stops while the output
 * buffer is full, so memory stays fixed whatever the peer does). A peer that sends its
 * requests and then a FIN gets every echo, then the server's close.
 *
 *   bench-ceiling-frame [--host 127.0.0.1] [--port 11100] [--prefix-bytes 2|4]
 *                       [--max-connections 10000]
 */
#define _GNU_SOURCE /* accept4, signalfd */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

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
    CONN_FREE,    /* slot unused */
    CONN_OPEN,    /* echoing messages */
    CONN_CLOSING, /* no more input: close once the output is written */
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
    uint32_t need; /* payload bytes of the current message still to come; 0: a prefix next */
};

struct server {
    int epfd;
    int lfd;
    int sfd;
    int spare_fd; /* kept open so that EMFILE can be answered by closing a connection */
    uint32_t max_conns;
    unsigned prefix_bytes;
    struct conn *conns;
    unsigned char *slab;
    size_t slab_len;
    uint32_t free_head; /* UINT32_MAX: none */
    /* Slots closed during the current epoll batch, freed after it, so that an event
     * still queued for the old fd cannot reach a new connection in the same slot. */
    uint32_t *dead;
    uint32_t n_dead;
};

static void usage(void)
{
    fprintf(stderr, "usage: bench-ceiling-frame [--host ADDR] [--port PORT] [--prefix-bytes 2|4]\n"
                    "                           [--max-connections N]\n");
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

/* Echoes as much buffered input as the output buffer has room for. Input and output are
 * the same bytes, so the walk over the prefixes only decides how many to copy. */
static void frame_process(struct conn *c, unsigned prefix_bytes)
{
    size_t limit = c->in_len;
    if (limit > OUT_CAP - c->out_len)
        limit = OUT_CAP - c->out_len;
    size_t take = 0;
    for (;;) {
        if (c->need == 0) {
            if (limit - take < prefix_bytes)
                break;
            const unsigned char *p = c->in + take;
            c->need = prefix_bytes == 2 ? (uint32_t)p[0] << 8 | p[1]
                                        : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                                              (uint32_t)p[2] << 8 | p[3];
            take += prefix_bytes;
            if (c->need == 0)
                continue;
        }
        size_t n = limit - take;
        if (n == 0)
            break;
        if (n > c->need)
            n = c->need;
        take += n;
        c->need -= (uint32_t)n;
    }
    memcpy(c->out + c->out_len, c->in, take);
    c->out_len += take;
    c->in_len -= take;
    if (c->in_len > 0 && take > 0)
        memmove(c->in, c->in + take, c->in_len);
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

static void conn_advance(struct server *s, struct conn *c)
{
    out_compact(c);
    if (c->state == CONN_OPEN)
        frame_process(c, s->prefix_bytes);
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
        conn_advance(s, c);
        c->state = CONN_CLOSING;
        conn_flush(s, c);
        return;
    }
    c->in_len += (size_t)n;
    conn_advance(s, c);
    conn_flush(s, c);
}

static void on_writable(struct server *s, struct conn *c)
{
    conn_flush(s, c);
    /* Input left over because the output buffer was full is answered now. */
    if (c->fd >= 0 && c->out_off == c->out_len && c->in_len > 0) {
        conn_advance(s, c);
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
        *c = (struct conn){.fd = fd, .state = CONN_OPEN, .events = EPOLLIN, .in = in, .out = out};
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
        fprintf(stderr, "bench-ceiling-frame: %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
        fprintf(stderr, "bench-ceiling-frame: cannot listen on %s:%s: %s\n", host, port,
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
        fprintf(stderr, "bench-ceiling-frame: cannot map %zu bytes\n", s->slab_len);
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
            perror("bench-ceiling-frame: epoll_wait");
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
    const char *port = "11100";
    unsigned prefix_bytes = 2;
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
        } else if (strcmp(arg, "--prefix-bytes") == 0) {
            if (strcmp(val, "2") == 0)
                prefix_bytes = 2;
            else if (strcmp(val, "4") == 0)
                prefix_bytes = 4;
            else
                usage();
        } else if (strcmp(arg, "--max-connections") == 0) {
            char *end;
            max_conns = strtoul(val, &end, 10);
            if (*end != '\0' || max_conns == 0 || max_conns > 1000000)
                usage();
        } else {
            usage();
        }
    }

    struct server s = {.epfd = -1,
                       .lfd = -1,
                       .sfd = -1,
                       .spare_fd = -1,
                       .max_conns = (uint32_t)max_conns,
                       .prefix_bytes = prefix_bytes};
    int rc = server_init(&s, host, port) == 0 ? run(&s) : 1;
    server_close(&s);
    return rc;
}

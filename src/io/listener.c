/* SPDX-License-Identifier: MIT */
/* Listening sockets, accepting, and address formatting. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/internal.h"
#include "util/log.h"

/* Connections taken per readiness event: enough to drain a burst, bounded so one busy
 * listener cannot starve the connections already served. */
#define ACCEPT_BATCH 128

int adieu__parse_addr(const char *addr, struct sockaddr_storage *out)
{
    char host[64];
    const char *port;
    memset(out, 0, sizeof(*out));
    if (addr == NULL)
        return ADIEU_EINVAL;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host))
            return ADIEU_EINVAL;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(addr, ':');
        if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
            return ADIEU_EINVAL;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        port = colon + 1;
        if (strcmp(host, "localhost") == 0)
            strcpy(host, "127.0.0.1");
    }
    char *endp;
    long p = strtol(port, &endp, 10);
    if (*port == '\0' || *endp != '\0' || p < 0 || p > 65535)
        return ADIEU_EINVAL;
    if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)out) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)out) == 0)
        return 0;
    return ADIEU_EINVAL;
}

void adieu__format_addr(const struct sockaddr *sa, char *out, size_t outsz)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, outsz, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, outsz, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else {
        snprintf(out, outsz, "unknown");
    }
}

static void on_readable(uv_poll_t *poll, int status, int events);

/* Out of descriptors: give up the spare one to accept the waiting connection and close it at
 * once (the peer sees the end at once instead of waiting in the backlog), then take the spare
 * back. The connection was accepted, so it is counted and gets its close line
 * (too_many_connections, with the errno). Without a spare, stop polling until a connection
 * closes, so the loop never spins on a listener it cannot serve. */
static void on_emfile(adieu_listener_t *l, int err)
{
    adieu_server_t *server = l->server;
    if (server->reserve_fd >= 0) {
        close(server->reserve_fd);
        server->reserve_fd = -1;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
        if (fd >= 0)
            adieu__conn_drop(l, fd, (struct sockaddr *)&ss, ADIEU_REASON_TOO_MANY_CONNECTIONS, err,
                             "out of file descriptors");
        server->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (server->reserve_fd < 0 && l->active && !l->starved) {
        l->starved = true;
        uv_poll_stop(&l->poll);
        adieu_log(ADIEU_LOG_WARN, "server", "accept paused proto=%s error=%s",
                  adieu_proto_name(l->proto), adieu_err_name(err));
    }
}

static void on_readable(uv_poll_t *poll, int status, int events)
{
    (void)events;
    adieu_listener_t *l = poll->data;
    if (status < 0) {
        adieu_log(ADIEU_LOG_WARN, "server", "listener error proto=%s error=%s",
                  adieu_proto_name(l->proto), adieu_err_name(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && l->active && !l->starved; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            adieu__conn_accept(l, fd, (struct sockaddr *)&ss);
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO)
            continue;
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            on_emfile(l, -(err));
            return;
        }
        adieu_log(ADIEU_LOG_WARN, "server", "accept failed proto=%s error=%s",
                  adieu_proto_name(l->proto), adieu_err_name(-(err)));
        return;
    }
}

void adieu__listeners_resume(adieu_server_t *server)
{
    for (int p = 0; p < ADIEU_PROTO_COUNT; p++) {
        adieu_listener_t *l = &server->listeners[p];
        if (!l->starved || !l->active)
            continue;
        if (server->reserve_fd < 0)
            server->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        l->starved = false;
        uv_poll_start(&l->poll, UV_READABLE, on_readable);
    }
}

static int open_socket(const struct sockaddr_storage *ss, int *out)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -(errno);
    int on = 1;
    /* A restarted server must be able to bind while old connections sit in TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    socklen_t sslen =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (const struct sockaddr *)ss, sslen) < 0 || listen(fd, SOMAXCONN) < 0) {
        int err = -(errno);
        close(fd);
        return err;
    }
    *out = fd;
    return 0;
}

int adieu__listener_start(adieu_listener_t *l, const char *addr)
{
    struct sockaddr_storage ss;
    int rc = adieu__parse_addr(addr, &ss);
    if (rc < 0)
        return rc;
    int fd = -1;
    rc = open_socket(&ss, &fd);
    if (rc < 0)
        return rc;
    rc = uv_poll_init_socket(l->server->loop, &l->poll, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    l->fd = fd;
    l->poll.data = l;
    l->active = true;
    l->starved = false;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        adieu__format_addr((struct sockaddr *)&ss, l->addr, sizeof(l->addr));
    return 0;
}

static void on_listener_closed(uv_handle_t *handle)
{
    adieu_listener_t *l = handle->data;
    l->closing = false;
    adieu__server_check_done(l->server);
}

void adieu__listener_close(adieu_listener_t *l)
{
    if (!l->active)
        return;
    l->active = false;
    l->closing = true;
    /* NOTE: uv_close() takes the descriptor out of epoll before it returns, so it can be
     * closed now, before another descriptor could reuse its number. Closing it at once (not
     * in the close callback) makes new connections be refused from this moment, instead of
     * completing into the backlog and then being reset. */
    uv_close((uv_handle_t *)&l->poll, on_listener_closed);
    close(l->fd);
    l->fd = -1;
}

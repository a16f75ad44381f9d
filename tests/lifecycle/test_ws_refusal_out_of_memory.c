/* SPDX-License-Identifier: MIT */
/*
 * Over max_connections, a connection on the WebSocket listener is answered 503 and closed
 * too_many_connections (SPEC section 4). When that 503 cannot be queued (out of memory),
 * it was not given, and the close must say so: server_error, never too_many_connections
 * with a silent FIN that claims the refusal was made (the rule of every other HTTP answer).
 *
 * One framed connection holds the only slot (max_connections 1); it has written nothing, so
 * the server has no spare output storage yet. Once it is open the allocator is set to fail
 * the second adieu allocation from then on (the first is the connection object, the second
 * the output buffer for the 503), and a first WebSocket-port client gets nothing but the
 * end; a second one, with the allocator back to normal, gets the 503 and its end.
 */
#include <stdlib.h>
#include <string.h>

#include "adieu/alloc.h"
#include "harness.h"

static lc_server_t S;
static lc_client_t holder;  /* framed, holds the slot */
static lc_client_t refused; /* WebSocket port, 503 */
static lc_client_t starved; /* WebSocket port, the 503 cannot be queued */

static bool armed;
static unsigned long since_armed;
static unsigned long failed;

static bool fail_now(void)
{
    if (!armed)
        return false;
    if (++since_armed != 2)
        return false;
    failed++;
    return true;
}

static void *t_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

static void *t_calloc(size_t n, size_t m)
{
    return fail_now() ? NULL : calloc(n, m);
}

static void *t_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

static char refused_bytes[512];
static size_t refused_len;
static size_t starved_len;

static void refused_data(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    size_t room = sizeof(refused_bytes) - 1 - refused_len;
    size_t n = len < room ? len : room;
    memcpy(refused_bytes + refused_len, data, n);
    refused_len += n;
}

static void starved_data(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    starved_len += len;
}

static void refused_end(lc_client_t *c);
static void connect_ws_client(lc_client_t *c,
                              void (*on_data)(lc_client_t *, const uint8_t *, size_t),
                              void (*on_end)(lc_client_t *));

static void starved_end(lc_client_t *c)
{
    (void)c;
    armed = false;
    connect_ws_client(&refused, refused_data, refused_end);
}

static void connect_ws_client(lc_client_t *c,
                              void (*on_data)(lc_client_t *, const uint8_t *, size_t),
                              void (*on_end)(lc_client_t *))
{
    lc_client_init(&S, c);
    c->port = S.ws_port;
    c->on_data = on_data;
    c->on_end = on_end;
    lc_client_connect(c);
}

static void refused_end(lc_client_t *c)
{
    (void)c;
    lc_client_shutdown(&holder);
}

static void holder_open(lc_conn_t *c)
{
    (void)c;
    armed = true;
    since_armed = 0;
    connect_ws_client(&starved, starved_data, starved_end);
}

int main(void)
{
    CHECK_EQ(adieu_replace_allocator(t_malloc, t_realloc, t_calloc, free), 0);
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.max_connections = 1;
    static const lc_hooks_t hooks = {.on_open = holder_open};
    lc_start(&S, &cfg, &hooks);
    CHECK_EQ(lc_listen_ws(&S), 0);
    /* One connection reaches the application; three client handles close. */
    lc_expect(&S, 1 + 3);

    lc_client_init(&S, &holder);
    lc_client_connect(&holder);
    lc_run(&S);

    CHECK(strncmp(refused_bytes, "HTTP/1.1 503 ", 13) == 0);
    CHECK(strstr(refused_bytes, "\r\nConnection: close\r\n") != NULL);
    CHECK(starved.ended);
    CHECK_EQ(starved_len, 0);
    CHECK_EQ(failed, 1);
    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.connections, 3);
    CHECK_EQ(st.closed[ADIEU_WEBSOCKET][ADIEU_REASON_TOO_MANY_CONNECTIONS], 1);
    CHECK_EQ(st.closed[ADIEU_WEBSOCKET][ADIEU_REASON_SERVER_ERROR], 1);
    lc_conn_t *h = lc_conn_of(&S, &holder);
    if (CHECK(h != NULL))
        lc_check_conn(h, ADIEU_REASON_PEER_EOF, 0);
    lc_finish(&S);
    return check_done();
}

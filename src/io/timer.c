/* SPDX-License-Identifier: MIT */
/*
 * Connection timers: one binary min-heap of connections ordered by the time their timer
 * fires, under one libuv timer armed for the earliest. A connection has at most one timer
 * (handshake, idle or close bound, see adieu_conn_s), so the heap holds connections
 * themselves and a connection knows its slot: starting, moving and stopping a timer are
 * O(log n) with no allocation, and the heap's room for every connection is reserved when it
 * is accepted. Timers fire in order of due time, each from the loop's timer phase as a
 * uv_timer_t of its own would.
 */
#include <assert.h>

#include "io/internal.h"
#include "util/alloc.h"

static void on_tick(uv_timer_t *tick);

void adieu__timers_init(adieu_server_t *server)
{
    uv_timer_init(server->loop, &server->tick);
    server->tick.data = server;
}

int adieu__timers_reserve(adieu_server_t *server, uint32_t n)
{
    if (n <= server->timers_cap)
        return 0;
    if (n > UINT32_MAX / 2)
        return ADIEU_ENOMEM;
    uint32_t cap = server->timers_cap ? server->timers_cap : 64;
    while (cap < n)
        cap *= 2;
    adieu_conn_t **t = adieu__realloc(server->timers, (size_t)cap * sizeof(*t));
    if (t == NULL)
        return ADIEU_ENOMEM;
    server->timers = t;
    server->timers_cap = cap;
    return 0;
}

void adieu__timers_free(adieu_server_t *server)
{
    assert(server->ntimers == 0);
    adieu__free(server->timers);
    server->timers = NULL;
    server->timers_cap = 0;
}

/* Due first; among timers due at the same time, the one started first, as libuv orders its
 * own timers: several connections found idle in one loop turn are re-armed, and then close,
 * in the order they fell silent. (The counter wraps; a wrong order then only swaps timers
 * due at the same millisecond.) */
static bool earlier(const adieu_conn_t *a, const adieu_conn_t *b)
{
    return a->timer_due < b->timer_due ||
           (a->timer_due == b->timer_due && (int32_t)(a->timer_seq - b->timer_seq) < 0);
}

static void place(adieu_server_t *server, uint32_t i, adieu_conn_t *conn)
{
    server->timers[i] = conn;
    conn->timer_slot = i + 1;
}

static void sift_up(adieu_server_t *server, uint32_t i)
{
    adieu_conn_t *conn = server->timers[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!earlier(conn, server->timers[parent]))
            break;
        place(server, i, server->timers[parent]);
        i = parent;
    }
    place(server, i, conn);
}

static void sift_down(adieu_server_t *server, uint32_t i)
{
    adieu_conn_t *conn = server->timers[i];
    uint32_t n = server->ntimers;
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && earlier(server->timers[child + 1], server->timers[child]))
            child++;
        if (!earlier(server->timers[child], conn))
            break;
        place(server, i, server->timers[child]);
        i = child;
    }
    place(server, i, conn);
}

/* Keeps the libuv timer armed for the earliest due time, and stopped when nothing is due:
 * an armed timer keeps the loop alive, as a connection's own timer did. */
static void reschedule(adieu_server_t *server)
{
    if (server->ntimers == 0) {
        uv_timer_stop(&server->tick);
        return;
    }
    uint64_t due = server->timers[0]->timer_due;
    uint64_t now = uv_now(server->loop);
    if (uv_is_active((uv_handle_t *)&server->tick) &&
        uv_timer_get_due_in(&server->tick) + now == due)
        return;
    uv_timer_start(&server->tick, on_tick, due > now ? due - now : 0, 0);
}

static void remove_slot(adieu_server_t *server, uint32_t i)
{
    adieu_conn_t *conn = server->timers[i];
    conn->timer_slot = 0;
    uint32_t last = --server->ntimers;
    if (i == last)
        return;
    adieu_conn_t *moved = server->timers[last];
    place(server, i, moved);
    if (i > 0 && earlier(moved, server->timers[(i - 1) / 2]))
        sift_up(server, i);
    else
        sift_down(server, i);
}

void adieu__timer_start(adieu_conn_t *conn, uint64_t ms)
{
    adieu_server_t *server = conn->server;
    conn->timer_due = uv_now(server->loop) + ms;
    conn->timer_seq = server->timer_seq++;
    if (conn->timer_slot == 0) {
        /* Room was reserved at accept for every connection. */
        assert(server->ntimers < server->timers_cap);
        uint32_t i = server->ntimers++;
        place(server, i, conn);
        sift_up(server, i);
    } else {
        uint32_t i = conn->timer_slot - 1;
        if (i > 0 && earlier(conn, server->timers[(i - 1) / 2]))
            sift_up(server, i);
        else
            sift_down(server, i);
    }
    reschedule(server);
}

void adieu__timer_stop(adieu_conn_t *conn)
{
    if (conn->timer_slot == 0)
        return;
    adieu_server_t *server = conn->server;
    remove_slot(server, conn->timer_slot - 1);
    reschedule(server);
}

static void on_tick(uv_timer_t *tick)
{
    adieu_server_t *server = tick->data;
    uint64_t now = uv_now(server->loop);
    /* NOTE: bounded by the timers due when the tick began, so that one re-armed for 0 ms
     * fires on the next loop turn, as libuv's own timers do, instead of spinning here. */
    uint32_t budget = server->ntimers;
    while (budget-- > 0 && server->ntimers > 0 && server->timers[0]->timer_due <= now) {
        adieu_conn_t *conn = server->timers[0];
        remove_slot(server, 0);
        /* The callback may start, stop or finish any connection's timer, or free this one
         * (once its handle has closed, which is never within this call). */
        adieu__conn_on_timer(conn);
    }
    reschedule(server);
}

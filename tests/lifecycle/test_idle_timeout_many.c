/* SPDX-License-Identifier: MIT */
/*
 * Idle timeouts of many connections at once (the server keeps every connection's timer in
 * one heap, src/io/timer.c): each connection closes idle_timeout after its own last
 * activity, not after its accept, whatever the others do. The clients connect 5 ms apart
 * and each sends one message, the later it connected the sooner: the last to connect is the
 * first to fall silent, so a timer queue that kept accept order would close them late or in
 * the wrong order.
 */
#include "harness.h"

#define N 12
#define IDLE_MS 150
#define STAGGER_MS 5
/* Slack for a loaded machine (valgrind in CI): the bound that must never be broken is the
 * lower one, no close before the timeout. */
#define LATE_MS 500

static lc_server_t S;
static lc_client_t clients[N];
static uint64_t sent_at[N];
/* When the server delivered the message: the loop time its activity was recorded at. */
static uint64_t got_at[N];
static int order[N]; /* client index by close order */
static int nclosed;

static void send_one(void *arg)
{
    lc_client_t *c = arg;
    int i = (int)(c - clients);
    sent_at[i] = lc_now(&S);
    lc_client_send(c, "last", 4);
}

static void connected(lc_client_t *c, int status)
{
    if (!CHECK_EQ(status, 0))
        return;
    int i = (int)(c - clients);
    /* Sends (N - 1 - i) x 10 ms after its connect, within the timeout: silent from
     * (2 (N - 1) - i) x 5 ms after the first connect on, in reverse accept order. */
    lc_after(&S, (uint64_t)(2 * STAGGER_MS * (N - 1 - i)), send_one, c);
}

static void connect_next(void *arg)
{
    (void)arg;
    static int next;
    lc_client_t *c = &clients[next];
    lc_client_init(&S, c);
    c->on_connect = connected;
    lc_client_connect(c);
    if (++next < N)
        lc_after(&S, STAGGER_MS, connect_next, NULL);
}

static int client_of(const lc_conn_t *rec)
{
    for (int i = 0; i < N; i++)
        if (lc_conn_of(&S, &clients[i]) == rec)
            return i;
    return -1;
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    int i = client_of(c);
    if (CHECK(i >= 0))
        got_at[i] = lc_now(&S);
    CHECK_EQ(lc_send(c, msg->data, msg->len), 0);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    int i = client_of(c);
    if (!CHECK(i >= 0) || !CHECK_EQ(info->reason, ADIEU_REASON_IDLE_TIMEOUT))
        return;
    CHECK(sent_at[i] != 0 && got_at[i] >= sent_at[i]);
    uint64_t quiet = c->closed_at - got_at[i];
    CHECK(quiet >= IDLE_MS);
    CHECK(quiet <= IDLE_MS + LATE_MS);
    order[nclosed++] = i;
}

int main(void)
{
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.idle_timeout_ms = IDLE_MS;
    static const lc_hooks_t hooks = {.on_message = on_message, .on_close = on_close};
    lc_start(&S, &cfg, &hooks);
    /* Each connection: its on_close and its client handle's close. */
    lc_expect(&S, 2 * N);
    connect_next(NULL);
    lc_run(&S);

    CHECK_EQ(nclosed, N);
    /* Last activity 5 ms apart, in reverse accept order: the closes follow the server's
     * record of it exactly. Only connections whose input was read in the same loop turn
     * (the same loop time, as on a loaded machine) may close in either order. */
    for (int a = 0; a < nclosed; a++)
        for (int b = a + 1; b < nclosed; b++)
            if (got_at[order[b]] < got_at[order[a]])
                CHECK(!"a connection silent for longer closed later");
    for (int i = 0; i < N; i++) {
        lc_conn_t *rec = lc_conn_of(&S, &clients[i]);
        if (CHECK(rec != NULL))
            lc_check_conn(rec, ADIEU_REASON_IDLE_TIMEOUT, 0);
        CHECK(clients[i].eof);
        CHECK_EQ(clients[i].msgs_at_end, 1);
    }
    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_IDLE_TIMEOUT], N);
    lc_finish(&S);
    return check_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * Idle timeout after a loop stall (SPEC section 4, "Idle timeout": any received byte is
 * activity; only a connection silent for the timeout is closed). A handler on another
 * connection blocks the loop for a while; meanwhile the client sends, long within the
 * timeout, and the loop resumes just past the moment the connection would have been idle
 * had it not sent. The client's bytes are waiting: the connection must stay open, answer,
 * and end with the client's own half-close (peer_eof), not with idle_timeout.
 *
 * libuv runs due timers before it polls for input in each loop turn, so an idle timer that
 * judges by the time of the last read alone fires before the waiting bytes are read.
 */
#include <string.h>
#include <time.h>

#include "harness.h"

/* Wide margins, so that a slow run (valgrind on a loaded machine) cannot make either client
 * really silent for the timeout. */
#define IDLE_MS 1000
#define SLOW_AFTER_MS 600 /* the helper connects and sends, after the first answer */
#define STALL_PAST_MS 20  /* the stall ends this long after the active one's idle deadline */

static lc_server_t S;
static lc_client_t active;     /* pings, and pings again during the stall */
static lc_client_t helper;     /* connects late, sends the request whose handler blocks */
static uint64_t first_read_hr; /* uv_hrtime() when the server got the first ping */
static uint64_t second_sent_hr;
static uint64_t stall_end_hr;

/* The active client's second ping leaves during the blocking handler, so it is not among
 * the input the loop already polled; the handler then blocks until the first ping is
 * IDLE_MS + STALL_PAST_MS old. */
static void block(void)
{
    lc_client_send(&active, "ping", 4);
    second_sent_hr = uv_hrtime();
    uint64_t until = first_read_hr + (uint64_t)(IDLE_MS + STALL_PAST_MS) * 1000000u;
    while (uv_hrtime() < until) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
    stall_end_hr = uv_hrtime();
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    CHECK_EQ(lc_send(c, msg->data, msg->len), 0);
    if (c == lc_conn_of(&S, &helper))
        block();
    else if (c->messages == 1)
        first_read_hr = uv_hrtime();
}

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, c == &active ? "ping" : "slow", 4);
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len);

static void setup(lc_client_t *c)
{
    lc_client_init(&S, c);
    c->on_connect = client_connected;
    c->on_message = client_message;
    lc_client_connect(c);
}

static void connect_helper(void *arg)
{
    (void)arg;
    setup(&helper);
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)data;
    CHECK_EQ(len, 4);
    if (c == &active && c->msgs == 1)
        lc_after(&S, SLOW_AFTER_MS, connect_helper, NULL);
    else
        lc_client_shutdown(c);
}

int main(void)
{
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.idle_timeout_ms = IDLE_MS;
    static const lc_hooks_t hooks = {.on_message = on_message};
    lc_start(&S, &cfg, &hooks);
    lc_expect(&S, 4);
    setup(&active);

    lc_run(&S);

    /* The scenario held: when the loop resumed, the first ping was older than the timeout
     * and the second one far younger. */
    CHECK(stall_end_hr - first_read_hr >= (uint64_t)IDLE_MS * 1000000u);
    CHECK(stall_end_hr - second_sent_hr < (uint64_t)IDLE_MS * 1000000u / 2);
    CHECK_EQ(S.nconns, 2);
    lc_conn_t *a = lc_conn_of(&S, &active);
    lc_conn_t *h = lc_conn_of(&S, &helper);
    if (CHECK(a != NULL && h != NULL)) {
        lc_check_conn(a, ADIEU_REASON_PEER_EOF, 0);
        CHECK_EQ(a->messages, 2);
        lc_check_conn(h, ADIEU_REASON_PEER_EOF, 0);
    }
    CHECK_EQ(active.msgs_at_end, 2);

    lc_finish(&S);
    return check_done();
}

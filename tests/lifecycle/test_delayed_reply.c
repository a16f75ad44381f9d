/* SPDX-License-Identifier: MIT */
/*
 * Delayed reply (SPEC C3): a handler keeps the connection past on_message and answers 50 ms
 * later from a timer, first with a plain reference (adieu_conn_ref), then with a hold
 * (adieu_conn_hold) while the client has already half-closed: the hold makes the peer_eof
 * close wait, so the late answer still arrives before the server's FIN.
 */
#include <string.h>

#include "harness.h"

#define DELAY_MS 50

static lc_server_t S;
static lc_client_t client;
static uint64_t sent_at[2];
static int answers_sent;

typedef struct {
    lc_conn_t *rec;
    adieu_conn_t *conn;
    bool hold;
    char answer[16];
} later_t;

static later_t laters[2];

static void answer_later(void *arg)
{
    later_t *l = arg;
    /* The connection has not closed yet: the peer's FIN waits for the hold. */
    CHECK(!l->rec->closed);
    lc_api_begin(&S);
    int rc = adieu_conn_send(l->conn, ADIEU_BINARY, l->answer, strlen(l->answer));
    if (l->hold)
        adieu_conn_release(l->conn);
    else
        adieu_conn_unref(l->conn);
    lc_api_end(&S);
    CHECK_EQ(rc, 0);
    answers_sent++;
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    int i = c->messages - 1;
    if (!CHECK(i >= 0 && i < 2))
        return;
    later_t *l = &laters[i];
    l->rec = c;
    l->hold = i == 1;
    snprintf(l->answer, sizeof(l->answer), "%.*s/answer", (int)msg->len, (const char *)msg->data);
    lc_api_begin(&S);
    l->conn = l->hold ? adieu_conn_hold(c->conn) : adieu_conn_ref(c->conn);
    lc_api_end(&S);
    CHECK(l->conn == c->conn);
    lc_after(&S, DELAY_MS, answer_later, l);
}

static void client_connected(lc_client_t *c, int status)
{
    if (!CHECK_EQ(status, 0))
        return;
    sent_at[0] = lc_now(&S);
    lc_client_send(c, "one", 3);
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    size_t k = c->msgs - 1;
    CHECK(lc_now(&S) - sent_at[k] >= DELAY_MS);
    if (k == 0) {
        CHECK(len == 10 && memcmp(data, "one/answer", 10) == 0);
        /* The second request, then FIN at once: the answer is owed across the EOF. */
        sent_at[1] = lc_now(&S);
        lc_client_send(c, "two", 3);
        lc_client_shutdown(c);
    } else {
        CHECK(len == 10 && memcmp(data, "two/answer", 10) == 0);
    }
}

int main(void)
{
    static const lc_hooks_t hooks = {.on_message = on_message};
    lc_start(&S, NULL, &hooks);
    lc_expect(&S, 2);

    lc_client_init(&S, &client);
    client.on_connect = client_connected;
    client.on_message = client_message;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    CHECK_EQ(S.conns[0].messages, 2);
    lc_check_conn(&S.conns[0], ADIEU_REASON_PEER_EOF, 0);
    CHECK_EQ(answers_sent, 2);
    CHECK(client.eof);
    CHECK_EQ(client.msgs_at_end, 2);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.messages_out[ADIEU_FRAMED], 2);

    lc_finish(&S);
    return check_done();
}

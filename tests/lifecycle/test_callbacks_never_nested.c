/* SPDX-License-Identifier: MIT */
/*
 * Callbacks are never nested (header: "No public call invokes a user callback before it
 * returns"; STYLE 2.2, 2.5): adieu_conn_close, adieu_server_shutdown and adieu_server_force
 * called from inside on_message return before any callback runs, for the calling
 * connection and for a bystander connection on the same server; what they start happens
 * on later loop turns. The harness also fails any callback that starts while another one,
 * or one of these calls, is on the stack.
 */
#include <string.h>

#include "harness.h"

static lc_server_t S;
static lc_client_t bystander;
static lc_client_t caller;
static const char *command; /* what caller sends: "close", "shutdown" or "force" */
static bool called;

/* Every callback the harness has recorded so far, clean-ups included. */
static int events(void)
{
    int n = S.done_calls;
    for (int i = 0; i < S.nconns; i++) {
        const lc_conn_t *c = &S.conns[i];
        n += c->opens + c->messages + c->shutdowns + c->drains + c->closes + c->defers_ran;
    }
    return n;
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    if (msg->len != strlen(command) || memcmp(msg->data, command, msg->len) != 0) {
        CHECK_EQ(lc_send(c, msg->data, msg->len), 0);
        return;
    }
    CHECK_EQ(lc_send(c, "ack", 3), 0);
    int before = events();
    int rc;
    if (strcmp(command, "close") == 0)
        rc = lc_close(c);
    else if (strcmp(command, "shutdown") == 0)
        rc = lc_shutdown(&S, 5000);
    else
        rc = lc_force(&S);
    CHECK_EQ(rc, 0);
    CHECK_EQ(events(), before);
    CHECK_EQ(c->closes, 0);
    called = true;
}

static void caller_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, command, strlen(command));
}

/* After a local close the bystander is still open: it half-closes once the caller's
 * connection is gone. */
static void caller_closed(lc_client_t *c)
{
    (void)c;
    if (strcmp(command, "close") == 0)
        lc_client_shutdown(&bystander);
}

/* The bystander is open and answered: now the caller comes. */
static void bystander_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    CHECK_EQ(len, 2);
    lc_client_init(&S, &caller);
    caller.on_connect = caller_connected;
    caller.on_closed = caller_closed;
    lc_client_connect(&caller);
}

static void bystander_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "hi", 2);
}

static void run(const char *cmd)
{
    command = cmd;
    called = false;
    lc_start(&S, NULL, NULL);
    S.hooks.on_message = on_message;
    if (strcmp(cmd, "close") == 0)
        lc_expect(&S, 4);
    lc_client_init(&S, &bystander);
    bystander.on_connect = bystander_connected;
    bystander.on_message = bystander_message;
    lc_client_connect(&bystander);
    lc_run(&S);
}

static void check_both(adieu_reason_t caller_reason, adieu_reason_t bystander_reason)
{
    CHECK(called);
    CHECK_EQ(S.nconns, 2);
    lc_conn_t *b = lc_conn_of(&S, &bystander);
    lc_conn_t *c = lc_conn_of(&S, &caller);
    if (CHECK(b != NULL && c != NULL)) {
        lc_check_conn(c, caller_reason, LC_ANY_ERR);
        lc_check_conn(b, bystander_reason, 0);
    }
}

static void from_conn_close(void)
{
    run("close");
    check_both(ADIEU_REASON_LOCAL, ADIEU_REASON_PEER_EOF);
    CHECK_EQ(caller.msgs_at_end, 1);
    CHECK_EQ(S.done_calls, 1);
    lc_finish(&S);
}

static void from_server_shutdown(void)
{
    run("shutdown");
    check_both(ADIEU_REASON_SHUTDOWN, ADIEU_REASON_SHUTDOWN);
    CHECK_EQ(S.conns[0].shutdowns + S.conns[1].shutdowns, 2);
    CHECK_EQ(caller.msgs_at_end, 1);
    CHECK_EQ(S.done_calls, 1);
    lc_finish(&S);
}

static void from_server_force(void)
{
    run("force");
    check_both(ADIEU_REASON_FORCED, ADIEU_REASON_FORCED);
    CHECK_EQ(S.conns[0].shutdowns + S.conns[1].shutdowns, 0);
    CHECK(adieu_server_done(S.server));
    lc_finish(&S);
}

int main(void)
{
    CHECK_RUN(from_conn_close);
    CHECK_RUN(from_server_shutdown);
    CHECK_RUN(from_server_force);
    return check_done();
}

/* SPDX-License-Identifier: MIT */
/*
 * The exit stack: each connection acquires three resources and registers their release
 * with adieu_conn_defer(). adieu runs the clean-ups after on_close, last acquired first, on
 * every path: peer EOF, reset, SIGKILLed client, shutdown, deadline and forced stop. At exit
 * the program prints `acquired=N released=N`, and the two are always equal.
 *
 *   build/examples/exit_stack [HOST:PORT] [DRAIN_SECONDS]   (default 127.0.0.1:10997, 5)
 */
#include <stdio.h>
#include <stdlib.h>

#include "adieu/adieu.h"

typedef struct {
    const char *kind;
    int order; /* position in the stack: releases must come 2, 1, 0 */
} resource_t;

static unsigned long acquired, released, out_of_order;

static void release(void *arg)
{
    resource_t *r = arg;
    static int expect = -1;
    /* The last resource of a connection is released first; the first one ends the stack. */
    if (expect != -1 && r->order != expect)
        out_of_order++;
    expect = r->order == 0 ? -1 : r->order - 1;
    released++;
    free(r);
}

static void on_open(adieu_conn_t *conn, void *user_data)
{
    (void)user_data;
    static const char *const kinds[3] = {"session", "buffer", "lock"};
    for (int i = 0; i < 3; i++) {
        resource_t *r = malloc(sizeof(*r));
        if (r == NULL)
            return;
        *r = (resource_t){kinds[i], i};
        acquired++;
        if (adieu_conn_defer(conn, release, r) != 0)
            release(r); /* not registered: give it back now */
    }
}

static void on_message(adieu_conn_t *conn, const adieu_msg_t *msg, void *user_data)
{
    (void)user_data;
    adieu_conn_send(conn, msg->opcode, msg->data, msg->len);
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:10997";
    uint64_t drain_ms = argc > 2 ? (uint64_t)(atof(argv[2]) * 1000) : 5000;
    uv_loop_t loop;
    uv_loop_init(&loop);
    adieu_server_t *server;
    if (adieu_server_new(&loop, NULL, &server) != 0)
        return 1;
    const adieu_handler_t handler = {.on_open = on_open, .on_message = on_message};
    if (adieu_server_listen(server, ADIEU_FRAMED, addr, &handler, NULL) != 0) {
        fprintf(stderr, "exit_stack: cannot listen on %s\n", addr);
        adieu_server_shutdown(server, 0, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        adieu_server_free(server);
        uv_loop_close(&loop);
        return 1;
    }
    printf("exit_stack listening on %s\n", addr);
    fflush(stdout);
    int status = adieu_server_run(server, drain_ms);
    adieu_server_free(server);
    int loop_rc = uv_loop_close(&loop);
    printf("acquired=%lu released=%lu out_of_order=%lu loop_close=%d\n", acquired, released,
           out_of_order, loop_rc);
    return status;
}

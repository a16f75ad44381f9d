/* SPDX-License-Identifier: MIT */
/*
 * A WebSocket logging server: one line per connect, per received message and per
 * disconnect, for clean and unclean exits alike (a client that vanishes is an ordinary
 * close with a reason, never a skipped line). Ctrl+C closes every client with 1001.
 *
 *   build/examples/ws_logger [HOST:PORT]      (default 127.0.0.1:9001)
 */
#include <stdio.h>

#include "adieu/adieu.h"

static void on_open(adieu_conn_t *conn, void *user_data)
{
    (void)user_data;
    printf("connect %s\n", adieu_conn_peer(conn));
    fflush(stdout);
}

static void on_message(adieu_conn_t *conn, const adieu_msg_t *msg, void *user_data)
{
    (void)user_data;
    printf("message %s %s %.*s\n", adieu_conn_peer(conn),
           msg->opcode == ADIEU_TEXT ? "text" : "binary", (int)msg->len, (const char *)msg->data);
    fflush(stdout);
}

static void on_close(adieu_conn_t *conn, const adieu_close_info_t *info, void *user_data)
{
    (void)user_data;
    printf("disconnect %s reason=%s code=%d\n", adieu_conn_peer(conn),
           adieu_reason_name(info->reason), info->ws_code);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:9001";
    uv_loop_t loop;
    uv_loop_init(&loop);
    adieu_server_t *server;
    if (adieu_server_new(&loop, NULL, &server) != 0)
        return 1;
    adieu_server_catch_signals(server, 5000);
    const adieu_handler_t handler = {
        .on_open = on_open, .on_message = on_message, .on_close = on_close};
    int rc = adieu_server_listen(server, ADIEU_WEBSOCKET, addr, &handler, NULL);
    if (rc == 0) {
        printf("ws_logger listening on %s\n", addr);
        fflush(stdout);
    } else {
        fprintf(stderr, "ws_logger: cannot listen on %s: %s\n", addr, adieu_strerror(rc));
        adieu_server_shutdown(server, 0, NULL, NULL);
    }
    int status = adieu_server_run(server, 5000);
    adieu_server_free(server);
    uv_loop_close(&loop);
    return rc == 0 ? status : 1;
}

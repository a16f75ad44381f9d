/* SPDX-License-Identifier: MIT */
/*
 * The answer server: text "close" makes the server close the connection (1000); any other
 * text T is answered "T/answer"; binary is echoed. Replies are built in one reused buffer.
 *
 *   build/examples/ws_answer [HOST:PORT]      (default 127.0.0.1:9002)
 */
#include <stdio.h>
#include <string.h>

#include "adieu/adieu.h"

static char reply[1 << 16];

static void on_message(adieu_conn_t *conn, const adieu_msg_t *msg, void *user_data)
{
    (void)user_data;
    static const char suffix[] = "/answer";
    if (msg->opcode == ADIEU_BINARY) {
        adieu_conn_send(conn, ADIEU_BINARY, msg->data, msg->len);
    } else if (msg->len == 5 && memcmp(msg->data, "close", 5) == 0) {
        adieu_conn_close_code(conn, 1000, "bye");
    } else if (msg->len + sizeof(suffix) <= sizeof(reply)) {
        memcpy(reply, msg->data, msg->len);
        memcpy(reply + msg->len, suffix, sizeof(suffix) - 1);
        adieu_conn_send(conn, ADIEU_TEXT, reply, msg->len + sizeof(suffix) - 1);
    } else {
        adieu_conn_close_code(conn, 1009, "too long to answer");
    }
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:9002";
    uv_loop_t loop;
    uv_loop_init(&loop);
    adieu_server_t *server;
    if (adieu_server_new(&loop, NULL, &server) != 0)
        return 1;
    adieu_server_catch_signals(server, 5000);
    const adieu_handler_t handler = {.on_message = on_message};
    int rc = adieu_server_listen(server, ADIEU_WEBSOCKET, addr, &handler, NULL);
    if (rc == 0) {
        printf("ws_answer listening on %s\n", addr);
        fflush(stdout);
    } else {
        fprintf(stderr, "ws_answer: cannot listen on %s: %s\n", addr, adieu_strerror(rc));
        adieu_server_shutdown(server, 0, NULL, NULL);
    }
    int status = adieu_server_run(server, 5000);
    adieu_server_free(server);
    uv_loop_close(&loop);
    return rc == 0 ? status : 1;
}

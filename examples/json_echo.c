/* SPDX-License-Identifier: MIT */
/*
 * A JSON echo server on the public API: each framed message is parsed with jansson and sent
 * back compactly; invalid JSON gets an error object and the connection stays open. Ctrl+C
 * drains: every reply owed is delivered, then FIN, then exit 0.
 *
 *   build/examples/json_echo [HOST:PORT]      (default 127.0.0.1:10998)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "adieu/adieu.h"

static void on_message(adieu_conn_t *conn, const adieu_msg_t *msg, void *user_data)
{
    (void)user_data;
    json_error_t err;
    json_t *value = json_loadb((const char *)msg->data, msg->len, JSON_DECODE_ANY, &err);
    char *reply = value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (reply == NULL) {
        json_t *e = json_pack("{s:s, s:s, s:i}", "error", "invalid json", "detail", err.text,
                              "offset", err.position);
        reply = json_dumps(e, JSON_COMPACT);
        json_decref(e);
    }
    adieu_conn_send(conn, ADIEU_BINARY, reply, strlen(reply));
    free(reply);
    json_decref(value);
}

static void on_close(adieu_conn_t *conn, const adieu_close_info_t *info, void *user_data)
{
    (void)user_data;
    printf("closed %s: %s\n", adieu_conn_peer(conn), adieu_reason_name(info->reason));
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:10998";
    uv_loop_t loop;
    uv_loop_init(&loop);
    adieu_server_t *server;
    if (adieu_server_new(&loop, NULL, &server) != 0)
        return 1;
    const adieu_handler_t handler = {.on_message = on_message, .on_close = on_close};
    int rc = adieu_server_listen(server, ADIEU_FRAMED, addr, &handler, NULL);
    if (rc != 0) {
        fprintf(stderr, "json_echo: cannot listen on %s: %s\n", addr, adieu_strerror(rc));
        adieu_server_shutdown(server, 0, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        adieu_server_free(server);
        uv_loop_close(&loop);
        return 1;
    }
    printf("json_echo listening on %s\n", addr);
    fflush(stdout);
    int status = adieu_server_run(server, 5000);
    adieu_server_free(server);
    uv_loop_close(&loop);
    return status;
}

/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "apps/apps.h"
#include "util/json.h"
#include "util/log.h"

static void log_message(adieu_conn_t *conn, const adieu_msg_t *msg)
{
    if (adieu__log_enabled(ADIEU_LOG_DEBUG))
        adieu_log(ADIEU_LOG_DEBUG, "app", "message peer=%s proto=%s len=%zu", adieu_conn_peer(conn),
                  adieu_proto_name(adieu_conn_proto(conn)), msg->len);
}

static void demo_framed(adieu_conn_t *conn, const adieu_msg_t *msg, adieu_app_ctx_t *ctx)
{
    adieu_json_error_t err;
    adieu_buf_reset(&ctx->scratch);
    int rc = adieu_json_minify(msg->data, msg->len, &ctx->scratch, &err);
    if (rc == 0) {
        adieu_conn_send(conn, ADIEU_BINARY, adieu_buf_head(&ctx->scratch),
                        adieu_buf_size(&ctx->scratch));
        return;
    }
    char reply[160];
    int n = snprintf(reply, sizeof(reply),
                     "{\"error\":\"invalid json\",\"detail\":\"%s\",\"offset\":%zu}",
                     rc == ADIEU_EPROTO ? err.detail : adieu_strerror(rc),
                     rc == ADIEU_EPROTO ? err.offset : (size_t)0);
    adieu_conn_send(conn, ADIEU_BINARY, reply, (size_t)n);
}

/* WebSocket: text "close" closes with 1000; other text T gets "T/answer"; binary echoes. */
static void demo_ws(adieu_conn_t *conn, const adieu_msg_t *msg, adieu_app_ctx_t *ctx)
{
    static const char suffix[] = "/answer";
    if (msg->opcode == ADIEU_BINARY) {
        adieu_conn_send(conn, ADIEU_BINARY, msg->data, msg->len);
        return;
    }
    if (msg->len == 5 && memcmp(msg->data, "close", 5) == 0) {
        adieu_conn_close(conn);
        return;
    }
    adieu_buf_reset(&ctx->scratch);
    if (adieu_buf_append(&ctx->scratch, msg->data, msg->len) < 0 ||
        adieu_buf_append(&ctx->scratch, suffix, sizeof(suffix) - 1) < 0)
        return;
    adieu_conn_send(conn, ADIEU_TEXT, adieu_buf_head(&ctx->scratch), adieu_buf_size(&ctx->scratch));
}

static void demo_on_message(adieu_conn_t *conn, const adieu_msg_t *msg, void *user_data)
{
    log_message(conn, msg);
    if (adieu_conn_proto(conn) == ADIEU_WEBSOCKET)
        demo_ws(conn, msg, user_data);
    else
        demo_framed(conn, msg, user_data);
}

static void echo_on_message(adieu_conn_t *conn, const adieu_msg_t *msg, void *user_data)
{
    (void)user_data;
    log_message(conn, msg);
    adieu_conn_send(conn, msg->opcode, msg->data, msg->len);
}

static const adieu_handler_t demo_handler = {.on_message = demo_on_message};
static const adieu_handler_t echo_handler = {.on_message = echo_on_message};

const adieu_handler_t *adieu_app_find(const char *name)
{
    if (strcmp(name, "demo") == 0)
        return &demo_handler;
    if (strcmp(name, "echo") == 0)
        return &echo_handler;
    return NULL;
}

void adieu_app_ctx_free(adieu_app_ctx_t *ctx)
{
    adieu_buf_free(&ctx->scratch);
}

/* SPDX-License-Identifier: MIT */
/*
 * The built-in applications of adieu-server (SPEC section 3):
 *   demo  framed: each payload must be JSON, the reply is the same value minified with every
 *         token kept; invalid JSON gets {"error":"invalid json","detail":...,"offset":N} and
 *         the connection stays open. WebSocket (later): text "close" closes with 1000, other
 *         text T gets "T/answer", binary is echoed.
 *   echo  every message is sent back unchanged.
 */
#ifndef ADIEU_APPS_H
#define ADIEU_APPS_H

#include "adieu/adieu.h"
#include "util/buf.h"

/* Per-server state of a built-in app; pass it as the listener's user_data. */
typedef struct {
    adieu_buf_t scratch; /* reused for every reply: no allocation per message */
} adieu_app_ctx_t;

/* The handler table of the app called name, or NULL if there is none. */
const adieu_handler_t *adieu_app_find(const char *name);

/* Frees what an app context holds. */
void adieu_app_ctx_free(adieu_app_ctx_t *ctx);

#endif /* ADIEU_APPS_H */

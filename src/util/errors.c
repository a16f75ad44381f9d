/* SPDX-License-Identifier: MIT */
/* Names and messages of error codes, close reasons and protocols, from the X-macro tables of
 * include/adieu/adieu.h, and the configuration defaults. */
#include <string.h>

#include "adieu/adieu.h"

const char *adieu_err_name(int err)
{
    switch (err) {
#define ADIEU__ERR_NAME(name, value, msg)                                                          \
    case ADIEU_##name:                                                                             \
        return #name;
        ADIEU_ERRNO_MAP(ADIEU__ERR_NAME)
#undef ADIEU__ERR_NAME
    }
    if (err == 0)
        return "OK";
    /* uv_err_name() allocates for codes it does not know: the _r form never does. NOTE: the
     * buffer makes this not thread-safe for unknown codes, as the header's threading rule
     * already says of every call. */
    static char name[32];
    return uv_err_name_r(err, name, sizeof(name));
}

const char *adieu_strerror(int err)
{
    switch (err) {
#define ADIEU__ERR_MSG(name, value, msg)                                                           \
    case ADIEU_##name:                                                                             \
        return msg;
        ADIEU_ERRNO_MAP(ADIEU__ERR_MSG)
#undef ADIEU__ERR_MSG
    }
    if (err == 0)
        return "success";
    static char msg[80];
    return uv_strerror_r(err, msg, sizeof(msg));
}

const char *adieu_reason_name(adieu_reason_t reason)
{
    switch (reason) {
    case ADIEU_REASON_NONE:
        return "none";
#define ADIEU__REASON_NAME(upper, lower, level)                                                    \
    case ADIEU_REASON_##upper:                                                                     \
        return #lower;
        ADIEU_REASON_MAP(ADIEU__REASON_NAME)
#undef ADIEU__REASON_NAME
    case ADIEU_REASON_COUNT:
        break;
    }
    return "unknown";
}

const char *adieu_proto_name(adieu_proto_t proto)
{
    switch (proto) {
    case ADIEU_FRAMED:
        return "frame";
    case ADIEU_WEBSOCKET:
        return "ws";
    case ADIEU_PROTO_COUNT:
        break;
    }
    return "unknown";
}

void adieu_config_init(adieu_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_message = 16u << 20;
    cfg->prefix_bytes = 2;
    cfg->idle_timeout_ms = 0;
    cfg->keepalive_ms = 60000;
    cfg->handshake_timeout_ms = 10000;
    cfg->max_header = 8192;
    cfg->max_connections = 10000;
    cfg->write_high_watermark = 1u << 20;
    cfg->write_low_watermark = 256u << 10;
    cfg->write_hard_limit = 64u << 20;
    cfg->linger_timeout_ms = 5000;
}

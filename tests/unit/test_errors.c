/* SPDX-License-Identifier: MIT */
/*
 * The name tables (SPEC section 4; STYLE 2.3): the stable close-reason names, which log
 * lines and metric labels use (renaming one is an API break), the error names and
 * messages of every ADIEU_ code, libuv codes passing through unchanged, and the protocol
 * names. The expected strings are written out here, not derived from the X-macros, so a
 * change to a table fails this test.
 */
#include <string.h>

#include "adieu/adieu.h"
#include "unit/check.h"

static void check_str(const char *got, const char *want, const char *what)
{
    if (!CHECK(got != NULL))
        return;
    if (!CHECK(strcmp(got, want) == 0))
        fprintf(stderr, "  %s: \"%s\", expected \"%s\"\n", what, got, want);
}

static void reason_names(void)
{
    static const struct {
        adieu_reason_t reason;
        const char *name;
    } table[] = {
        {ADIEU_REASON_NORMAL, "normal"},
        {ADIEU_REASON_PEER_EOF, "peer_eof"},
        {ADIEU_REASON_PEER_RESET, "peer_reset"},
        {ADIEU_REASON_TRUNCATED, "truncated"},
        {ADIEU_REASON_PROTOCOL_ERROR, "protocol_error"},
        {ADIEU_REASON_INVALID_UTF8, "invalid_utf8"},
        {ADIEU_REASON_TOO_BIG, "too_big"},
        {ADIEU_REASON_BAD_REQUEST, "bad_request"},
        {ADIEU_REASON_HTTP_DONE, "http_done"},
        {ADIEU_REASON_HANDSHAKE_TIMEOUT, "handshake_timeout"},
        {ADIEU_REASON_IDLE_TIMEOUT, "idle_timeout"},
        {ADIEU_REASON_CLOSE_TIMEOUT, "close_timeout"},
        {ADIEU_REASON_LOCAL, "local"},
        {ADIEU_REASON_TOO_MANY_CONNECTIONS, "too_many_connections"},
        {ADIEU_REASON_SHUTDOWN, "shutdown"},
        {ADIEU_REASON_SHUTDOWN_TIMEOUT, "shutdown_timeout"},
        {ADIEU_REASON_FORCED, "forced"},
        {ADIEU_REASON_SERVER_ERROR, "server_error"},
    };
    size_t n = sizeof(table) / sizeof(table[0]);
    /* Every reason of the enum is in the table, once, in SPEC order. */
    CHECK_EQ(ADIEU_REASON_COUNT, n + 1);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(table[i].reason, i + 1);
        check_str(adieu_reason_name(table[i].reason), table[i].name, "reason name");
    }
    check_str(adieu_reason_name(ADIEU_REASON_NONE), "none", "reason name");
    check_str(adieu_reason_name(ADIEU_REASON_COUNT), "unknown", "reason name");
    check_str(adieu_reason_name((adieu_reason_t)-1), "unknown", "reason name");
    check_str(adieu_reason_name((adieu_reason_t)1000), "unknown", "reason name");
}

static void error_names(void)
{
    static const struct {
        int err;
        const char *name;
        const char *message;
    } table[] = {
        {ADIEU_EINVAL, "EINVAL", "invalid argument"},
        {ADIEU_EINVALID_STATE, "EINVALID_STATE", "operation not valid in this state"},
        {ADIEU_ECLOSED, "ECLOSED", "connection is closed"},
        {ADIEU_ECANCELED, "ECANCELED", "operation canceled: the connection closed first"},
        {ADIEU_ETRUNCATED, "ETRUNCATED", "stream ended inside a message"},
        {ADIEU_EPROTO, "EPROTO", "protocol violation"},
        {ADIEU_EUTF8, "EUTF8", "invalid UTF-8"},
        {ADIEU_ETOOBIG, "ETOOBIG", "message too big"},
        {ADIEU_EBUFFULL, "EBUFFULL", "output queue over its hard limit"},
        {ADIEU_ETOOMANY, "ETOOMANY", "too many connections"},
        {ADIEU_ENOMEM, "ENOMEM", "out of memory"},
    };
    size_t n = sizeof(table) / sizeof(table[0]);
    for (size_t i = 0; i < n; i++) {
        check_str(adieu_err_name(table[i].err), table[i].name, "error name");
        check_str(adieu_strerror(table[i].err), table[i].message, "error message");
        /* adieu's own range, grouped by hundreds, from -20000 down (STYLE 2.3). */
        CHECK(table[i].err <= -20000 && table[i].err > -20400);
    }
    /* The table above covers the whole X-macro list. */
    size_t listed = 0;
#define COUNT_ERR(name, value, msg) listed++;
    ADIEU_ERRNO_MAP(COUNT_ERR)
#undef COUNT_ERR
    CHECK_EQ(listed, n);
    /* Values in STYLE's groups: argument/state, protocol, limits, resources. */
    CHECK_EQ(ADIEU_EINVAL, -20000);
    CHECK_EQ(ADIEU_ETRUNCATED, -20100);
    CHECK_EQ(ADIEU_ETOOBIG, -20200);
    CHECK_EQ(ADIEU_ENOMEM, -20300);
    /* The back-pressure result is positive, never confused with an error. */
    CHECK(ADIEU_BACKPRESSURE > 0);
}

static void libuv_codes_pass_through(void)
{
    static const int codes[] = {UV_ECONNRESET, UV_EPIPE, UV_EADDRINUSE, UV_ETIMEDOUT,
                                UV_ECANCELED,  UV_EOF,   UV_EINVAL,     UV_ENOMEM};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        check_str(adieu_err_name(codes[i]), uv_err_name(codes[i]), "libuv error name");
        check_str(adieu_strerror(codes[i]), uv_strerror(codes[i]), "libuv error message");
    }
    check_str(adieu_err_name(UV_ECONNRESET), "ECONNRESET", "libuv error name");
    check_str(adieu_err_name(UV_EPIPE), "EPIPE", "libuv error name");
}

static void proto_names(void)
{
    check_str(adieu_proto_name(ADIEU_FRAMED), "frame", "protocol name");
    check_str(adieu_proto_name(ADIEU_WEBSOCKET), "ws", "protocol name");
    check_str(adieu_proto_name(ADIEU_PROTO_COUNT), "unknown", "protocol name");
}

int main(void)
{
    CHECK_RUN(reason_names);
    CHECK_RUN(error_names);
    CHECK_RUN(libuv_codes_pass_through);
    CHECK_RUN(proto_names);
    return check_done();
}

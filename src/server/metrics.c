/* SPDX-License-Identifier: MIT */
/* The Prometheus text exposition (format 0.0.4) of a server's counters (SPEC section 4). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "server/metrics.h"

static int put(adieu_buf_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int put(adieu_buf_t *out, const char *fmt, ...)
{
    for (size_t room = 256;; room *= 2) {
        uint8_t *dst = adieu_buf_reserve(out, room);
        if (dst == NULL)
            return ADIEU_ENOMEM;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf((char *)dst, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return ADIEU_EINVAL;
        if ((size_t)n < room) {
            adieu_buf_commit(out, (size_t)n);
            return 0;
        }
    }
}

static int family(adieu_buf_t *out, const char *name, const char *type, const char *help)
{
    return put(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample per protocol of a per-protocol array. */
static int per_proto(adieu_buf_t *out, const char *name, const char *type, const char *help,
                     const uint64_t v[ADIEU_PROTO_COUNT])
{
    int rc = family(out, name, type, help);
    for (int p = 0; p < ADIEU_PROTO_COUNT && rc == 0; p++)
        rc = put(out, "%s{proto=\"%s\"} %" PRIu64 "\n", name, adieu_proto_name((adieu_proto_t)p),
                 v[p]);
    return rc;
}

int adieu__metrics_format(const adieu_stats_t *s, adieu_buf_t *out)
{
    int rc = per_proto(out, "adieu_connections_open", "gauge", "Connections open now.", s->open);
    if (rc == 0)
        rc = per_proto(out, "adieu_connections_opened_total", "counter",
                       "TCP connections accepted.", s->opened);
    if (rc == 0)
        rc = family(out, "adieu_connections_closed_total", "counter",
                    "Connections closed, by reason.");
    for (int p = 0; p < ADIEU_PROTO_COUNT && rc == 0; p++)
        for (int r = 1; r < ADIEU_REASON_COUNT && rc == 0; r++)
            rc =
                put(out, "adieu_connections_closed_total{proto=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                    adieu_proto_name((adieu_proto_t)p), adieu_reason_name((adieu_reason_t)r),
                    s->closed[p][r]);
    if (rc == 0)
        rc = per_proto(out, "adieu_messages_received_total", "counter",
                       "Messages handed to the application.", s->messages_in);
    if (rc == 0)
        rc = per_proto(out, "adieu_messages_sent_total", "counter",
                       "Messages sent by the application and written.", s->messages_out);
    if (rc == 0)
        rc = per_proto(out, "adieu_bytes_received_total", "counter", "Bytes read from sockets.",
                       s->bytes_in);
    if (rc == 0)
        rc = per_proto(out, "adieu_bytes_sent_total", "counter", "Bytes written to sockets.",
                       s->bytes_out);
    if (rc == 0)
        rc = family(out, "adieu_draining", "gauge", "1 while a graceful shutdown runs.");
    if (rc == 0)
        rc = put(out, "adieu_draining %d\n", s->draining ? 1 : 0);
    return rc;
}

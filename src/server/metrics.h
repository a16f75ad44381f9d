/* SPDX-License-Identifier: MIT */
#ifndef ADIEU_SERVER_METRICS_H
#define ADIEU_SERVER_METRICS_H

#include "adieu/adieu.h"
#include "util/buf.h"

/* Appends the Prometheus text exposition (format 0.0.4) of s to out: every family with
 * # HELP and # TYPE, label proto = frame | ws, and reason on the closed totals (every
 * reason, zeros included, so a scrape's set of series is stable). Returns 0 or ADIEU_ENOMEM. */
int adieu__metrics_format(const adieu_stats_t *s, adieu_buf_t *out);

#endif /* ADIEU_SERVER_METRICS_H */

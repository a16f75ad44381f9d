/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

static adieu_log_level_t min_level = ADIEU_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void adieu_log_set_level(adieu_log_level_t level)
{
    min_level = level;
}

adieu_log_level_t adieu_log_get_level(void)
{
    return min_level;
}

bool adieu__log_enabled(adieu_log_level_t level)
{
    return level >= min_level && level < ADIEU_LOG_OFF;
}

int adieu_log_parse_level(const char *name, adieu_log_level_t *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (adieu_log_level_t)i;
            return 0;
        }
    }
    return ADIEU_EINVAL;
}

void adieu_log(adieu_log_level_t level, const char *component, const char *fmt, ...)
{
    if (!adieu__log_enabled(level))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);

    /* NOTE: the line is built whole and written with one write(2), so lines from a process
     * never interleave mid-line, and stderr's buffering cannot hold a line back at exit. */
    char line[2048];
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    int k = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s: ", ts.tv_nsec / 1000000L,
                     level_names[level], component);
    if (k > 0)
        n += (size_t)k;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += (size_t)k;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    const char *p = line;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0)
            break;
        p += w;
        n -= (size_t)w;
    }
}

char *adieu__log_sanitize(char *out, size_t outsz, const void *s, size_t n)
{
    const unsigned char *in = s;
    size_t i = 0;
    for (; i < n && i + 1 < outsz; i++) {
        unsigned char c = in[i];
        out[i] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '.';
    }
    if (outsz > 0)
        out[i] = '\0';
    return out;
}

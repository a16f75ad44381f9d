/* SPDX-License-Identifier: MIT */
/* Internal logging helpers beside the public adieu_log() (include/adieu/adieu.h). */
#ifndef ADIEU_UTIL_LOG_H
#define ADIEU_UTIL_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "adieu/adieu.h"

/* True when a line at level would be written: check before formatting costly values. */
bool adieu__log_enabled(adieu_log_level_t level);

/* Copies at most n bytes of s into out (size outsz) for a `detail="..."` value: printable
 * ASCII kept, everything else (and the double quote and backslash) written as '.'. Always
 * NUL-terminates. Returns out. */
char *adieu__log_sanitize(char *out, size_t outsz, const void *s, size_t n);

#endif /* ADIEU_UTIL_LOG_H */

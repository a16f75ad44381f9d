/* SPDX-License-Identifier: MIT */
/*
 * A strict RFC 8259 validating minifier: checks that the input is exactly one JSON value
 * (any top-level value, valid UTF-8, nothing after it but whitespace) and writes it with
 * insignificant whitespace removed and every token kept exactly as written (numbers keep
 * their digits, strings keep their escapes, object key order kept). Pure: no allocation
 * beyond the caller's output buffer, no I/O.
 */
#ifndef ADIEU_UTIL_JSON_H
#define ADIEU_UTIL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct {
    size_t offset;      /* byte offset of the first error in the input */
    const char *detail; /* a short static English phrase: "unexpected character",
                           "unterminated string", "invalid UTF-8", "trailing data",
                           "empty input", "nesting too deep", ... */
} adieu_json_error_t;

/* Maximum nesting of arrays and objects accepted (deeper input is an error, never a stack
 * overflow). */
#define ADIEU_JSON_MAX_DEPTH 512

/* Validates in[0..len) and appends its minified form to out. Returns 0 on success;
 * ADIEU_EPROTO if the input is not valid JSON (err filled, out restored to its length at
 * entry); ADIEU_ENOMEM. The output is never longer than the input. */
int adieu_json_minify(const uint8_t *in, size_t len, adieu_buf_t *out, adieu_json_error_t *err);

#endif /* ADIEU_UTIL_JSON_H */

/* SPDX-License-Identifier: MIT */
/*
 * Throughput of the UTF-8 validator (proto/utf8.h), picohttpparser bench.c style: texts in
 * a few scripts are built once, then validated again and again.
 *
 *   bench_utf8                  times each case (about --seconds S each, default 0.5)
 *   bench_utf8 --count          a fixed pass count per case, no clock: for callgrind
 *   bench_utf8 --iterations N   exactly N timed passes (with --count: N counted passes)
 *   bench_utf8 --case NAME      one case only
 *   bench_utf8 --list           the case names and their --count pass counts
 *
 * One line per case: case=NAME bytes=B iterations=N seconds=S mbytes_per_s=M, where B is
 * the bytes one pass reads and M is B * N / S / 10^6; --count leaves out seconds and
 * mbytes_per_s, so its output is the same on every run. bench/count-instructions turns the
 * --count runs into instructions per byte.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "proto/utf8.h"

/* ---------------------------------------------------------------------------------------
 * The cases
 * ------------------------------------------------------------------------------------- */

/* A large WebSocket text message: libuv's suggested read size. */
#define INPUT_CAP ((size_t)64 * 1024)
/* A short chat message. */
#define PIECE 16

/* Article 1 of the Universal Declaration of Human Rights, in a few scripts. */
static const char english[] =
    "All human beings are born free and equal in dignity and rights. They are endowed with "
    "reason and conscience and should act towards one another in a spirit of brotherhood. ";
/* Latin script with accents: mostly ASCII, a 2-byte character every few dozen bytes. */
static const char latin[] =
    "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués "
    "de raison et de conscience et doivent agir les uns envers les autres dans un esprit de "
    "fraternité. Alle Menschen sind frei und gleich an Würde und Rechten geboren. ";
/* Cyrillic: 2-byte letters between ASCII spaces and punctuation. */
static const char cyrillic[] =
    "Все люди рождаются свободными и равными в своем достоинстве и правах. Они наделены "
    "разумом и совестью и должны поступать в отношении друг друга в духе братства. ";
/* Chinese and Japanese: 3-byte characters almost only. */
static const char cjk[] =
    "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。"
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。";
/* A chat mixing every sequence length, emoji included. */
static const char mixed[] = "ok 👍 see you at the café — à bientôt! Привет 😀 東京で会いましょう ✓ "
                            "price: 12,50 € (naïve estimate) 🎉 ";

static uint8_t input[INPUT_CAP];
static size_t input_len;

/* Fills the input with whole copies of text (so it ends between characters). */
static size_t fill(const char *text)
{
    size_t n = strlen(text);
    input_len = 0;
    while (input_len + n <= INPUT_CAP) {
        memcpy(input + input_len, text, n);
        input_len += n;
    }
    return input_len;
}

/* The whole input as one text. Returns its length when valid, 0 when not. */
static size_t run_whole(void)
{
    return adieu_utf8_valid(input, input_len) ? input_len : 0;
}

/* The input as many short texts of PIECE bytes (ASCII input only: the cuts must fall between
 * characters). Returns the number of valid ones. */
static size_t run_pieces(void)
{
    size_t valid = 0;
    for (size_t at = 0; at + PIECE <= input_len; at += PIECE) {
        valid += adieu_utf8_valid(input + at, PIECE);
    }
    return valid;
}

static size_t setup_ascii(void)
{
    return fill(english);
}

static size_t setup_ascii_16(void)
{
    return fill(english) / PIECE * PIECE;
}

static size_t setup_latin(void)
{
    return fill(latin);
}

static size_t setup_cyrillic(void)
{
    return fill(cyrillic);
}

static size_t setup_cjk(void)
{
    return fill(cjk);
}

static size_t setup_mixed(void)
{
    return fill(mixed);
}

static const bench_case_t cases[] = {
    {"utf8_ascii", 1000, setup_ascii, run_whole},
    {"utf8_ascii_16", 100, setup_ascii_16, run_pieces},
    {"utf8_latin", 200, setup_latin, run_whole},
    {"utf8_cyrillic", 30, setup_cyrillic, run_whole},
    {"utf8_cjk", 30, setup_cjk, run_whole},
    {"utf8_mixed", 50, setup_mixed, run_whole},
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}

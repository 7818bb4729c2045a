/*
 * util.h: small helpers shared by every module: the clock, random ids,
 * hex and JSON string escaping, bounded number parsing.
 */
#ifndef DG_UTIL_H
#define DG_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* Wall-clock time in Unix milliseconds (CLOCK_REALTIME). */
int64_t util_now_ms(void);

/* Monotonic milliseconds, for measuring durations and timers. */
int64_t util_mono_ms(void);

/* Monotonic microseconds, for spacing that must be finer than a ms. */
int64_t util_mono_us(void);

/* RFC 3339 UTC with milliseconds, "2026-11-29T09:35:04.123Z". */
void util_format_time_ms(int64_t ms, char *out, size_t outlen);

/* Parses RFC 3339 ("2026-11-29T09:35:04Z", optional fraction and offset)
 * into Unix milliseconds. Returns 0 or -1. */
int util_parse_rfc3339(const char *s, int64_t *ms_out);

/* n bytes from the OpenSSL CSPRNG, drawn 1 KiB at a time per thread (a
 * RAND_bytes call costs about a microsecond whatever its size, and every
 * request takes several ids). For ids and jitter, not for keys: the bytes
 * wait in memory until used. Returns 0 or -1. */
int util_random_bytes(void *out, size_t n);

/* A random id: prefix followed by 26 lowercase base32 characters
 * (130 bits from the OpenSSL CSPRNG). out needs strlen(prefix) + 27 bytes.
 * Returns 0 or -1. */
int util_random_id(const char *prefix, char *out, size_t outlen);

/* A random id that sorts by creation time: prefix, 10 characters of the
 * millisecond clock, then 16 random characters (80 bits), all in a base32
 * alphabet whose ASCII order is its numeric order. Ids made together land
 * side by side in an index, so inserting them writes few pages. out needs
 * strlen(prefix) + 27 bytes. Returns 0 or -1. */
int util_sortable_id(const char *prefix, int64_t now_ms, char *out, size_t outlen);

/* Lowercase hex of len bytes; out needs 2 * len + 1 bytes. */
void util_hex(const unsigned char *in, size_t len, char *out);

/* Writes s as a quoted JSON string into out (always NUL-terminated, cut
 * short if out is too small). Returns the number of bytes written. */
size_t util_json_escape(const char *s, char *out, size_t outlen);

/* Writes compact JSON text (as jansson's JSON_COMPACT writes it) to out
 * indented by two spaces, exactly as JSON_INDENT(2) would, without
 * building the tree: ctl prints a page of a thousand deletions this way,
 * where parsing and dumping it again cost more than the request. -1 when
 * the text is not balanced JSON (out then holds part of it). */
int util_json_indent(FILE *out, const char *s);

/* path's directory ("." for a bare name), in a new string (free it), or
 * NULL when out of memory. */
char *util_dir_of(const char *path);

/* fsync of path's directory, so a created or renamed entry reaches the
 * disk: without it a crash can lose the whole file. 0 or -1. */
int util_sync_dir(const char *path);

/* Creates path's missing parent directories 0700, each new entry synced.
 * 0 or -1 (errno). */
int util_mkdirs(const char *path);

/* Bounded integer parse of a whole decimal string: 0, or -1 when empty,
 * not a number, trailing garbage or outside [min, max]. */
int util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

#endif

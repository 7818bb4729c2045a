/*
 * json_body.h: parsing an inbound JSON body, and quoting a piece of input
 * in an error message safely (bounded, printable ASCII only).
 */
#ifndef DG_JSON_BODY_H
#define DG_JSON_BODY_H

#include <stddef.h>

#include <jansson.h>

#include "api_error.h"

#define JSON_BODY_SHOW_MAX 64

/* At most JSON_BODY_SHOW_MAX bytes of s, other bytes shown as '?', with
 * "..." when cut; returns out. */
const char *json_body_show(const char *s, size_t len, char out[JSON_BODY_SHOW_MAX + 4]);

/* Parses any JSON value, refusing duplicate keys, invalid UTF-8 and NUL
 * bytes. NULL with a 400 malformed_json in *err that says why and where. */
json_t *json_body_load(const char *body, size_t len, struct api_error *err);

/* The same for a large body of which only the outline is read: the whole
 * text is checked as json_body_load checks it (grammar, UTF-8, NUL,
 * nesting), but every object or array two levels down or deeper comes back
 * as null, unless it is the value of a member named in keep (a
 * NULL-terminated list), which comes back whole. Duplicate keys are refused
 * in what comes back, not in what is left out. An Extend webhook is ~1.3
 * KB of extraction output around the five fields the gateway reads; this
 * parses it about five times faster. */
json_t *json_body_load_outline(const char *body, size_t len, const char *const *keep,
                               struct api_error *err);

#endif

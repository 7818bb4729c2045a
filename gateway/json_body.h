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

#endif

/*
 * http_view.h: a deletion as both APIs show it (GET /v1/deletions/ID and
 * the admin listener), and the shape of the ids they hand out.
 */
#ifndef DG_HTTP_VIEW_H
#define DG_HTTP_VIEW_H

#include <stddef.h>

struct evbuffer;
struct queue_deletion_view;

/* Appends the deletion to out as one compact JSON object, with its
 * attempt history when asked and, when receipt is not NULL, a "receipt"
 * member holding that JSON text as it is ("null" for none). 0, or -1 when
 * out of memory (out then holds part of it). */
int http_view_write(struct evbuffer *out, const struct queue_deletion_view *v, int with_attempts,
                    const char *receipt);

/* A deletion id as the API hands them out: "del_" and [a-z0-9], bounded. */
int http_view_id_valid(const char *id, size_t len);

#endif

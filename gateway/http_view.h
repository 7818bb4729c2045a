/*
 * http_view.h: a deletion as both APIs show it (GET /v1/deletions/ID and
 * the admin listener), and the shape of the ids they hand out.
 */
#ifndef DG_HTTP_VIEW_H
#define DG_HTTP_VIEW_H

#include <stddef.h>

#include <jansson.h>

struct queue_deletion_view;

/* The deletion as a new JSON object (NULL when out of memory), with its
 * attempt history when asked. */
json_t *http_view_json(const struct queue_deletion_view *v, int with_attempts);

/* A deletion id as the API hands them out: "del_" and [a-z0-9], bounded. */
int http_view_id_valid(const char *id, size_t len);

#endif

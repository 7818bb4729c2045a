/*
 * http_routes.h: the route handlers behind http.c's router.
 */
#ifndef DG_HTTP_ROUTES_H
#define DG_HTTP_ROUTES_H

#include "gateway.h"
#include "queue.h"

struct evhttp_request;

/* http_ingest.c: Extend webhooks and the internal erasure API. */
void http_route_webhook(struct evhttp_request *req, struct gateway *gw, const char *rid);
void http_route_deletions_create(struct evhttp_request *req, struct gateway *gw, const char *rid);
/* rest: what follows "/v1/deletions/": "ID" or "ID/receipt". */
void http_route_deletions_get(struct evhttp_request *req, struct gateway *gw, const char *rid,
                              const char *rest);

/* A deletion as JSON (malloc'd text), with its attempts when asked. */
char *http_render_view(const struct queue_deletion_view *v, int with_attempts);

/* A deletion id as the API hands them out: "del_" and [a-z0-9], bounded. */
int http_deletion_id_valid(const char *id, size_t len);

#endif

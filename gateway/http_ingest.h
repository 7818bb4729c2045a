/*
 * http_ingest.h: the public listener's routes that accept deletions and
 * show them (http_ingest.c), as route handlers (see http_route.h).
 */
#ifndef DG_HTTP_INGEST_H
#define DG_HTTP_INGEST_H

#include "http_route.h"

/* POST {webhooks.path}: Extend webhooks. */
http_handler http_ingest_webhook;
/* POST /v1/deletions: internal clients. */
http_handler http_ingest_create;
/* GET /v1/deletions/...: arg is "ID" or "ID/receipt". */
http_handler http_ingest_get;

#endif

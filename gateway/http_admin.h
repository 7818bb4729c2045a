/*
 * http_admin.h: the operators' listener's route table and its guard
 * (http_admin.c).
 */
#ifndef DG_HTTP_ADMIN_H
#define DG_HTTP_ADMIN_H

#include <stddef.h>

#include "http_route.h"

extern const struct http_route http_admin_routes[];
extern const size_t http_admin_n_routes;

/* Runs before any admin route: a path outside /admin/ is a 404, and
 * everything inside needs the bearer admin token (401 otherwise),
 * compared in constant time. 0 to go on, or -1 with the answer sent. */
int http_admin_guard(const struct http_req *r, const char *path);

#endif

/*
 * http_route.h: a listener's routes as one table, and the one matcher.
 *
 * Each entry is {methods, path, handler, metrics label}. The matcher is a
 * pure function of the table, the method and the path, so the answers it
 * leads to (404 for no route, 405 for a known path asked with another
 * method) and the label every answer is counted under come from the table
 * alone, for the router and for refusals made before any route ran.
 */
#ifndef DG_HTTP_ROUTE_H
#define DG_HTTP_ROUTE_H

#include <stddef.h>

#include <event2/http.h>

#include "metrics.h"

struct http_req;

/* arg: for HTTP_PREFIX what follows the prefix; for HTTP_ID the id;
 * NULL for HTTP_EXACT. */
typedef void http_handler(struct http_req *r, const char *arg);

enum http_match_kind {
    HTTP_EXACT,  /* the path is path */
    HTTP_PREFIX, /* the path starts with path (and ends with suffix, if set) */
    HTTP_ID,     /* path, one segment that id_ok accepts, then suffix or nothing */
};

/* The methods the tables use; probes send HEAD as well as GET. */
#define HTTP_GET EVHTTP_REQ_GET
#define HTTP_POST EVHTTP_REQ_POST
#define HTTP_PROBE (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)

/* A table reads {methods, kind, path, suffix, id_ok, handler, label}. */
struct http_route {
    unsigned methods; /* EVHTTP_REQ_* bits; 0: a label only, answered 404 */
    enum http_match_kind kind;
    const char *path;
    const char *suffix;                       /* HTTP_PREFIX, HTTP_ID; NULL = none */
    int (*id_ok)(const char *id, size_t len); /* HTTP_ID */
    http_handler *handler;
    enum metrics_route label;
};

enum http_found {
    HTTP_FOUND,     /* route and arg set */
    HTTP_NO_ROUTE,  /* 404 */
    HTTP_NO_METHOD, /* 405: the path is known, the method is not */
    HTTP_BAD_ID,    /* 404: an HTTP_ID segment id_ok refused, whatever follows it */
};

#define HTTP_ROUTE_ID_MAX 63

struct http_match {
    enum http_found found;
    enum metrics_route label; /* MR_OTHER when nothing matched */
    const struct http_route *route;
    const char *arg;
    char id[HTTP_ROUTE_ID_MAX + 1];
};

/* Matches method (one EVHTTP_REQ_* bit) and path (query cut off; NULL
 * matches nothing) against n routes, first match first. */
void http_route_match(const struct http_route *routes, size_t n, unsigned method, const char *path,
                      struct http_match *m);

/* The label a request for path is counted under, whatever its method. */
enum metrics_route http_route_label(const struct http_route *routes, size_t n, const char *path);

#endif

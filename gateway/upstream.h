/*
 * upstream.h: DELETE requests to Extend over HTTPS, through libcurl's
 * multi-socket interface driven by the gateway's libevent loop: no second
 * loop, no thread per request. libcurl brings connection reuse that
 * survives a server closing idle keep-alives, HTTP/2 when offered,
 * HTTPS_PROXY / NO_PROXY, and certificate + host name verification, which
 * is always on (system CAs plus extend.ca_file).
 *
 * The request: DELETE {base_url}/{collection}/{percent-encoded id} with
 * Authorization: Bearer, x-extend-api-version, x-extend-workspace-id (when
 * configured), Accept: application/json, User-Agent: deletion-gateway/VERSION.
 */
#ifndef DG_UPSTREAM_H
#define DG_UPSTREAM_H

#include <stdint.h>

#include "config.h"
#include "resource.h"

struct event_base;
struct upstream;

struct upstream_result {
    int http_status;            /* 0 = no HTTP answer: see transport_error */
    char transport_error[128];  /* "timeout", "connect_failed", "tls_failed", ... */
    char transport_detail[256]; /* libcurl's message, for logs */
    char request_id[128];       /* x-extend-request-id, "" if absent */
    char error_code[64];        /* "code" of Extend's JSON error body, "" if none */
    char error_message[256];    /* "message" of that body (never echoed secrets) */
    char retry_after[64];       /* raw Retry-After header, "" if absent */
    char ratelimit_reset[64];   /* raw X-RateLimit-Reset header, "" if absent */
    int64_t elapsed_ms;
};

typedef void (*upstream_done_cb)(const struct upstream_result *r, void *arg);

/* curl_global_init, once. libcurl's global state is not thread-safe to set
 * up: main calls this before any thread starts. 0 or -1. */
int upstream_global_init(void);

/* Reads one account's upstream keys (the token must be resolved); errors
 * name the key as in the legacy block ("extend.ca_file"). Refuses a
 * base_url that is not https unless its host is a loopback address. */
int upstream_open(struct upstream **out, struct event_base *base, const struct account *acct,
                  char *err, size_t errlen);

/* Swaps the bearer token (SIGHUP); requests already sent keep the old one. */
int upstream_set_token(struct upstream *u, const struct secret *token);

/* Starts one DELETE. The callback runs exactly once on the loop thread,
 * never from inside this call. -1 if the request could not be started. */
int upstream_delete(struct upstream *u, enum resource r, const char *id, upstream_done_cb cb,
                    void *arg);

/* Requests started and not yet finished. */
int upstream_in_flight(const struct upstream *u);

/* Pure parsers of Extend's answers (libcurl hands them over; fuzzed):
 * one header line (the three headers kept, printable and bounded), and an
 * error body ({"code", "message"}; anything else leaves both empty). */
void upstream_parse_header(const char *buf, size_t len, struct upstream_result *res);
void upstream_parse_error_body(const char *body, size_t len, struct upstream_result *res);

/* Aborts what is in flight without calling back, frees everything. */
void upstream_close(struct upstream *u);

#endif

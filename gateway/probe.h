/*
 * probe.h: the binary's own HTTP client, for the commands that talk to
 * the gateway's listeners (`ctl` to the admin listener, `health` to the
 * public one): one short-lived libcurl request, its answer bounded.
 */
#ifndef DG_PROBE_H
#define DG_PROBE_H

#include <stddef.h>

struct probe_request {
    const char *method; /* "GET", or "POST" with an empty body */
    const char *url;    /* checked with probe_parse_url() first */
    const char *bearer; /* sent as Authorization: Bearer, or NULL */
    const char *agent;  /* User-Agent */
    long timeout_ms;    /* the whole request, connection included */
    size_t max_answer;  /* the body is kept up to this; 0 = read and dropped */
    /* https */
    const char *cacert; /* verify the server against this CA file */
    int insecure;       /* without cacert: 1 = do not authenticate the server */
    const char *cert;   /* client certificate for an mTLS listener, or NULL */
    const char *key;    /* its key (NULL: in the cert file) */
};

struct probe_answer {
    long status;
    char *body; /* NUL-terminated, or NULL when dropped or empty */
    size_t len;
};

/* One request. 0 with *a (probe_answer_free it), whatever the status; -1
 * when no HTTP answer came (refused, timed out, TLS failed, larger than
 * max_answer): err says why. */
int probe_http(const struct probe_request *rq, struct probe_answer *a, char *err, size_t errlen);
void probe_answer_free(struct probe_answer *a);

/* Splits "http(s)://HOST[:PORT][/PATH]" (HOST may be [v6]); *tls is 1 for
 * https. Returns 0 or -1 for anything else. */
int probe_parse_url(const char *url, int *tls, char *host, size_t hostlen, char *port,
                    size_t portlen, char *path, size_t pathlen);

/* Appends "&name=value" to the query q, value percent-encoded; nothing
 * when value is NULL. 0, or -1 when q is too short (q unchanged). */
int probe_query_add(char *q, size_t len, const char *name, const char *value);

#endif

/*
 * probe.c: the binary's own HTTP client (see probe.h), on libcurl's easy
 * interface, which the daemon links for its DELETEs anyway.
 *
 *   probe_parse_url()  the one URL form the commands accept
 *   probe_http()       one request, answer collected (bounded) or dropped
 *   probe_query_add()  a query parameter, percent-encoded
 *
 * The listeners it talks to are the gateway's own: no proxy from the
 * environment is used (a bearer token has no business passing through
 * one), no redirect is followed, and only http and https are spoken.
 */
#include "probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "resource.h"
#include "secret.h"
#include "util.h"

static int copy_part(char *out, size_t outlen, const char *s, size_t n)
{
    if (n == 0 || n >= outlen)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int probe_parse_url(const char *url, int *tls, char *host, size_t hostlen, char *port,
                    size_t portlen, char *path, size_t pathlen)
{
    const char *p, *end, *colon;

    if (strncmp(url, "http://", 7) == 0) {
        *tls = 0;
        p = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        *tls = 1;
        p = url + 8;
    } else {
        return -1;
    }
    end = p + strcspn(p, "/");
    if (*p == '[') { /* [v6]:port */
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL || copy_part(host, hostlen, p + 1, (size_t)(close - p - 1)) != 0)
            return -1;
        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
        if (colon == NULL && close + 1 != end)
            return -1;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        if (copy_part(host, hostlen, p, (size_t)((colon != NULL ? colon : end) - p)) != 0)
            return -1;
    }
    if (colon != NULL) {
        char digits[8];
        int64_t n;
        if (copy_part(digits, sizeof(digits), colon + 1, (size_t)(end - colon - 1)) != 0 ||
            util_parse_int64(digits, 1, 65535, &n) != 0 ||
            copy_part(port, portlen, digits, strlen(digits)) != 0)
            return -1;
    } else if (copy_part(port, portlen, *tls ? "443" : "80", *tls ? 3 : 2) != 0) {
        return -1;
    }
    if (*end == '\0')
        end = "/";
    if (copy_part(path, pathlen, end, strlen(end)) != 0 || strpbrk(path, " \r\n") != NULL)
        return -1;
    return 0;
}

struct collect {
    struct probe_answer *a;
    size_t max; /* 0: drop */
    int too_big;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct collect *c = arg;
    struct probe_answer *a = c->a;
    size_t n = size * nmemb;
    char *grown;

    if (c->max == 0)
        return n;
    if (a->len + n > c->max) {
        c->too_big = 1;
        return 0;
    }
    grown = realloc(a->body, a->len + n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + a->len, ptr, n);
    a->body = grown;
    a->len += n;
    a->body[a->len] = '\0';
    return n;
}

int probe_http(const struct probe_request *rq, struct probe_answer *a, char *err, size_t errlen)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL;
    struct collect c = {a, rq->max_answer, 0};
    char auth[600], why[CURL_ERROR_SIZE] = "";
    CURLcode rc = CURLE_FAILED_INIT;

    memset(a, 0, sizeof(*a));
    if (h == NULL)
        goto fail;
    if (rq->bearer != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", rq->bearer);
        hdr = curl_slist_append(hdr, auth);
        secret_cleanse(auth, sizeof(auth));
        if (hdr == NULL)
            goto fail;
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    }
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    if (strcmp(rq->method, "POST") == 0)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_USERAGENT, rq->agent);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (rq->cacert != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, rq->cacert);
    } else if (rq->insecure) {
        /* The probe only asks "are you up?"; with no CA given it cannot
         * tell the real listener from another, and sends nothing secret. */
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (rq->cert != NULL) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, rq->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, rq->key != NULL ? rq->key : rq->cert);
    }
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
fail:
    if (rc != CURLE_OK) {
        if (c.too_big)
            snprintf(err, errlen, "the answer is larger than %zu bytes", rq->max_answer);
        else
            snprintf(err, errlen, "%s", why[0] != '\0' ? why : curl_easy_strerror(rc));
        probe_answer_free(a);
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return rc == CURLE_OK ? 0 : -1;
}

void probe_answer_free(struct probe_answer *a)
{
    free(a->body);
    memset(a, 0, sizeof(*a));
}

int probe_query_add(char *q, size_t len, const char *name, const char *value)
{
    size_t n = strlen(q);
    int w;

    if (value == NULL)
        return 0;
    /* Unreserved characters pass, everything else becomes %XX: what a
     * path segment needs is enough for a query value too. */
    w = snprintf(q + n, len - n, "&%s=", name);
    if (w < 0 || (size_t)w >= len - n ||
        resource_encode_segment(value, q + n + (size_t)w, len - n - (size_t)w) != 0) {
        q[n] = '\0';
        return -1;
    }
    return 0;
}

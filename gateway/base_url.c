/*
 * base_url.c: the rule for extend.base_url (see base_url.h). Pure.
 */
#include "base_url.h"

#include <string.h>
#include <strings.h>

static int host_char_ok(unsigned char c, bool bracketed)
{
    if ((c >= '0' && c <= '9') || c == '.')
        return 1;
    if (bracketed)
        return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':';
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
}

static int port_ok(const char *p, size_t len)
{
    long v = 0;

    if (len == 0 || len > 7)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

static int is_loopback(const char *host, size_t len)
{
    return (len == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
           (len == 9 && strncasecmp(host, "localhost", 9) == 0) ||
           (len == 5 && strncmp(host, "[::1]", 5) == 0);
}

int base_url_check(const char *url, bool *https, size_t *keep, const char **why)
{
    const char *host, *end, *port;
    size_t hlen, n;
    bool bracketed;

    if (strncmp(url, "https://", 8) == 0) {
        *https = true;
        host = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        *https = false;
        host = url + 7;
    } else {
        *why = "must start with https://";
        return -1;
    }
    if (strpbrk(url, "?#@ \\") != NULL) {
        *why = "must not contain a query, fragment, user or space";
        return -1;
    }
    end = host + strcspn(host, "/");
    bracketed = *host == '[';
    if (bracketed) {
        const char *rb = memchr(host, ']', (size_t)(end - host));
        if (rb == NULL) {
            *why = "unterminated IPv6 address";
            return -1;
        }
        hlen = (size_t)(rb - host) + 1;
    } else {
        hlen = strcspn(host, ":/");
    }
    if (hlen == 0 || (bracketed && hlen == 2)) {
        *why = "has no host";
        return -1;
    }
    /* A name libcurl would refuse must be refused here, or `check` would
     * pass a config whose every DELETE fails. */
    for (size_t i = bracketed ? 1 : 0; i < (bracketed ? hlen - 1 : hlen); i++)
        if (!host_char_ok((unsigned char)host[i], bracketed)) {
            *why = "host may only hold A-Z a-z 0-9 . _ - or a bracketed IPv6 address";
            return -1;
        }
    port = host + hlen;
    if (port < end && (*port != ':' || !port_ok(port + 1, (size_t)(end - port) - 1))) {
        *why = "bad port";
        return -1;
    }
    if (!*https && !is_loopback(host, hlen)) {
        *why = "http:// is only allowed for 127.0.0.1, localhost or [::1]; use https://";
        return -1;
    }
    n = strlen(url);
    while (n > 0 && url[n - 1] == '/' && url + n - 1 >= end)
        n--;
    *keep = n;
    return 0;
}

/*
 * http_route.c: the route matcher (see http_route.h).
 *
 * Entries are tried in order. The first whose path matches and which
 * takes the method wins; a path that matched only under other methods is
 * a 405. An HTTP_ID entry refuses a bad id before anything else is
 * looked at, so a malformed id is a 404 whatever method or suffix came
 * with it.
 */
#include "http_route.h"

#include <string.h>

enum path_result { PATH_NO, PATH_YES, PATH_BAD_ID };

static enum path_result path_match(const struct http_route *e, const char *path,
                                   struct http_match *m)
{
    size_t plen = strlen(e->path), n = strlen(path), slen, idlen;
    const char *rest, *slash;

    switch (e->kind) {
    case HTTP_EXACT:
        m->arg = NULL;
        return strcmp(path, e->path) == 0 ? PATH_YES : PATH_NO;
    case HTTP_PREFIX:
        if (strncmp(path, e->path, plen) != 0)
            return PATH_NO;
        if (e->suffix != NULL) {
            slen = strlen(e->suffix);
            if (n < slen || strcmp(path + n - slen, e->suffix) != 0)
                return PATH_NO;
        }
        m->arg = path + plen;
        return PATH_YES;
    case HTTP_ID:
        if (strncmp(path, e->path, plen) != 0)
            return PATH_NO;
        rest = path + plen;
        slash = strchr(rest, '/');
        idlen = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
        if (idlen > HTTP_ROUTE_ID_MAX || e->id_ok == NULL || !e->id_ok(rest, idlen))
            return PATH_BAD_ID;
        if (e->suffix != NULL ? slash == NULL || strcmp(slash, e->suffix) != 0 : slash != NULL)
            return PATH_NO;
        memcpy(m->id, rest, idlen);
        m->id[idlen] = '\0';
        m->arg = m->id;
        return PATH_YES;
    }
    return PATH_NO;
}

void http_route_match(const struct http_route *routes, size_t n, unsigned method, const char *path,
                      struct http_match *m)
{
    memset(m, 0, sizeof(*m));
    m->found = HTTP_NO_ROUTE;
    m->label = MR_OTHER;
    for (size_t i = 0; path != NULL && i < n; i++) {
        const struct http_route *e = &routes[i];
        enum path_result pr = path_match(e, path, m);

        if (pr == PATH_NO)
            continue;
        if (pr == PATH_BAD_ID || e->methods == 0) {
            /* A known path under another method stays a 405. */
            if (m->found != HTTP_NO_METHOD) {
                m->found = pr == PATH_BAD_ID ? HTTP_BAD_ID : HTTP_NO_ROUTE;
                m->label = e->label;
            }
            break;
        }
        if (e->methods & method) {
            m->found = HTTP_FOUND;
            m->label = e->label;
            m->route = e;
            return;
        }
        if (m->found != HTTP_NO_METHOD) {
            m->found = HTTP_NO_METHOD;
            m->label = e->label;
        }
    }
    m->arg = NULL;
}

enum metrics_route http_route_label(const struct http_route *routes, size_t n, const char *path)
{
    struct http_match m;

    http_route_match(routes, n, ~0u, path, &m);
    return m.label;
}

/*
 * hello.c: the benchmark ceiling. The smallest libevent evhttp server:
 * 200 {"ok":true} to any request, one event loop, no work at all. The
 * gateway runs on the same evhttp, so its throughput against this one
 * measures what verifying, queueing and fsyncing cost on top of HTTP.
 *
 * Usage: hello [--address A] [--port P]   (default 127.0.0.1:8099)
 * Prints "hello listening on ADDR:PORT" once bound; SIGINT/SIGTERM stop it.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static void hello_answer(struct evhttp_request *req, void *arg)
{
    struct evbuffer *body = arg;

    /* Request bodies are read fully by evhttp before this runs; the
     * answer is a copy of one static buffer, no allocation per request. */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), evbuffer_pullup(body, -1),
                 evbuffer_get_length(body));
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void hello_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    const char *address = "127.0.0.1";
    int64_t port = 8099;
    struct event_base *base = NULL;
    struct evhttp *http = NULL;
    struct evbuffer *body = NULL;
    struct event *sigint = NULL, *sigterm = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
            address = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            if (util_parse_int64(argv[++i], 0, 65535, &port) != 0) {
                fprintf(stderr, "hello: bad port\n");
                return 2;
            }
        } else {
            fprintf(stderr, "usage: hello [--address A] [--port P]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    base = event_base_new();
    http = base ? evhttp_new(base) : NULL;
    body = evbuffer_new();
    if (!http || !body)
        goto fail;
    evbuffer_add_printf(body, "{\"ok\":true}\n");
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_max_body_size(http, 1 << 20);
    evhttp_set_gencb(http, hello_answer, body);
    if (evhttp_bind_socket(http, address, (uint16_t)port) != 0) {
        fprintf(stderr, "hello: cannot bind %s:%d\n", address, (int)port);
        goto fail;
    }
    sigint = evsignal_new(base, SIGINT, hello_stop, base);
    sigterm = evsignal_new(base, SIGTERM, hello_stop, base);
    if (!sigint || !sigterm || event_add(sigint, NULL) != 0 || event_add(sigterm, NULL) != 0)
        goto fail;
    printf("hello listening on %s:%d\n", address, (int)port);
    fflush(stdout);
    event_base_dispatch(base);
    rc = 0;

fail:
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    if (http)
        evhttp_free(http);
    if (body)
        evbuffer_free(body);
    if (base)
        event_base_free(base);
    return rc;
}

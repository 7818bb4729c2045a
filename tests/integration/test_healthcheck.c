/*
 * test_healthcheck.c: `deletion-gateway health` against a loopback evhttp
 * server: 0 only for a 200, 1 for other answers and for no answer, 2 for
 * usage errors; the URL parser's accepted and refused forms; and the URL
 * that -c FILE probes, from the listener the config describes.
 */
#include "check.h"
#include "config.h"
#include "cmd.h"
#include "probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

static struct event_base *base;

static void handler(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (strcmp(evhttp_request_get_uri(req), "/healthz") == 0)
        evhttp_send_reply(req, 200, "OK", NULL);
    else
        evhttp_send_reply(req, 503, "Unavailable", NULL);
}

static void *serve(void *arg)
{
    (void)arg;
    event_base_dispatch(base);
    return NULL;
}

static int run(const char *url, const char *timeout)
{
    char *argv[] = {"health", "--url", (char *)url, "--timeout-ms", (char *)timeout, NULL};
    return cmd_health(5, argv);
}

static void test_parse_url(void)
{
    char host[64], port[8], path[64];
    int tls = -1;

    CHECK(probe_parse_url("http://127.0.0.1:8080/healthz", &tls, host, sizeof(host), port,
                          sizeof(port), path, sizeof(path)) == 0);
    CHECK_STR(host, "127.0.0.1");
    CHECK_STR(port, "8080");
    CHECK_STR(path, "/healthz");
    CHECK(tls == 0);
    CHECK(probe_parse_url("http://localhost", &tls, host, sizeof(host), port, sizeof(port), path,
                          sizeof(path)) == 0);
    CHECK_STR(host, "localhost");
    CHECK_STR(port, "80");
    CHECK_STR(path, "/");
    CHECK(probe_parse_url("http://[::1]:9/readyz", &tls, host, sizeof(host), port, sizeof(port),
                          path, sizeof(path)) == 0);
    CHECK_STR(host, "::1");
    CHECK_STR(port, "9");
    CHECK(probe_parse_url("https://127.0.0.1/", &tls, host, sizeof(host), port, sizeof(port), path,
                          sizeof(path)) == 0);
    CHECK(tls == 1);
    CHECK_STR(port, "443");
    CHECK(probe_parse_url("ftp://127.0.0.1/", &tls, host, sizeof(host), port, sizeof(port), path,
                          sizeof(path)) == -1);
    CHECK(probe_parse_url("http://127.0.0.1:0/", &tls, host, sizeof(host), port, sizeof(port), path,
                          sizeof(path)) == -1);
    CHECK(probe_parse_url("http://127.0.0.1:99999/", &tls, host, sizeof(host), port, sizeof(port),
                          path, sizeof(path)) == -1);
    CHECK(probe_parse_url("http://h/a b", &tls, host, sizeof(host), port, sizeof(port), path,
                          sizeof(path)) == -1);
    CHECK(probe_parse_url("http://:80/", &tls, host, sizeof(host), port, sizeof(port), path,
                          sizeof(path)) == -1);
}

/* The URL health -c probes for a config whose listen block is listen. */
static void expect_config_url(const char *listen, const char *want)
{
    struct config cfg;
    char json[512], err[512] = "", url[320] = "";

    snprintf(json, sizeof(json), "{\"listen\": %s}", listen);
    CHECK(config_load_string(&cfg, json, err, sizeof(err)) == 0);
    CHECK(cmd_health_config_url(&cfg, url, sizeof(url)) == 0);
    CHECK_STR(url, want);
    config_free(&cfg);
}

static void test_config_url(void)
{
    struct config cfg;
    char err[512] = "", small[20];

    expect_config_url("{\"port\": 8088}", "http://127.0.0.1:8088/healthz");
    expect_config_url("{\"address\": \"0.0.0.0\", \"port\": 8088}",
                      "http://127.0.0.1:8088/healthz");
    expect_config_url("{\"address\": \"::\", \"port\": 9000}", "http://[::1]:9000/healthz");
    expect_config_url("{\"address\": \"::1\", \"port\": 9000}", "http://[::1]:9000/healthz");
    expect_config_url("{\"address\": \"10.1.2.3\", \"port\": 80}", "http://10.1.2.3:80/healthz");
    expect_config_url("{\"address\": \"gw.internal\"}", "http://gw.internal:8080/healthz");
    expect_config_url("{\"address\": \"0.0.0.0\", \"port\": 8443, \"tls\": {\"cert_file\": "
                      "\"/tls/c.pem\", \"key_file\": \"/tls/k.pem\"}}",
                      "https://127.0.0.1:8443/healthz");
    CHECK(config_load_string(&cfg, "{}", err, sizeof(err)) == 0);
    CHECK(cmd_health_config_url(&cfg, small, sizeof(small)) == -1);
    config_free(&cfg);
}

int main(void)
{
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    char ok[64], bad[64], closed[64];
    pthread_t th;
    int fd, closed_ok;
    char *usage[] = {"health", "--bogus", NULL};
    char *bad_timeout[] = {"health", "--timeout-ms", "0", NULL};
    char *no_value[] = {"health", "--url", NULL};

    test_parse_url();
    test_config_url();
    CHECK(cmd_health(2, usage) == 2);
    CHECK(cmd_health(3, bad_timeout) == 2);
    CHECK(cmd_health(2, no_value) == 2);
    CHECK(run("ftp://127.0.0.1/", "1000") == 2);

    CHECK(evthread_use_pthreads() == 0);
    base = event_base_new();
    http = evhttp_new(base);
    evhttp_set_gencb(http, handler, NULL);
    bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    CHECK(bound != NULL);
    if (bound == NULL)
        return check_done();
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &slen);
    snprintf(ok, sizeof(ok), "http://127.0.0.1:%d/healthz", ntohs(sin.sin_port));
    snprintf(bad, sizeof(bad), "http://127.0.0.1:%d/readyz", ntohs(sin.sin_port));
    CHECK(pthread_create(&th, NULL, serve, NULL) == 0);

    CHECK(run(ok, "3000") == 0);
    CHECK(run(bad, "3000") == 1);

    /* A port nobody listens on: bind one, note it, close it. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sin.sin_port = 0;
    slen = sizeof(sin);
    closed_ok = fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
                getsockname(fd, (struct sockaddr *)&sin, &slen) == 0;
    CHECK(closed_ok);
    if (fd >= 0)
        close(fd);
    /* Without a port of its own the check below would probe port 0. */
    if (closed_ok) {
        snprintf(closed, sizeof(closed), "http://127.0.0.1:%d/healthz", ntohs(sin.sin_port));
        CHECK(run(closed, "1000") == 1);
    }

    event_base_loopexit(base, NULL);
    pthread_join(th, NULL);
    evhttp_free(http);
    event_base_free(base);
    libevent_global_shutdown();
    return check_done();
}

/*
 * test_http_route.c: the route matcher on the admin listener's real table
 * and on a public-like one: unknown path 404, known path with another
 * method 405, a malformed id 404 before anything else, labels from the
 * table.
 */
#include <event2/http.h>

#include "check.h"
#include "http_admin.h"
#include "http_route.h"
#include "http_view.h"

static void h_a(struct http_req *r, const char *arg)
{
    (void)r, (void)arg;
}

static void h_b(struct http_req *r, const char *arg)
{
    (void)r, (void)arg;
}

static const struct http_route pub[] = {
    {EVHTTP_REQ_POST, HTTP_EXACT, "/webhooks/extend", NULL, NULL, h_a, MR_WEBHOOK},
    {EVHTTP_REQ_GET, HTTP_PREFIX, "/v1/deletions/", "/receipt", NULL, h_b, MR_RECEIPT},
    {EVHTTP_REQ_GET, HTTP_PREFIX, "/v1/deletions/", NULL, NULL, h_b, MR_DELETIONS_GET},
    {EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, HTTP_EXACT, "/healthz", NULL, NULL, h_a, MR_HEALTHZ},
};
#define N_PUB (sizeof(pub) / sizeof(pub[0]))

static struct http_match m;

static enum http_found pub_match(unsigned method, const char *path)
{
    http_route_match(pub, N_PUB, method, path, &m);
    return m.found;
}

static enum http_found admin_match(unsigned method, const char *path)
{
    http_route_match(http_admin_routes, http_admin_n_routes, method, path, &m);
    return m.found;
}

static void test_exact_and_method(void)
{
    CHECK(pub_match(EVHTTP_REQ_POST, "/webhooks/extend") == HTTP_FOUND);
    CHECK(m.route == &pub[0] && m.label == MR_WEBHOOK && m.arg == NULL);
    CHECK(pub_match(EVHTTP_REQ_GET, "/webhooks/extend") == HTTP_NO_METHOD);
    CHECK(m.label == MR_WEBHOOK);
    CHECK(pub_match(EVHTTP_REQ_HEAD, "/healthz") == HTTP_FOUND);
    CHECK(pub_match(EVHTTP_REQ_POST, "/healthz") == HTTP_NO_METHOD);
    CHECK(pub_match(EVHTTP_REQ_GET, "/healthz/") == HTTP_NO_ROUTE);
    CHECK(m.label == MR_OTHER && m.route == NULL);
    CHECK(pub_match(EVHTTP_REQ_GET, "/nope") == HTTP_NO_ROUTE);
    CHECK(pub_match(EVHTTP_REQ_GET, NULL) == HTTP_NO_ROUTE);
    CHECK(m.label == MR_OTHER);
}

static void test_prefix_and_suffix(void)
{
    CHECK(pub_match(EVHTTP_REQ_GET, "/v1/deletions/del_1") == HTTP_FOUND);
    CHECK(m.label == MR_DELETIONS_GET);
    CHECK_STR(m.arg, "del_1");
    CHECK(pub_match(EVHTTP_REQ_GET, "/v1/deletions/del_1/receipt") == HTTP_FOUND);
    CHECK(m.label == MR_RECEIPT);
    CHECK_STR(m.arg, "del_1/receipt");
    /* Anything under the prefix is the route's: the handler refuses it,
     * and another method is a 405 however deep the path goes. */
    CHECK(pub_match(EVHTTP_REQ_POST, "/v1/deletions/a/b/c") == HTTP_NO_METHOD);
    CHECK(m.label == MR_DELETIONS_GET);
    CHECK(pub_match(EVHTTP_REQ_POST, "/v1/deletions/x/receipt") == HTTP_NO_METHOD);
    CHECK(m.label == MR_RECEIPT);
    CHECK(pub_match(EVHTTP_REQ_GET, "/v1/deletions") == HTTP_NO_ROUTE);
}

static void test_admin_table(void)
{
    CHECK(admin_match(EVHTTP_REQ_GET, "/admin/queue") == HTTP_FOUND);
    CHECK(m.label == MR_ADMIN);
    CHECK(admin_match(EVHTTP_REQ_HEAD, "/admin/queue") == HTTP_NO_METHOD);
    CHECK(admin_match(EVHTTP_REQ_POST, "/admin/deletions") == HTTP_NO_METHOD);
    CHECK(admin_match(EVHTTP_REQ_POST, "/admin/pause") == HTTP_FOUND);
    CHECK(admin_match(EVHTTP_REQ_GET, "/admin/pause") == HTTP_NO_METHOD);
    CHECK(admin_match(EVHTTP_REQ_GET, "/admin/queue/") == HTTP_NO_ROUTE);
    CHECK(m.label == MR_ADMIN); /* every /admin/ path counts as admin */
    CHECK(admin_match(EVHTTP_REQ_GET, "/healthz") == HTTP_NO_ROUTE);
    CHECK(m.label == MR_OTHER);

    CHECK(admin_match(EVHTTP_REQ_GET, "/admin/deletions/del_abc1") == HTTP_FOUND);
    CHECK_STR(m.arg, "del_abc1");
    CHECK(admin_match(EVHTTP_REQ_POST, "/admin/deletions/del_abc1/retry") == HTTP_FOUND);
    CHECK_STR(m.arg, "del_abc1");
    CHECK(m.route != NULL && m.route->suffix != NULL);
    CHECK(admin_match(EVHTTP_REQ_POST, "/admin/deletions/del_abc1/cancel") == HTTP_FOUND);
    CHECK(admin_match(EVHTTP_REQ_GET, "/admin/deletions/del_abc1/retry") == HTTP_NO_METHOD);
    CHECK(admin_match(EVHTTP_REQ_DELETE, "/admin/deletions/del_abc1") == HTTP_NO_METHOD);
    CHECK(admin_match(EVHTTP_REQ_POST, "/admin/deletions/del_abc1/other") == HTTP_NO_ROUTE);
    CHECK(admin_match(EVHTTP_REQ_POST, "/admin/deletions/del_abc1/retry/x") == HTTP_NO_ROUTE);
    /* A malformed id is refused before the method or the suffix count. */
    CHECK(admin_match(EVHTTP_REQ_GET, "/admin/deletions/") == HTTP_BAD_ID);
    CHECK(admin_match(EVHTTP_REQ_DELETE, "/admin/deletions/BAD") == HTTP_BAD_ID);
    CHECK(admin_match(EVHTTP_REQ_POST, "/admin/deletions/bad/other") == HTTP_BAD_ID);
    CHECK(m.label == MR_ADMIN);
    CHECK(admin_match(EVHTTP_REQ_GET,
                      "/admin/deletions/del_"
                      "0123456789012345678901234567890123456789012345678901234567890") ==
          HTTP_BAD_ID);
}

static void test_labels(void)
{
    CHECK(http_route_label(pub, N_PUB, "/webhooks/extend") == MR_WEBHOOK);
    CHECK(http_route_label(pub, N_PUB, "/v1/deletions/x/receipt") == MR_RECEIPT);
    CHECK(http_route_label(pub, N_PUB, "/healthz") == MR_HEALTHZ);
    CHECK(http_route_label(pub, N_PUB, "/admin/queue") == MR_OTHER);
    CHECK(http_route_label(pub, N_PUB, NULL) == MR_OTHER);
    CHECK(http_route_label(http_admin_routes, http_admin_n_routes, "/admin/x") == MR_ADMIN);
}

static void test_id_shape(void)
{
    CHECK(http_view_id_valid("del_abc123", 10));
    CHECK(!http_view_id_valid("del_", 4));
    CHECK(!http_view_id_valid("del_ABC", 7));
    CHECK(!http_view_id_valid("xyz_abc", 7));
    CHECK(!http_view_id_valid("del_a/b", 7));
}

int main(void)
{
    test_exact_and_method();
    test_prefix_and_suffix();
    test_admin_table();
    test_labels();
    test_id_shape();
    return check_done();
}

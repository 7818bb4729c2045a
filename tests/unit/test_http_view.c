/*
 * test_http_view.c: a deletion as the APIs write it. The text must be what
 * jansson writes for the same members (JSON_COMPACT | JSON_PRESERVE_ORDER):
 * each answer is parsed and dumped back, and the two must be the same
 * bytes; the members are then checked one by one.
 */
#include "check.h"
#include "http_view.h"
#include "queue.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

/* What http_view_write appends for v, in a new string (free it). */
static char *written(const struct queue_deletion_view *v, int with_attempts, const char *receipt)
{
    struct evbuffer *b = evbuffer_new();
    char *text;
    size_t len;

    if (b == NULL || http_view_write(b, v, with_attempts, receipt) != 0)
        abort();
    len = evbuffer_get_length(b);
    text = malloc(len + 1);
    if (text == NULL)
        abort();
    evbuffer_remove(b, text, len);
    text[len] = '\0';
    evbuffer_free(b);
    return text;
}

/* The text parsed, after checking that jansson dumps it back unchanged;
 * NULL (a failed check) when either is not so. */
static json_t *parsed_as_jansson_writes(const char *text)
{
    json_error_t e;
    json_t *o = json_loads(text, 0, &e);
    char *again;

    if (o == NULL) {
        fprintf(stderr, "not JSON (%s): %s\n", e.text, text);
        CHECK(o != NULL);
        return NULL;
    }
    again = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (again == NULL || strcmp(again, text) != 0)
        fprintf(stderr, "written: %s\njansson: %s\n", text, again != NULL ? again : "(null)");
    CHECK(again != NULL && strcmp(again, text) == 0);
    free(again);
    return o;
}

static const char *str_of(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void fill_view(struct queue_deletion_view *v)
{
    memset(v, 0, sizeof(*v));
    strcpy(v->deletion_id, "del_01m8tq92tqrsz4x2h9cyra8asg");
    v->job_id = 7;
    strcpy(v->account, "eu");
    v->resource = RES_EXTRACT_RUN;
    strcpy(v->resource_id, "exr_Xj8mK2pL9nR4vT7qY5wZ");
    v->state = DEL_DELETED;
    strcpy(v->source, "crm");
    strcpy(v->key, "msg_2Ke\"y\\");
    strcpy(v->request_id, "req_abc");
    /* Every kind of character the escaping treats apart: quote, backslash,
     * the named control characters, another control character, DEL,
     * two- to four-byte UTF-8 and a slash (not escaped). */
    strcpy(v->reason, "GDPR \"art. 17\" \\ a/b \b\f\n\r\t \x01\x1f\x7f caf\xc3\xa9 \xe2\x82\xac "
                      "\xf0\x9f\x98\x80");
    v->attempts = 2;
    v->last_http_status = 200;
    strcpy(v->last_upstream_request_id, "ureq_1");
    v->accepted_ms = 1796194179123;
    v->not_before_ms = 0;
    v->updated_ms = 1796194180456;
    v->next_attempt_ms = 0;
    v->completed_ms = 1796194180456;
    v->final_audit_seq = 1234567890123ULL;
    strcpy(v->final_audit_mac, "bee4a7a67c1618883ada37132daeba5d0f8c045f19c31ea8c82362af2c4a97c6");
    v->n_attempts = 2;
    v->attempt[0] = (struct queue_attempt_view){.started_ms = 1796194180400,
                                                .finished_ms = 1796194180450,
                                                .http_status = 200,
                                                .upstream_request_id = "ureq_1"};
    v->attempt[1] = (struct queue_attempt_view){.started_ms = 1796194179200,
                                                .finished_ms = 1796194179300,
                                                .http_status = 0,
                                                .error_code = "upstream_timeout",
                                                .detail = "no answer in 10 s"};
}

static void test_every_member(void)
{
    struct queue_deletion_view v;
    json_t *o, *who, *hist, *a;
    char *text;

    fill_view(&v);
    text = written(&v, 1, NULL);
    o = parsed_as_jansson_writes(text);
    REQUIRE(o != NULL);
    CHECK_STR(str_of(o, "id"), v.deletion_id);
    CHECK_STR(str_of(o, "state"), "deleted");
    CHECK_STR(str_of(o, "resource"), "extract_run");
    CHECK_STR(str_of(o, "resource_id"), v.resource_id);
    CHECK_STR(str_of(o, "account"), "eu");
    who = json_object_get(o, "requested_by");
    CHECK_STR(str_of(who, "type"), "client");
    CHECK_STR(str_of(who, "client_id"), "crm");
    CHECK_STR(str_of(who, "webhook_id"), v.key);
    CHECK_STR(str_of(o, "reason"), v.reason);
    CHECK_STR(str_of(o, "request_id"), "req_abc");
    CHECK(json_integer_value(json_object_get(o, "attempts")) == 2);
    CHECK(json_integer_value(json_object_get(o, "last_upstream_status")) == 200);
    CHECK(json_is_null(json_object_get(o, "last_error")));
    CHECK_STR(str_of(o, "accepted_at"), "2026-12-02T06:49:39.123Z");
    CHECK(json_is_null(json_object_get(o, "not_before")));
    CHECK(json_is_null(json_object_get(o, "next_attempt_at")));
    CHECK_STR(str_of(o, "completed_at"), "2026-12-02T06:49:40.456Z");
    CHECK(json_integer_value(json_object_get(json_object_get(o, "audit"), "seq")) ==
          1234567890123LL);
    CHECK_STR(str_of(json_object_get(o, "audit"), "mac"), v.final_audit_mac);
    CHECK(json_object_get(o, "receipt") == NULL);
    hist = json_object_get(o, "attempt_history");
    REQUIRE(json_array_size(hist) == 2);
    a = json_array_get(hist, 1);
    CHECK_STR(str_of(a, "started_at"), "2026-12-02T06:49:39.200Z");
    CHECK(json_is_null(json_object_get(a, "upstream_status")));
    CHECK(json_is_null(json_object_get(a, "upstream_request_id")));
    CHECK_STR(str_of(a, "error"), "upstream_timeout");
    CHECK_STR(str_of(a, "detail"), "no answer in 10 s");
    CHECK(json_integer_value(json_object_get(json_array_get(hist, 0), "upstream_status")) == 200);
    json_decref(o);
    free(text);
}

/* A webhook's deletion names the event; a list row has no history; a
 * deletion not finished has no audit member; a receipt goes in as it is. */
static void test_shapes(void)
{
    struct queue_deletion_view v;
    json_t *o, *who;
    char *text;

    fill_view(&v);
    strcpy(v.source, "extend");
    strcpy(v.key, "evt_123");
    v.state = DEL_QUEUED;
    v.final_audit_seq = 0;
    v.last_http_status = 0;
    v.reason[0] = '\0';
    text = written(&v, 0, "{\"statement\":{\"n\":1},\"signature\":\"c2ln\"}");
    o = parsed_as_jansson_writes(text);
    REQUIRE(o != NULL);
    who = json_object_get(o, "requested_by");
    CHECK_STR(str_of(who, "type"), "extend_webhook");
    CHECK_STR(str_of(who, "event_id"), "evt_123");
    CHECK(json_object_get(who, "client_id") == NULL);
    CHECK(json_is_null(json_object_get(o, "reason")));
    CHECK(json_is_null(json_object_get(o, "last_upstream_status")));
    CHECK(json_object_get(o, "audit") == NULL);
    CHECK(json_object_get(o, "attempt_history") == NULL);
    CHECK_STR(str_of(json_object_get(o, "receipt"), "signature"), "c2ln");
    json_decref(o);
    free(text);

    text = written(&v, 0, "null");
    o = parsed_as_jansson_writes(text);
    REQUIRE(o != NULL);
    CHECK(json_is_null(json_object_get(o, "receipt")));
    json_decref(o);
    free(text);
}

/* Bytes that are not UTF-8 (jansson would refuse the string) come out as
 * U+FFFD, and the answer stays JSON. */
static void test_invalid_utf8_is_replaced(void)
{
    static const char *const bad[] = {
        "a\x80z",             /* a stray continuation byte */
        "a\xc3z",             /* a lead byte without its continuation */
        "a\xc0\xafz",         /* an overlong '/' */
        "a\xed\xa0\x80z",     /* a surrogate */
        "a\xf4\x90\x80\x80z", /* past U+10FFFF */
        "a\xc3",              /* cut at the end */
    };
    struct queue_deletion_view v;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *text;
        json_t *o;

        fill_view(&v);
        strcpy(v.last_error, bad[i]);
        text = written(&v, 0, NULL);
        o = parsed_as_jansson_writes(text);
        if (o != NULL) {
            const char *e = str_of(o, "last_error");
            CHECK(e != NULL && e[0] == 'a' && strstr(e, "\xef\xbf\xbd") != NULL);
        }
        json_decref(o);
        free(text);
    }
}

int main(void)
{
    test_every_member();
    test_shapes();
    test_invalid_utf8_is_replaced();
    return check_done();
}

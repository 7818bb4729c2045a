/*
 * http_view.c: a deletion rendered as JSON (see http_view.h). Built as a
 * json_t once, so a list, an export page or a receipt-bearing row adds to
 * it without printing and parsing it back.
 */
#include "http_view.h"

#include <string.h>

#include "queue.h"
#include "resource.h"
#include "util.h"

int http_view_id_valid(const char *id, size_t len)
{
    if (len < 5 || len > QUEUE_DELETION_ID_MAX || strncmp(id, "del_", 4) != 0)
        return 0;
    for (size_t i = 4; i < len; i++) {
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
            return 0;
    }
    return 1;
}

static void set_time(json_t *o, const char *key, int64_t ms)
{
    char buf[40];

    if (ms <= 0) {
        json_object_set_new(o, key, json_null());
        return;
    }
    util_format_time_ms(ms, buf, sizeof(buf));
    json_object_set_new(o, key, json_string(buf));
}

static json_t *str_or_null(const char *s)
{
    return s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *attempts_json(const struct queue_deletion_view *v)
{
    json_t *list = json_array();

    for (int i = 0; list != NULL && i < v->n_attempts; i++) {
        const struct queue_attempt_view *a = &v->attempt[i];
        json_t *ao = json_object();

        set_time(ao, "started_at", a->started_ms);
        set_time(ao, "finished_at", a->finished_ms);
        json_object_set_new(ao, "upstream_status",
                            a->http_status ? json_integer(a->http_status) : json_null());
        json_object_set_new(ao, "upstream_request_id", str_or_null(a->upstream_request_id));
        json_object_set_new(ao, "error", str_or_null(a->error_code));
        json_object_set_new(ao, "detail", str_or_null(a->detail));
        json_array_append_new(list, ao);
    }
    return list;
}

json_t *http_view_json(const struct queue_deletion_view *v, int with_attempts)
{
    json_t *o = json_object(), *who = json_object();

    if (o == NULL || who == NULL) {
        json_decref(o);
        json_decref(who);
        return NULL;
    }
    json_object_set_new(o, "id", json_string(v->deletion_id));
    json_object_set_new(o, "state", json_string(deletion_state_name(v->state)));
    json_object_set_new(o, "resource", json_string(resource_name(v->resource)));
    json_object_set_new(o, "resource_id", json_string(v->resource_id));
    json_object_set_new(o, "account", json_string(v->account));
    if (strcmp(v->source, "extend") == 0) {
        json_object_set_new(who, "type", json_string("extend_webhook"));
        json_object_set_new(who, "event_id", json_string(v->key));
    } else {
        json_object_set_new(who, "type", json_string("client"));
        json_object_set_new(who, "client_id", json_string(v->source));
        json_object_set_new(who, "webhook_id", json_string(v->key));
    }
    json_object_set_new(o, "requested_by", who);
    json_object_set_new(o, "reason", str_or_null(v->reason));
    json_object_set_new(o, "request_id", str_or_null(v->request_id));
    json_object_set_new(o, "attempts", json_integer(v->attempts));
    json_object_set_new(o, "last_upstream_status",
                        v->last_http_status ? json_integer(v->last_http_status) : json_null());
    json_object_set_new(o, "last_upstream_request_id", str_or_null(v->last_upstream_request_id));
    json_object_set_new(o, "last_error", str_or_null(v->last_error));
    set_time(o, "accepted_at", v->accepted_ms);
    set_time(o, "not_before", v->not_before_ms);
    set_time(o, "updated_at", v->updated_ms);
    set_time(o, "next_attempt_at", v->next_attempt_ms);
    set_time(o, "completed_at", v->completed_ms);
    if (v->final_audit_seq > 0) {
        json_t *audit = json_object();

        json_object_set_new(audit, "seq", json_integer((json_int_t)v->final_audit_seq));
        json_object_set_new(audit, "mac", json_string(v->final_audit_mac));
        json_object_set_new(o, "audit", audit);
    }
    if (with_attempts)
        json_object_set_new(o, "attempt_history", attempts_json(v));
    return o;
}

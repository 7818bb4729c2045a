/*
 * erasure.c: an internal erasure request's body (see erasure.h).
 *
 *   (parsing and quoting input: json_body.c)
 *   item_parse:       one {"resource", "id", "reason", "not_before"}
 *   erasure_parse:    a single item or {"items": [...]}
 *
 * Each field has its own error code, whatever is wrong with it (missing,
 * wrong JSON type, bad value), so a client can switch on the code alone:
 * unknown_resource, invalid_id, invalid_reason, invalid_not_before. Keys
 * nobody knows are invalid_body. Messages start with the field's path
 * ("items[3].id: ...") and quote at most 64 bytes of input.
 */
#include "erasure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_body.h"

#include "util.h"

#define NOT_BEFORE_MAX_MS (INT64_C(366) * 86400 * 1000)
#define TIME_TEXT_MAX                                                                              \
    40 /* Printable text: no C0 controls, no DEL, no C1 controls (U+0080..U+009F,                  \
        * encoded C2 80..C2 9F). jansson has already checked the UTF-8. */
static int reason_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] < 0xa0)
            return 0;
    }
    return 1;
}

/* "account": an id's syntax only; whether it is configured is the caller's
 * to say. 0, or -1 with err. */
static int account_parse(const json_t *v, const char *where, char out[ERASURE_ACCOUNT_MAX + 1],
                         struct api_error *err)
{
    char q[JSON_BODY_SHOW_MAX + 4];
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);

    if (s == NULL) {
        api_error_set(err, 400, "invalid_account", "%s%saccount: must be a string", where,
                      where[0] ? "." : "");
        return -1;
    }
    if (!resource_account_id_valid(s, len)) {
        api_error_set(err, 400, "invalid_account",
                      "%s%saccount: \"%s\" is not 1..%d characters of [a-z0-9_-]", where,
                      where[0] ? "." : "", json_body_show(s, len, q), ERASURE_ACCOUNT_MAX);
        return -1;
    }
    memcpy(out, s, len + 1);
    return 0;
}

static int item_parse(json_t *obj, const char *where, int64_t now_ms, struct erasure_item *item,
                      struct api_error *err)
{
    json_t *jres = NULL, *jid = NULL, *jreason = NULL, *jnb = NULL, *jacct = NULL, *v;
    const char *key, *s;
    char q[JSON_BODY_SHOW_MAX + 4];
    int64_t ms;
    size_t len;

    memset(item, 0, sizeof(*item));
    if (!json_is_object(obj)) {
        api_error_set(err, 400, "invalid_body", "%s: must be a JSON object",
                      where[0] ? where : "body");
        return -1;
    }
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "resource") == 0) {
            jres = v;
        } else if (strcmp(key, "id") == 0) {
            jid = v;
        } else if (strcmp(key, "reason") == 0) {
            jreason = v;
        } else if (strcmp(key, "not_before") == 0) {
            jnb = v;
        } else if (strcmp(key, "account") == 0) {
            jacct = v;
        } else {
            /* Refused, so a typo ("not_befor") never silently drops a
             * condition on what is deleted and when. */
            api_error_set(err, 400, "invalid_body", "%s%s\"%s\": unknown key", where,
                          where[0] ? "." : "", json_body_show(key, strlen(key), q));
            return -1;
        }
    }

    if (jacct != NULL && account_parse(jacct, where, item->account, err) != 0)
        return -1;
    if (!json_is_string(jres)) {
        api_error_set(err, 400, "unknown_resource", "%s%sresource: %s", where, where[0] ? "." : "",
                      jres == NULL ? "is required" : "must be a string");
        return -1;
    }
    s = json_string_value(jres);
    if (resource_from_name(s, &item->resource) != 0) {
        api_error_set(err, 400, "unknown_resource",
                      "%s%sresource: \"%s\" is not one of extract_run, parse_run, classify_run, "
                      "split_run, edit_run, workflow_run, file",
                      where, where[0] ? "." : "", json_body_show(s, json_string_length(jres), q));
        return -1;
    }

    if (!json_is_string(jid)) {
        api_error_set(err, 400, "invalid_id", "%s%sid: %s", where, where[0] ? "." : "",
                      jid == NULL ? "is required" : "must be a string");
        return -1;
    }
    s = json_string_value(jid);
    len = json_string_length(jid);
    if (!resource_id_valid(s, len)) {
        api_error_set(err, 400, "invalid_id",
                      "%s%sid: \"%s\" is not 1..%d characters of [A-Za-z0-9_-]", where,
                      where[0] ? "." : "", json_body_show(s, len, q), RESOURCE_ID_MAX);
        return -1;
    }
    memcpy(item->id, s, len + 1);

    if (jreason != NULL && !json_is_null(jreason)) {
        if (!json_is_string(jreason)) {
            api_error_set(err, 400, "invalid_reason", "%s%sreason: must be a string", where,
                          where[0] ? "." : "");
            return -1;
        }
        s = json_string_value(jreason);
        len = json_string_length(jreason);
        if (len > ERASURE_REASON_MAX || !reason_ok(s, len)) {
            api_error_set(err, 400, "invalid_reason",
                          "%s%sreason: at most %d bytes of text without control characters", where,
                          where[0] ? "." : "", ERASURE_REASON_MAX);
            return -1;
        }
        memcpy(item->reason, s, len + 1);
    }

    if (jnb != NULL && !json_is_null(jnb)) {
        if (!json_is_string(jnb)) {
            api_error_set(err, 400, "invalid_not_before",
                          "%s%snot_before: must be an RFC 3339 string", where, where[0] ? "." : "");
            return -1;
        }
        s = json_string_value(jnb);
        len = json_string_length(jnb);
        if (len > TIME_TEXT_MAX || util_parse_rfc3339(s, &ms) != 0) {
            api_error_set(err, 400, "invalid_not_before",
                          "%s%snot_before: \"%s\" is not an RFC 3339 time "
                          "(2026-11-29T09:35:04Z)",
                          where, where[0] ? "." : "", json_body_show(s, len, q));
            return -1;
        }
        if (ms - now_ms > NOT_BEFORE_MAX_MS) {
            api_error_set(err, 400, "invalid_not_before",
                          "%s%snot_before: more than 366 days ahead", where, where[0] ? "." : "");
            return -1;
        }
        /* A time already past means "now"; keeping it as now makes the
         * stored value say when the request allowed the deletion. */
        item->not_before_ms = ms > now_ms ? ms : now_ms;
    }
    return 0;
}

int erasure_parse(const char *body, size_t len, int max_items, int64_t now_ms,
                  struct erasure_item **items, int *n, struct api_error *err)
{
    struct erasure_item *out = NULL;
    json_t *root, *list, *v, *jacct;
    char where[32], account[ERASURE_ACCOUNT_MAX + 1] = "";
    size_t count, i;
    int rc = -1;

    *items = NULL;
    *n = 0;
    root = json_body_load(body, len, err);
    if (root == NULL)
        return -1;
    if (!json_is_object(root)) {
        api_error_set(err, 400, "invalid_body", "body: must be a JSON object");
        goto fail;
    }
    list = json_object_get(root, "items");
    if (list == NULL) {
        out = calloc(1, sizeof(*out));
        if (out == NULL) {
            api_error_set(err, 503, "out_of_memory", "body: out of memory");
            goto fail;
        }
        if (item_parse(root, "", now_ms, out, err) != 0)
            goto fail;
        count = 1;
    } else {
        jacct = json_object_get(root, "account");
        if (json_object_size(root) != 1 + (jacct != NULL)) {
            api_error_set(err, 400, "invalid_body",
                          "body: \"items\" can only be combined with \"account\"");
            goto fail;
        }
        if (jacct != NULL && account_parse(jacct, "", account, err) != 0)
            goto fail;
        if (!json_is_array(list)) {
            api_error_set(err, 400, "invalid_body", "items: must be an array");
            goto fail;
        }
        count = json_array_size(list);
        if (count == 0) {
            api_error_set(err, 400, "empty_batch", "items: must hold at least one item");
            goto fail;
        }
        if (max_items < 1 || count > (size_t)max_items) {
            api_error_set(err, 400, "batch_too_large", "items: at most %d items, got %zu",
                          max_items, count);
            goto fail;
        }
        out = calloc(count, sizeof(*out));
        if (out == NULL) {
            api_error_set(err, 503, "out_of_memory", "items: out of memory");
            goto fail;
        }
        /* Duplicates are kept: the queue coalesces them, and refusing
         * would make a client's honest retry-with-overlap fail. */
        json_array_foreach(list, i, v)
        {
            snprintf(where, sizeof(where), "items[%zu]", i);
            if (item_parse(v, where, now_ms, &out[i], err) != 0)
                goto fail;
            /* The batch's account serves the items that name none. */
            if (out[i].account[0] == '\0')
                memcpy(out[i].account, account, sizeof(account));
        }
    }
    *items = out;
    *n = (int)count;
    out = NULL;
    rc = 0;
fail:
    free(out);
    json_decref(root);
    return rc;
}

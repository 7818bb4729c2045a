/*
 * webhook.c: from a verified Extend event to its deletions (see webhook.h).
 *
 *   (parsing and quoting input: json_body.c)
 *   envelope_check:  eventId, eventType, payload
 *   rule_find:       the first rule whose event matches
 *   run_kind:        which resource "run" means for this payload
 *   plan_add:        append one deletion, without duplicates
 *   webhook_plan:    the whole decision
 *
 * Errors are 400s with stable codes; a message names the JSON field and
 * quotes at most 64 bytes of input, non-printable bytes shown as '?'.
 */
#include "webhook.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "json_body.h"

#define FILES_MAX 100

/* The payload members read whole, at any depth of the outline. */
static const char *const webhook_kept_members[] = {"file", "files", NULL};

static int event_id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

static int envelope_check(json_t *root, struct webhook_plan *plan, json_t **payload,
                          struct api_error *err)
{
    json_t *jid, *jtype;
    const char *s;
    size_t len;
    char q[JSON_BODY_SHOW_MAX + 4];

    if (!json_is_object(root)) {
        api_error_set(err, 400, "invalid_body", "body: must be a JSON object");
        return -1;
    }
    jid = json_object_get(root, "eventId");
    if (!json_is_string(jid)) {
        api_error_set(err, 400, "invalid_body", "eventId: must be a string");
        return -1;
    }
    s = json_string_value(jid);
    len = json_string_length(jid);
    if (len == 0 || len > WEBHOOK_EVENT_ID_MAX) {
        api_error_set(err, 400, "invalid_body", "eventId: must be 1..%d characters",
                      WEBHOOK_EVENT_ID_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!event_id_char((unsigned char)s[i])) {
            api_error_set(err, 400, "invalid_body",
                          "eventId: \"%s\" has a character outside [A-Za-z0-9_.:-]",
                          json_body_show(s, len, q));
            return -1;
        }
    }
    memcpy(plan->event_id, s, len + 1);

    jtype = json_object_get(root, "eventType");
    if (!json_is_string(jtype)) {
        api_error_set(err, 400, "invalid_body", "eventType: must be a string");
        return -1;
    }
    s = json_string_value(jtype);
    len = json_string_length(jtype);
    if (len == 0 || len > WEBHOOK_EVENT_TYPE_MAX) {
        api_error_set(err, 400, "invalid_body", "eventType: must be 1..%d characters",
                      WEBHOOK_EVENT_TYPE_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f) {
            api_error_set(err, 400, "invalid_body", "eventType: \"%s\" must be printable ASCII",
                          json_body_show(s, len, q));
            return -1;
        }
    }
    memcpy(plan->event_type, s, len + 1);

    *payload = json_object_get(root, "payload");
    if (!json_is_object(*payload)) {
        api_error_set(err, 400, "invalid_body", "payload: must be a JSON object");
        return -1;
    }
    return 0;
}

static const struct rule *rule_find(const struct rule *rules, int n_rules, const char *type)
{
    for (int i = 0; i < n_rules; i++) {
        const char *ev = rules[i].event;
        size_t len;

        if (ev == NULL)
            continue;
        len = strlen(ev);
        if (len > 0 && ev[len - 1] == '*') {
            if (strncmp(type, ev, len - 1) == 0)
                return &rules[i];
        } else if (strcmp(type, ev) == 0) {
            return &rules[i];
        }
    }
    return NULL;
}

/* The resource "run" names: payload.object, or for a signed_data_url the
 * eventType's first segment. 0 with *out, or -1 when this event's object is
 * not a run the API deletes (batch runs, extractors, files, unknown kinds):
 * that is not an error, Extend adds kinds without notice. */
static int run_kind(json_t *payload, const char *event_type, enum resource *out)
{
    json_t *jobj = json_object_get(payload, "object");
    const char *obj, *dot;
    char prefix[WEBHOOK_EVENT_TYPE_MAX + 1];

    if (!json_is_string(jobj))
        return -1;
    obj = json_string_value(jobj);
    if (strcmp(obj, "signed_data_url") != 0) {
        if (resource_from_name(obj, out) != 0)
            return -1;
    } else {
        dot = strchr(event_type, '.');
        if (dot == NULL)
            return -1;
        memcpy(prefix, event_type, (size_t)(dot - event_type));
        prefix[dot - event_type] = '\0';
        if (resource_from_name(prefix, out) != 0)
            return -1;
    }
    /* "run" means a run: a file event under a catch-all rule must not
     * delete the file it announces. Files go through "file" only. */
    return *out == RES_FILE ? -1 : 0;
}

/* A valid id string from field, or NULL with err naming the field. */
static const char *id_of(json_t *v, const char *field, struct api_error *err)
{
    char q[JSON_BODY_SHOW_MAX + 4];

    if (!json_is_string(v)) {
        api_error_set(err, 400, "invalid_id", "%s: must be a string", field);
        return NULL;
    }
    if (!resource_id_valid(json_string_value(v), json_string_length(v))) {
        api_error_set(err, 400, "invalid_id", "%s: \"%s\" is not 1..%d characters of [A-Za-z0-9_-]",
                      field, json_body_show(json_string_value(v), json_string_length(v), q),
                      RESOURCE_ID_MAX);
        return NULL;
    }
    return json_string_value(v);
}

/* Appends a deletion unless it is already planned. -1 when it is new and
 * the plan already holds limit items. */
static int plan_add(struct webhook_plan *plan, enum resource r, const char *id,
                    int64_t not_before_ms, int limit)
{
    for (int i = 0; i < plan->n; i++) {
        if (plan->items[i].resource == r && strcmp(plan->items[i].id, id) == 0)
            return 0;
    }
    if (plan->n >= limit || plan->n >= WEBHOOK_MAX_DELETIONS)
        return -1;
    plan->items[plan->n].resource = r;
    snprintf(plan->items[plan->n].id, sizeof(plan->items[plan->n].id), "%s", id);
    plan->items[plan->n].not_before_ms = not_before_ms;
    plan->n++;
    return 0;
}

static int plan_files(json_t *payload, int64_t not_before_ms, struct webhook_plan *plan,
                      struct api_error *err)
{
    json_t *file = json_object_get(payload, "file");
    json_t *files = json_object_get(payload, "files");
    int limit = plan->n + FILES_MAX; /* distinct files, after the run */
    const char *id;
    char field[48];
    size_t i;
    json_t *f;

    if (file != NULL && !json_is_null(file)) {
        if (!json_is_object(file)) {
            api_error_set(err, 400, "invalid_body", "payload.file: must be an object or null");
            return -1;
        }
        if ((id = id_of(json_object_get(file, "id"), "payload.file.id", err)) == NULL)
            return -1;
        if (plan_add(plan, RES_FILE, id, not_before_ms, limit) != 0)
            goto too_many;
    }
    if (files == NULL || json_is_null(files))
        return 0;
    if (!json_is_array(files)) {
        api_error_set(err, 400, "invalid_body", "payload.files: must be an array or null");
        return -1;
    }
    json_array_foreach(files, i, f)
    {
        if (json_is_null(f))
            continue;
        snprintf(field, sizeof(field), "payload.files[%zu].id", i);
        if (!json_is_object(f)) {
            api_error_set(err, 400, "invalid_body", "payload.files[%zu]: must be an object", i);
            return -1;
        }
        if ((id = id_of(json_object_get(f, "id"), field, err)) == NULL)
            return -1;
        if (plan_add(plan, RES_FILE, id, not_before_ms, limit) != 0)
            goto too_many;
    }
    return 0;
too_many:
    api_error_set(err, 400, "too_many_files", "payload.files: more than %d distinct files",
                  FILES_MAX);
    return -1;
}

int webhook_plan(const char *body, size_t len, const struct rule *rules, int n_rules,
                 int64_t now_ms, struct webhook_plan *plan, struct api_error *err)
{
    json_t *root, *payload = NULL;
    const struct rule *rule;
    int64_t not_before_ms = 0;
    enum resource kind;
    const char *id;
    int rc = -1;

    /* Only the header: the 27 KB of items are written as they are planned. */
    memset(plan, 0, offsetof(struct webhook_plan, items));
    /* Only the envelope, the payload's scalars and its files are read; the
     * extraction output and the rest are checked, not built. */
    root = json_body_load_outline(body, len, webhook_kept_members, err);
    if (root == NULL)
        return -1;
    if (envelope_check(root, plan, &payload, err) != 0)
        goto fail;
    rule = rule_find(rules, n_rules, plan->event_type);
    if (rule == NULL) {
        rc = 0; /* answered 2xx and ignored: new event types appear unannounced */
        goto fail;
    }
    plan->matched = 1;
    /* Config bounds the delay; the clamp keeps a bad one from overflowing. */
    if (rule->delay_seconds > 0 && rule->delay_seconds <= INT64_C(366) * 86400)
        not_before_ms = now_ms + rule->delay_seconds * 1000;
    else if (rule->delay_seconds > 0)
        not_before_ms = now_ms + INT64_C(366) * 86400 * 1000;

    if ((rule->deletes & RULE_DELETE_RUN) && run_kind(payload, plan->event_type, &kind) == 0) {
        if ((id = id_of(json_object_get(payload, "id"), "payload.id", err)) == NULL)
            goto fail;
        plan_add(plan, kind, id, not_before_ms, WEBHOOK_MAX_DELETIONS);
    }
    if ((rule->deletes & RULE_DELETE_FILE) && plan_files(payload, not_before_ms, plan, err) != 0)
        goto fail;
    rc = 0;
fail:
    json_decref(root);
    if (rc != 0) {
        plan->n = 0;
        plan->matched = 0;
    }
    return rc;
}

/*
 * sim_control.c: extend-sim's memory and its control API. The deleted-id
 * set (open addressing, bounded), the request log (bounded, in arrival
 * order), the fault rules and how a DELETE picks one, and the /_sim/
 * routes that a test uses to inject faults and read back what arrived.
 */
#include "sim.h"

/* ---------- the deleted-id set ---------- */

static uint64_t sim_hash(const char *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

void sim_deleted_clear(struct sim *s)
{
    for (size_t i = 0; i < s->deleted_cap; i++)
        free(s->deleted[i]);
    free(s->deleted);
    s->deleted = NULL;
    s->deleted_cap = s->deleted_n = 0;
}

/* Adds key; returns 1 if it was already there, 0 if added (or not kept
 * because the set is full), -1 on allocation failure. */
int sim_deleted_add(struct sim *s, const char *key)
{
    if (s->deleted_cap == 0 || (s->deleted_n + 1) * 10 > s->deleted_cap * 7) {
        size_t ncap = s->deleted_cap ? s->deleted_cap * 2 : 1024;
        char **n = calloc(ncap, sizeof(*n));
        if (n == NULL)
            return -1;
        for (size_t i = 0; i < s->deleted_cap; i++) {
            if (s->deleted[i] == NULL)
                continue;
            size_t j = sim_hash(s->deleted[i]) & (ncap - 1);
            while (n[j] != NULL)
                j = (j + 1) & (ncap - 1);
            n[j] = s->deleted[i];
        }
        free(s->deleted);
        s->deleted = n;
        s->deleted_cap = ncap;
    }
    size_t j = sim_hash(key) & (s->deleted_cap - 1);
    while (s->deleted[j] != NULL) {
        if (strcmp(s->deleted[j], key) == 0)
            return 1;
        j = (j + 1) & (s->deleted_cap - 1);
    }
    if (s->deleted_n >= SIM_MAX_DELETED)
        return 0;
    if ((s->deleted[j] = strdup(key)) == NULL)
        return -1;
    s->deleted_n++;
    return 0;
}

/* ---------- the request log ---------- */

void sim_log_clear(struct sim *s)
{
    for (int64_t i = 0; i < s->n_slots; i++) {
        free(s->slots[i].line);
        json_decref(s->slots[i].record);
    }
    free(s->slots);
    s->slots = NULL;
    s->n_slots = s->cap_slots = s->log_dropped = 0;
}

/* Reserves the next slot for rec (a new reference is taken); -1 when full. */
int64_t sim_log_reserve(struct sim *s, json_t *rec)
{
    if (s->n_slots >= SIM_MAX_LOG) {
        s->log_dropped++;
        return -1;
    }
    if (s->n_slots == s->cap_slots) {
        int64_t ncap = s->cap_slots ? s->cap_slots * 2 : 1024;
        struct log_slot *n = realloc(s->slots, (size_t)ncap * sizeof(*n));
        if (n == NULL) {
            s->log_dropped++;
            return -1;
        }
        s->slots = n;
        s->cap_slots = ncap;
    }
    s->slots[s->n_slots].line = NULL;
    s->slots[s->n_slots].record = json_incref(rec);
    return s->n_slots++;
}

/* ---------- fault rules ---------- */

struct fault *sim_match_fault(struct sim *s, const char *id)
{
    for (int i = 0; i < s->n_faults; i++) {
        struct fault *f = &s->faults[i];
        if (f->count == 0)
            continue;
        if (f->match[0] == '\0' || strstr(id, f->match) != NULL) {
            if (f->count > 0)
                f->count--;
            return f;
        }
    }
    return NULL;
}

/* ---------- control routes ---------- */

static int sim_fault_parse(json_t *o, struct fault *f, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    memset(f, 0, sizeof(*f));
    f->count = 1;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "a rule must be an object");
        return -1;
    }
    json_object_foreach(o, key, v)
    {
        bool str = json_is_string(v);
        const char *sv = str ? json_string_value(v) : NULL;
        if (str && strlen(sv) >= SIM_TEXT) {
            snprintf(err, errlen, "%s: too long", key);
            return -1;
        }
        if (strcmp(key, "match") == 0 && str) {
            sim_copy(f->match, sizeof(f->match), sv);
        } else if (strcmp(key, "count") == 0 && json_is_integer(v) && json_integer_value(v) >= -1 &&
                   json_integer_value(v) <= 1000000000) {
            f->count = json_integer_value(v);
        } else if (strcmp(key, "status") == 0 && json_is_integer(v) &&
                   json_integer_value(v) >= 400 && json_integer_value(v) <= 599) {
            f->status = (int)json_integer_value(v);
        } else if (strcmp(key, "code") == 0 && str) {
            sim_copy(f->code, sizeof(f->code), sv);
        } else if (strcmp(key, "retry_after") == 0 && (str || json_is_integer(v))) {
            if (str)
                sim_copy(f->retry_after, sizeof(f->retry_after), sv);
            else
                snprintf(f->retry_after, sizeof(f->retry_after), "%" JSON_INTEGER_FORMAT,
                         json_integer_value(v));
        } else if (strcmp(key, "ratelimit_reset") == 0 && (str || json_is_integer(v))) {
            if (str)
                sim_copy(f->ratelimit_reset, sizeof(f->ratelimit_reset), sv);
            else
                snprintf(f->ratelimit_reset, sizeof(f->ratelimit_reset), "%" JSON_INTEGER_FORMAT,
                         json_integer_value(v));
        } else if (strcmp(key, "delay_ms") == 0 && json_is_integer(v) &&
                   json_integer_value(v) >= 0 && json_integer_value(v) <= SIM_MAX_DELAY_MS) {
            f->delay_ms = (int)json_integer_value(v);
        } else if (strcmp(key, "action") == 0 && str &&
                   (strcmp(sv, "respond") == 0 || strcmp(sv, "drop") == 0 ||
                    strcmp(sv, "plain") == 0)) {
            f->action = sv[0] == 'd' ? ACT_DROP : sv[0] == 'p' ? ACT_PLAIN : ACT_RESPOND;
        } else {
            snprintf(err, errlen, "%s: unknown key or bad value", key);
            return -1;
        }
        /* Header values go out verbatim: refuse anything that could split them. */
        if (str && strpbrk(sv, "\r\n") != NULL) {
            snprintf(err, errlen, "%s: control characters", key);
            return -1;
        }
    }
    if (f->action == ACT_PLAIN && f->status == 0) {
        snprintf(err, errlen, "action plain needs a status");
        return -1;
    }
    return 0;
}

static json_t *sim_fault_json(const struct fault *f)
{
    static const char *const acts[] = {"respond", "drop", "plain"};
    return json_pack("{s:s, s:I, s:i, s:s, s:s, s:s, s:i, s:s}", "match", f->match, "count",
                     (json_int_t)f->count, "status", f->status, "code", f->code, "retry_after",
                     f->retry_after, "ratelimit_reset", f->ratelimit_reset, "delay_ms", f->delay_ms,
                     "action", acts[f->action]);
}

void sim_handle_faults(struct sim *s, struct evhttp_request *req)
{
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    json_error_t jerr;
    json_t *doc = NULL, *one;
    struct fault parsed[64];
    char err[256] = "";
    size_t i, n;

    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        json_t *arr = json_array();
        for (int k = 0; k < s->n_faults; k++)
            json_array_append_new(arr, sim_fault_json(&s->faults[k]));
        sim_send_json(req, 200, arr);
        return;
    }
    doc = json_loadb((const char *)evbuffer_pullup(body, -1), len, 0, &jerr);
    if (doc == NULL) {
        snprintf(err, sizeof(err), "invalid JSON: %s", jerr.text);
        goto fail;
    }
    if (json_is_object(doc)) {
        json_t *arr = json_array();
        json_array_append(arr, doc);
        json_decref(doc);
        doc = arr;
    }
    n = json_array_size(doc);
    if (!json_is_array(doc) || n > sizeof(parsed) / sizeof(*parsed) ||
        s->n_faults + (int)n > SIM_MAX_FAULTS) {
        snprintf(err, sizeof(err), "expected an array of at most 64 rules (%d in all)",
                 SIM_MAX_FAULTS);
        goto fail;
    }
    /* All or nothing: a bad rule adds none of its batch. */
    json_array_foreach(doc, i, one)
    {
        if (sim_fault_parse(one, &parsed[i], err, sizeof(err)) < 0)
            goto fail;
    }
    memcpy(&s->faults[s->n_faults], parsed, n * sizeof(*parsed));
    s->n_faults += (int)n;
    json_decref(doc);
    sim_send_json(req, 200, json_pack("{s:I, s:i}", "added", (json_int_t)n, "total", s->n_faults));
    return;
fail:
    json_decref(doc);
    sim_send_error(s, req, 400, "INVALID_REQUEST", err);
}

void sim_handle_reset(struct sim *s, struct evhttp_request *req)
{
    s->n_faults = 0;
    sim_log_clear(s);
    sim_deleted_clear(s);
    /* Waiting DELETEs keep their slot index; drop them from the log. */
    for (struct pending *p = s->pending; p != NULL; p = p->next)
        p->slot = -1;
    s->seq = 0;
    s->deletes = s->dropped = s->connections_opened = 0;
    s->max_concurrent = s->in_flight;
    s->rate_last = 0; /* a full bucket again */
    memset(s->by_status, 0, sizeof(s->by_status));
    sim_send_json(req, 200, json_pack("{s:b}", "reset", 1));
}

void sim_handle_requests(struct sim *s, struct evhttp_request *req, const char *query)
{
    struct evbuffer *buf = evbuffer_new();
    struct evkeyvalq q;
    int64_t since = 0;
    bool first = true;

    TAILQ_INIT(&q);
    if (query != NULL && evhttp_parse_query_str(query, &q) == 0) {
        const char *v = evhttp_find_header(&q, "since");
        if (v != NULL && sim_parse_int(v, 0, INT64_MAX, &since) < 0)
            since = 0;
    }
    evhttp_clear_headers(&q);
    if (buf == NULL) {
        sim_send_text(req, 500, "out of memory");
        return;
    }
    evbuffer_add(buf, "[", 1);
    for (int64_t i = since < s->n_slots ? since : s->n_slots; i < s->n_slots; i++) {
        char *tmp = NULL;
        const char *line = s->slots[i].line;
        if (line == NULL && s->slots[i].record != NULL)
            line = tmp = json_dumps(s->slots[i].record, JSON_COMPACT);
        if (line == NULL)
            continue;
        if (!first)
            evbuffer_add(buf, ",\n", 2);
        evbuffer_add(buf, line, strlen(line));
        first = false;
        free(tmp);
    }
    evbuffer_add(buf, "]\n", 2);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
}

void sim_handle_stats(struct sim *s, struct evhttp_request *req)
{
    json_t *by = json_object();
    char key[8];
    for (int i = 0; i < 600; i++) {
        if (s->by_status[i] == 0)
            continue;
        snprintf(key, sizeof(key), "%d", i);
        json_object_set_new(by, key, json_integer(s->by_status[i]));
    }
    sim_send_json(req, 200,
                  json_pack("{s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:i}", "deletes",
                            (json_int_t)s->deletes, "by_status", by, "dropped",
                            (json_int_t)s->dropped, "max_concurrent", (json_int_t)s->max_concurrent,
                            "in_flight", (json_int_t)s->in_flight, "connections_opened",
                            (json_int_t)s->connections_opened, "deleted_ids",
                            (json_int_t)s->deleted_n, "log_dropped", (json_int_t)s->log_dropped,
                            "faults", s->n_faults));
}

/*
 * cmd_ctl.c: `deletion-gateway ctl`, the operator commands against the
 * admin listener.
 *
 *   transport  one probe_http() request to the admin listener, answer
 *              collected (bounded) and parsed
 *   output     a table for people (the default on a terminal), indented
 *              JSON for scripts (--json, and whenever stdout is not a
 *              terminal, so pipes keep working as before)
 *   commands   show, list, retry, cancel, pause, resume: one request each;
 *              retry --all-dead and export: many, with progress on stderr
 *              when it is a terminal; find: every deletion of a resource
 *
 * The admin token comes from DG_ADMIN_TOKEN or the config's admin.token,
 * never from the command line, where other users could read it. Exit
 * codes: 0 done, 1 the gateway refused (its error is printed), 2 usage,
 * configuration or connection errors.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd.h"
#include "config.h"
#include "probe.h"
#include "queue.h"
#include "resource.h"
#include "util.h"

#define CTL_ANSWER_MAX (16u << 20) /* a 1000-row export page with receipts is ~3 MB */
#define CTL_EXPORT_PAGE 500
#define CTL_FIND_MAX 10000 /* one resource's deletions, held in memory by find */
#define CTL_TRIES 3        /* an export page is asked again after a 503 or a lost connection */

struct ctl {
    char base[300];
    const char *token;
    int json; /* 1: JSON out; 0: a table */
};

/* ---- transport ---- */

/* One request. Returns the HTTP status with *answer (parsed JSON, or NULL
 * when the body is not JSON), or -1 on a connection error, said on stderr.
 * With text non-NULL, a 2xx answer's body is handed over there unparsed
 * instead (free it; *answer stays NULL). */
static long call_text(const struct ctl *c, const char *method, const char *path, json_t **answer,
                      char **text)
{
    struct probe_request rq = {
        .method = method,
        .bearer = c->token,
        .agent = "deletion-gateway-ctl",
        .timeout_ms = 60000,
        .max_answer = CTL_ANSWER_MAX,
    };
    struct probe_answer a = {0};
    char url[1400], err[300];
    long status;

    *answer = NULL;
    snprintf(url, sizeof(url), "%s%s", c->base, path);
    rq.url = url;
    if (probe_http(&rq, &a, err, sizeof(err)) != 0) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", c->base, err);
        return -1;
    }
    if (text != NULL && a.status >= 200 && a.status < 300) {
        *text = a.body;
        a.body = NULL;
    } else if (a.body != NULL) {
        *answer = json_loads(a.body, 0, NULL);
    }
    status = a.status;
    probe_answer_free(&a);
    return status;
}

static long call(const struct ctl *c, const char *method, const char *path, json_t **answer)
{
    return call_text(c, method, path, answer, NULL);
}

/* The gateway's error, on stderr: 1. */
static int refused(long status, json_t *answer)
{
    const char *code = json_string_value(json_object_get(json_object_get(answer, "error"), "code"));
    const char *msg =
        json_string_value(json_object_get(json_object_get(answer, "error"), "message"));

    fprintf(stderr, "deletion-gateway: %ld %s: %s\n", status, code ? code : "error",
            msg ? msg : "the gateway refused");
    return 1;
}

/* ---- output ---- */

static void print_json(json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if (text != NULL)
        printf("%s\n", text);
    free(text);
}

/* A scalar as text for a table cell ("-" for null and absent). */
static void cell(json_t *v, char *out, size_t len)
{
    if (v == NULL || json_is_null(v))
        snprintf(out, len, "-");
    else if (json_is_string(v))
        snprintf(out, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, len, "%.1f", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(out, len, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(out, len, "...");
}

/* An object as "key  value" lines, nested objects as dotted keys. */
static void print_fields(json_t *o, const char *prefix)
{
    const char *k;
    json_t *v;
    char key[128], val[600];

    json_object_foreach(o, k, v)
    {
        snprintf(key, sizeof(key), "%s%s", prefix, k);
        if (json_is_object(v)) {
            strncat(key, ".", sizeof(key) - strlen(key) - 1);
            print_fields(v, key);
        } else if (!json_is_array(v)) {
            cell(v, val, sizeof(val));
            printf("%-28s %s\n", key, val);
        }
    }
}

/* Who asked, in one cell: "extend evt_..." or "crm msg_...". */
static void who(json_t *d, char *out, size_t len)
{
    json_t *by = json_object_get(d, "requested_by");
    const char *type = json_string_value(json_object_get(by, "type"));

    if (type != NULL && strcmp(type, "extend_webhook") == 0)
        snprintf(out, len, "extend %s", json_string_value(json_object_get(by, "event_id")));
    else
        snprintf(out, len, "%s %s", json_string_value(json_object_get(by, "client_id")),
                 json_string_value(json_object_get(by, "webhook_id")));
}

static void print_rows_header(void)
{
    printf("%-30s %-10s %-13s %-30s %-24s %-24s %-24s %s\n", "ID", "STATE", "RESOURCE",
           "RESOURCE_ID", "ACCEPTED", "COMPLETED", "REQUESTED_BY", "LAST");
}

static void print_row(json_t *d)
{
    char st[24], res[24], rid[260], acc[40], done[40], by[400], last[120], status[16];

    cell(json_object_get(d, "state"), st, sizeof(st));
    cell(json_object_get(d, "resource"), res, sizeof(res));
    cell(json_object_get(d, "resource_id"), rid, sizeof(rid));
    cell(json_object_get(d, "accepted_at"), acc, sizeof(acc));
    cell(json_object_get(d, "completed_at"), done, sizeof(done));
    cell(json_object_get(d, "last_upstream_status"), status, sizeof(status));
    cell(json_object_get(d, "last_error"), last, sizeof(last));
    who(d, by, sizeof(by));
    if (strcmp(status, "-") != 0 && strcmp(last, "-") == 0)
        snprintf(last, sizeof(last), "%s", status);
    else if (strcmp(status, "-") != 0)
        snprintf(last + strlen(last), sizeof(last) - strlen(last), " (%s)", status);
    printf("%-30s %-10s %-13s %-30s %-24s %-24s %-24s %s\n",
           json_string_value(json_object_get(d, "id")), st, res, rid, acc, done, by, last);
}

static void print_table(json_t *answer)
{
    json_t *list = json_object_get(answer, "deletions"), *d, *attempts;
    size_t i;

    if (json_is_array(list)) {
        print_rows_header();
        json_array_foreach(list, i, d) print_row(d);
        printf("(%zu deletion%s)\n", json_array_size(list), json_array_size(list) == 1 ? "" : "s");
        return;
    }
    print_fields(answer, "");
    attempts = json_object_get(answer, "attempt_history");
    if (json_array_size(attempts) > 0) {
        printf("\n%-24s %-8s %-24s %s\n", "ATTEMPT STARTED", "STATUS", "ERROR", "EXTEND REQUEST");
        json_array_foreach(attempts, i, d)
        {
            char s[40], st[16], e[80], r[140];

            cell(json_object_get(d, "started_at"), s, sizeof(s));
            cell(json_object_get(d, "upstream_status"), st, sizeof(st));
            cell(json_object_get(d, "error"), e, sizeof(e));
            cell(json_object_get(d, "upstream_request_id"), r, sizeof(r));
            printf("%-24s %-8s %-24s %s\n", s, st, e, r);
        }
    }
}

static void show(const struct ctl *c, json_t *answer)
{
    if (c->json)
        print_json(answer);
    else
        print_table(answer);
}

/* ---- commands ---- */

/* One request that must answer 2xx: 0 with *answer (json_decref it), or
 * the exit code (1 refused, said on stderr; 2 no answer). */
static int call_ok(const struct ctl *c, const char *method, const char *path, json_t **answer)
{
    long status = call(c, method, path, answer);
    int rc = 0;

    if (status < 0)
        rc = 2;
    else if (status < 200 || status >= 300)
        rc = refused(status, *answer);
    if (rc != 0) {
        json_decref(*answer);
        *answer = NULL;
    }
    return rc;
}

/* JSON out: the answer is printed as it came, indented, without parsing
 * it into a tree and dumping it again (a page of a thousand deletions
 * costs more that way than the request). */
static int simple_json(const struct ctl *c, const char *method, const char *path)
{
    json_t *answer = NULL;
    char *text = NULL;
    long status = call_text(c, method, path, &answer, &text);
    int rc = 0;

    if (status < 0) {
        rc = 2;
    } else if (status < 200 || status >= 300) {
        rc = refused(status, answer);
    } else if (text == NULL || util_json_indent(stdout, text) != 0) {
        fprintf(stderr, "\ndeletion-gateway: the answer is not JSON\n");
        rc = 2;
    } else {
        printf("\n");
    }
    json_decref(answer);
    free(text);
    return rc;
}

static int simple(const struct ctl *c, const char *method, const char *path)
{
    json_t *answer;
    int rc;

    if (c->json)
        return simple_json(c, method, path);
    rc = call_ok(c, method, path, &answer);

    if (rc == 0)
        show(c, answer);
    json_decref(answer);
    return rc;
}

/* Each call retries at most a batch of the dead (the queue bounds one
 * commit); asking again until nothing changes retries every one, and the
 * count read first bounds the loop should new ones keep dying. */
static int retry_all_dead(const struct ctl *c)
{
    json_t *answer = NULL;
    json_int_t dead, total = 0, changed;
    int tty = isatty(STDERR_FILENO), rc;

    if ((rc = call_ok(c, "GET", "/admin/queue", &answer)) != 0)
        return rc;
    dead = json_integer_value(json_object_get(json_object_get(answer, "deletions"), "dead"));
    json_decref(answer);
    do {
        if ((rc = call_ok(c, "POST", "/admin/retry-dead", &answer)) != 0)
            return rc;
        changed = json_integer_value(json_object_get(answer, "changed"));
        json_decref(answer);
        total += changed;
        if (tty)
            fprintf(stderr, "\rretried %lld of %lld dead deletion(s)", (long long)total,
                    (long long)dead);
    } while (changed > 0 && total < dead);
    if (tty)
        fprintf(stderr, "\n");
    answer = json_pack("{s:s,s:I}", "action", "retry-dead", "changed", total);
    show(c, answer);
    json_decref(answer);
    return 0;
}

struct export_opts {
    const char *since, *until, *source, *resource_id, *state;
    int csv, receipts;
};

/* One CSV cell, RFC 4180 quoted. A cell that a spreadsheet would run as a
 * formula (=, +, -, @, tab, CR first) gets a leading apostrophe: reasons
 * and keys come from outside, and the file is opened by people. Objects
 * (a receipt) are their compact JSON. */
static void csv_cell(FILE *out, json_t *v, int last)
{
    char buf[64], *text = NULL;
    const char *s = buf;
    int formula, quote;

    if (json_is_string(v))
        s = json_string_value(v);
    else if (v == NULL || json_is_null(v))
        s = "";
    else if (json_is_object(v) || json_is_array(v))
        s = text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    else
        cell(v, buf, sizeof(buf));
    if (s == NULL)
        s = "";
    formula = s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL;
    quote = formula || strpbrk(s, ",\"\r\n") != NULL;
    if (quote)
        fputs(formula ? "\"'" : "\"", out);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            fputc('"', out);
        fputc(*p, out);
    }
    if (quote)
        fputc('"', out);
    fputs(last ? "\r\n" : ",", out);
    free(text);
}

static const char *const csv_columns[] = {
    "deletion_id",
    "state",
    "resource",
    "resource_id",
    "source",
    "request_key",
    "reason",
    "gateway_request_id",
    "accepted_at",
    "not_before",
    "completed_at",
    "attempts",
    "last_upstream_status",
    "extend_request_id",
    "last_error",
    "audit_seq",
    "audit_mac",
    "receipt",
};
#define CSV_COLUMNS (sizeof(csv_columns) / sizeof(csv_columns[0]))

static void csv_row(FILE *out, json_t *d, int receipts)
{
    json_t *by = json_object_get(d, "requested_by"), *audit = json_object_get(d, "audit");
    int extend = json_is_string(json_object_get(by, "event_id"));
    json_t *src = extend ? json_string("extend") : json_incref(json_object_get(by, "client_id"));
    json_t *vals[CSV_COLUMNS] = {
        json_object_get(d, "id"),
        json_object_get(d, "state"),
        json_object_get(d, "resource"),
        json_object_get(d, "resource_id"),
        src,
        json_object_get(by, extend ? "event_id" : "webhook_id"),
        json_object_get(d, "reason"),
        json_object_get(d, "request_id"),
        json_object_get(d, "accepted_at"),
        json_object_get(d, "not_before"),
        json_object_get(d, "completed_at"),
        json_object_get(d, "attempts"),
        json_object_get(d, "last_upstream_status"),
        json_object_get(d, "last_upstream_request_id"),
        json_object_get(d, "last_error"),
        json_object_get(audit, "seq"),
        json_object_get(audit, "mac"),
        json_object_get(d, "receipt"),
    };
    size_t n = receipts ? CSV_COLUMNS : CSV_COLUMNS - 1;

    for (size_t i = 0; i < n; i++)
        csv_cell(out, vals[i], i + 1 == n);
    json_decref(src);
}

/* Pages through /admin/export, writing each page as it comes: memory is
 * one page however long the export. A page that fails is asked again a
 * few times; an export that stops early exits non-zero, so a script never
 * takes a partial file for a whole one. */
static int export_rows(const struct ctl *c, const struct export_opts *o, int find, json_t *found)
{
    char query[1200], path[1400], cursor[QUEUE_CURSOR_MAX + 1] = "";
    json_t *answer = NULL, *list, *d;
    long long rows = 0;
    int tty = isatty(STDERR_FILENO) && !find, rc = 0, tries;
    long status;
    size_t i;

    query[0] = '\0';
    if (probe_query_add(query, sizeof(query), "since", o->since) != 0 ||
        probe_query_add(query, sizeof(query), "until", o->until) != 0 ||
        probe_query_add(query, sizeof(query), "source", o->source) != 0 ||
        probe_query_add(query, sizeof(query), "resource_id", o->resource_id) != 0 ||
        probe_query_add(query, sizeof(query), "state", o->state) != 0 ||
        probe_query_add(query, sizeof(query), "receipts", o->receipts ? "true" : NULL) != 0) {
        fprintf(stderr, "deletion-gateway: the export's filters are too long\n");
        return 2;
    }
    if (!find && o->csv) {
        for (i = 0; i < CSV_COLUMNS - !o->receipts; i++)
            printf("%s%s", csv_columns[i], i + 1 == CSV_COLUMNS - !o->receipts ? "\r\n" : ",");
    }
    do {
        snprintf(path, sizeof(path), "/admin/export?limit=%d%s",
                 find ? QUEUE_EXPORT_MAX : CTL_EXPORT_PAGE, query);
        probe_query_add(path, sizeof(path), "cursor", cursor[0] ? cursor : NULL);
        for (tries = 1;; tries++) {
            status = call(c, "GET", path, &answer);
            if ((status >= 0 && status != 503) || tries == CTL_TRIES)
                break;
            json_decref(answer);
            sleep((unsigned)tries);
        }
        if (status < 0 || status != 200 || !json_is_array(json_object_get(answer, "deletions"))) {
            rc = status < 0 ? 2 : status != 200 ? refused(status, answer) : 2;
            if (status == 200)
                fprintf(stderr, "deletion-gateway: the export answer is not what was expected\n");
            goto done;
        }
        list = json_object_get(answer, "deletions");
        json_array_foreach(list, i, d)
        {
            if (find) {
                if (json_array_size(found) >= CTL_FIND_MAX)
                    break;
                json_array_append(found, d);
            } else if (o->csv) {
                csv_row(stdout, d, o->receipts);
            } else {
                char *text = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);

                if (text != NULL)
                    printf("%s\n", text);
                free(text);
            }
        }
        rows += (long long)json_array_size(list);
        if (fflush(stdout) != 0) {
            fprintf(stderr, "deletion-gateway: cannot write the export\n");
            rc = 2;
            goto done;
        }
        if (tty)
            fprintf(stderr, "\rexported %lld deletion(s)", rows);
        snprintf(cursor, sizeof(cursor), "%s",
                 json_is_string(json_object_get(answer, "next_cursor"))
                     ? json_string_value(json_object_get(answer, "next_cursor"))
                     : "");
        json_decref(answer);
        answer = NULL;
    } while (cursor[0] != '\0');
done:
    if (tty)
        fprintf(stderr,
                rc == 0 ? "\rexported %lld deletion(s), complete\n"
                        : "\nexport stopped after %lld deletion(s)\n",
                rows);
    json_decref(answer);
    return rc;
}

static int find(const struct ctl *c, const char *resource_id)
{
    struct export_opts o = {.resource_id = resource_id};
    json_t *found = json_array(), *answer;
    int rc = export_rows(c, &o, 1, found);

    if (rc == 0) {
        answer =
            json_pack("{s:I,s:O}", "count", (json_int_t)json_array_size(found), "deletions", found);
        show(c, answer);
        json_decref(answer);
    }
    json_decref(found);
    return rc;
}

/* A word that goes into a URL path or query as it is: ids and state names
 * are all resource-id characters. */
static int word_ok(const char *w)
{
    return resource_id_valid(w, strlen(w));
}

static const char usage[] =
    "usage: deletion-gateway ctl [-c FILE] [--url URL] [--json | --table] COMMAND\n"
    "\n"
    "Operator commands against the gateway's admin listener.\n"
    "\n"
    "  show queue              counts by state, oldest pending job, ETA, paused,\n"
    "                          breaker\n"
    "  show ID                 one deletion with its attempts\n"
    "  list STATE [--limit N]  deletions in STATE (queued, dead, rejected, ...),\n"
    "                          oldest first, at most N (1..1000, default 100)\n"
    "  retry ID                a dead or rejected deletion back to queued, its\n"
    "                          give-up clock restarted\n"
    "  retry --all-dead        every dead deletion back to queued\n"
    "  cancel ID               cancel a deletion, only while it is queued\n"
    "  pause | resume [--account ID]\n"
    "                          hold all dispatching (jobs stay queued, and it\n"
    "                          outlives a restart), or send again; with\n"
    "                          --account, one account's only\n"
    "  find RESOURCE_ID        every deletion that targeted this resource\n"
    "  export [--since T] [--until T] [--source S] [--resource-id ID] [--state S]\n"
    "         [--format csv|jsonl] [--receipts]\n"
    "                          every deletion accepted in [since, until), oldest\n"
    "                          first, as CSV (the default) or JSON lines; S of\n"
    "                          --source is extend or a client id; --receipts adds\n"
    "                          each deleted or not_found row's signed receipt\n"
    "\n"
    "  -c FILE      the gateway's config: the admin listener's address, and\n"
    "               admin.token (no other secret is read)\n"
    "  --url URL    the admin listener (default http://127.0.0.1:8081, or FILE's)\n"
    "  --json       indented JSON (the default when stdout is not a terminal)\n"
    "  --table      a table for people (the default on a terminal)\n"
    "  -h, --help   this text\n"
    "\n"
    "The token is DG_ADMIN_TOKEN, else FILE's admin.token; never an argument, where\n"
    "other users could read it. T is RFC 3339 or YYYY-MM-DD (UTC). An ID that begins\n"
    "with - goes after --.\n"
    "Exit: 0 done, 1 refused by the gateway, 2 usage, configuration or connection\n"
    "error.\n";

enum {
    OPT_URL = 256,
    OPT_JSON,
    OPT_TABLE,
    OPT_LIMIT,
    OPT_ALL_DEAD,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_SOURCE,
    OPT_RESOURCE_ID,
    OPT_STATE,
    OPT_FORMAT,
    OPT_RECEIPTS,
    OPT_ACCOUNT,
};

static const struct option options[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"json", no_argument, NULL, OPT_JSON},
    {"table", no_argument, NULL, OPT_TABLE},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"all-dead", no_argument, NULL, OPT_ALL_DEAD},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"resource-id", required_argument, NULL, OPT_RESOURCE_ID},
    {"state", required_argument, NULL, OPT_STATE},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"receipts", no_argument, NULL, OPT_RECEIPTS},
    {"account", required_argument, NULL, OPT_ACCOUNT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The command words: one request, or the loops above. */
static int ctl_run(const struct ctl *c, char **words, int nwords, int all_dead, int64_t limit_n,
                   const struct export_opts *eo, const char *account)
{
    char path[400];

    if (nwords == 0)
        return cmd_usage_error("ctl", usage, "no command");
    if (strcmp(words[0], "show") == 0 && nwords == 2 && strcmp(words[1], "queue") == 0)
        return simple(c, "GET", "/admin/queue");
    if (strcmp(words[0], "show") == 0 && nwords == 2 && word_ok(words[1])) {
        snprintf(path, sizeof(path), "/admin/deletions/%s", words[1]);
        return simple(c, "GET", path);
    }
    if (strcmp(words[0], "list") == 0 && nwords == 2 && word_ok(words[1])) {
        snprintf(path, sizeof(path), "/admin/deletions?state=%s&limit=%lld", words[1],
                 (long long)limit_n);
        return simple(c, "GET", path);
    }
    if (strcmp(words[0], "retry") == 0 && all_dead && nwords == 1)
        return retry_all_dead(c);
    if ((strcmp(words[0], "retry") == 0 || strcmp(words[0], "cancel") == 0) && nwords == 2 &&
        word_ok(words[1])) {
        snprintf(path, sizeof(path), "/admin/deletions/%s/%s", words[1], words[0]);
        return simple(c, "POST", path);
    }
    if ((strcmp(words[0], "pause") == 0 || strcmp(words[0], "resume") == 0) && nwords == 1) {
        if (account != NULL && !resource_account_id_valid(account, strlen(account)))
            return cmd_usage_error("ctl", usage, "--account must be an account id, [a-z0-9_-]");
        snprintf(path, sizeof(path), "/admin/%s%s%s", words[0], account ? "?account=" : "",
                 account ? account : "");
        return simple(c, "POST", path);
    }
    if (account != NULL)
        return cmd_usage_error("ctl", usage, "--account goes with pause and resume");
    if (strcmp(words[0], "export") == 0 && nwords == 1)
        return export_rows(c, eo, 0, NULL);
    if (strcmp(words[0], "find") == 0 && nwords == 2)
        return find(c, words[1]);
    return cmd_usage_error("ctl", usage, "not a command, or not with these arguments");
}

/* Where the admin listener is, and its token, from the config at path:
 * only admin.token is resolved, the others may not be set here. 0 or -1
 * after saying why. */
static int ctl_from_config(struct ctl *c, const char *path, int url_given, struct secret *token)
{
    struct config cfg;
    char err[512];
    int rc = -1;

    if (config_load(&cfg, path, err, sizeof(err)) != 0 ||
        (cfg.admin.token.ref != NULL && (c->token == NULL || *c->token == '\0') &&
         config_resolve_ref(cfg.admin.token.ref, token, err, sizeof(err)) != 0)) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", path, err);
        goto fail;
    }
    if (!url_given)
        snprintf(c->base, sizeof(c->base), "http://%s:%d", cfg.admin.address, cfg.admin.port);
    if ((c->token == NULL || *c->token == '\0') && token->value != NULL)
        c->token = (const char *)token->value;
    rc = 0;
fail:
    config_free(&cfg);
    return rc;
}

int cmd_ctl(int argc, char **argv)
{
    const char *cfg_path = NULL, *url = NULL, *limit = NULL, *format = NULL, *account = NULL;
    struct export_opts eo = {.csv = 1};
    struct secret admin_token = {NULL, NULL, 0};
    struct ctl c = {.token = getenv("DG_ADMIN_TOKEN")};
    char host[256], port[8], path[512];
    int ch, tls, all_dead = 0, force_json = 0, force_table = 0, rc = CMD_USAGE;
    int64_t limit_n = 100;

    cmd_getopt_reset();
    while ((ch = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfg_path = optarg;
            break;
        case OPT_URL:
            url = optarg;
            break;
        case OPT_JSON:
            force_json = 1;
            break;
        case OPT_TABLE:
            force_table = 1;
            break;
        case OPT_LIMIT:
            limit = optarg;
            break;
        case OPT_ALL_DEAD:
            all_dead = 1;
            break;
        case OPT_SINCE:
            eo.since = optarg;
            break;
        case OPT_UNTIL:
            eo.until = optarg;
            break;
        case OPT_SOURCE:
            eo.source = optarg;
            break;
        case OPT_RESOURCE_ID:
            eo.resource_id = optarg;
            break;
        case OPT_STATE:
            eo.state = optarg;
            break;
        case OPT_FORMAT:
            format = optarg;
            break;
        case OPT_RECEIPTS:
            eo.receipts = 1;
            break;
        case OPT_ACCOUNT:
            account = optarg;
            break;
        case 'h':
            return cmd_help(usage);
        default:
            return cmd_bad_option("ctl", usage, ch, argv);
        }
    }
    /* The gateway checks it too; checked here, an operator's typo is named
     * before anything is sent. */
    if (limit != NULL && util_parse_int64(limit, 1, QUEUE_LIST_MAX, &limit_n) != 0) {
        fprintf(stderr, "deletion-gateway: --limit must be 1..%d\n", QUEUE_LIST_MAX);
        return CMD_USAGE;
    }
    if (format != NULL && strcmp(format, "csv") != 0 && strcmp(format, "jsonl") != 0) {
        fprintf(stderr, "deletion-gateway: --format must be csv or jsonl\n");
        return CMD_USAGE;
    }
    if (url != NULL &&
        probe_parse_url(url, &tls, host, sizeof(host), port, sizeof(port), path, sizeof(path)) != 0)
        return cmd_usage_error("ctl", usage, "--url must be http(s)://HOST[:PORT][/PATH]");
    eo.csv = format == NULL || strcmp(format, "csv") == 0;
    c.json = force_json || (!force_table && !isatty(STDOUT_FILENO));
    snprintf(c.base, sizeof(c.base), "%s", url ? url : "http://127.0.0.1:8081");
    if (cfg_path == NULL || ctl_from_config(&c, cfg_path, url != NULL, &admin_token) == 0)
        rc = ctl_run(&c, argv + optind, argc - optind, all_dead, limit_n, &eo, account);
    secret_wipe(&admin_token);
    return rc;
}

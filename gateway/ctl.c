/*
 * ctl.c: `deletion-gateway ctl`, the operator commands (see ctl.h).
 *
 * Each command is one request to the admin listener; the answer is
 * printed as indented JSON, and errors as the gateway's error message.
 * The admin token comes from DG_ADMIN_TOKEN or the config's admin.token,
 * never from the command line, where other users could read it.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "config.h"
#include "queue.h"
#include "util.h"

struct body {
    char *data;
    size_t len;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    char *grown;

    if (b->len + n > (8u << 20))
        return 0; /* bounded: an admin answer is never this large */
    grown = realloc(b->data, b->len + n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + b->len, ptr, n);
    b->data = grown;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    }
    return NULL;
}

/* One request; prints the answer. Returns the HTTP status, or -1. */
static long request(const char *method, const char *url, const char *token, int quiet)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct body b = {NULL, 0};
    char auth[600];
    long status = -1;
    CURLcode rc;

    if (c == NULL)
        return -1;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token ? token : "");
    h = curl_slist_append(h, auth);
    OPENSSL_cleanse(auth, sizeof(auth));
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    if (token != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        if (!quiet)
            fprintf(stderr, "deletion-gateway: %s: %s\n", url, curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (!quiet && b.data != NULL) {
            json_t *v = json_loads(b.data, 0, NULL);
            char *pretty = v ? json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

            fprintf(status >= 200 && status < 300 ? stdout : stderr, "%s\n",
                    pretty ? pretty : b.data);
            free(pretty);
            json_decref(v);
        }
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(b.data);
    return status;
}

static void wipe(struct secret *s)
{
    if (s->value != NULL) {
        OPENSSL_cleanse(s->value, s->len);
        free(s->value);
        s->value = NULL;
    }
}

int ctl_main(int argc, char **argv)
{
    const char *cfg_path = opt(argc, argv, "-c"), *url = opt(argc, argv, "--url");
    const char *limit = opt(argc, argv, "--limit");
    const char *words[4] = {NULL, NULL, NULL, NULL};
    struct config cfg;
    struct secret admin_token = {NULL, NULL, 0};
    char base[300], full[800], err[512];
    const char *token = getenv("DG_ADMIN_TOKEN");
    const char *method = "GET";
    int nwords = 0, all_dead = 0;
    int64_t limit_n = 100;
    long status;

    /* The gateway checks it too; checked here, an operator's typo is named
     * before anything is sent. */
    if (limit != NULL && util_parse_int64(limit, 1, QUEUE_LIST_MAX, &limit_n) != 0) {
        fprintf(stderr, "deletion-gateway: --limit must be 1..%d\n", QUEUE_LIST_MAX);
        return 2;
    }
    memset(&cfg, 0, sizeof(cfg));
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--url") == 0 ||
            strcmp(argv[i], "--limit") == 0)
            i++;
        else if (strcmp(argv[i], "--all-dead") == 0)
            all_dead = 1;
        else if (nwords < 4)
            words[nwords++] = argv[i];
    }
    snprintf(base, sizeof(base), "%s", url ? url : "http://127.0.0.1:8081");
    if (cfg_path != NULL) {
        /* Only the admin token is needed: the others may not be set here. */
        if (config_load(&cfg, cfg_path, err, sizeof(err)) != 0 ||
            (cfg.admin.token.ref != NULL && (token == NULL || *token == '\0') &&
             config_resolve_ref(cfg.admin.token.ref, &admin_token, err, sizeof(err)) != 0)) {
            fprintf(stderr, "deletion-gateway: %s: %s\n", cfg_path, err);
            config_free(&cfg);
            return 2;
        }
        if (url == NULL)
            snprintf(base, sizeof(base), "http://%s:%d", cfg.admin.address, cfg.admin.port);
        if ((token == NULL || *token == '\0') && admin_token.value != NULL)
            token = (const char *)admin_token.value;
    }
    if (nwords == 0)
        goto usage;
    if (strcmp(words[0], "show") == 0 && nwords == 2 && strcmp(words[1], "queue") == 0)
        snprintf(full, sizeof(full), "%s/admin/queue", base);
    else if (strcmp(words[0], "show") == 0 && nwords == 2)
        snprintf(full, sizeof(full), "%s/admin/deletions/%s", base, words[1]);
    else if (strcmp(words[0], "list") == 0 && nwords == 2)
        snprintf(full, sizeof(full), "%s/admin/deletions?state=%s&limit=%lld", base, words[1],
                 (long long)limit_n);
    else if (strcmp(words[0], "retry") == 0 && all_dead && nwords == 1) {
        method = "POST";
        snprintf(full, sizeof(full), "%s/admin/retry-dead", base);
        fprintf(stderr, "retrying every dead deletion...\n");
    } else if ((strcmp(words[0], "retry") == 0 || strcmp(words[0], "cancel") == 0) && nwords == 2) {
        method = "POST";
        snprintf(full, sizeof(full), "%s/admin/deletions/%s/%s", base, words[1], words[0]);
    } else if ((strcmp(words[0], "pause") == 0 || strcmp(words[0], "resume") == 0) && nwords == 1) {
        method = "POST";
        snprintf(full, sizeof(full), "%s/admin/%s", base, words[0]);
    } else
        goto usage;
    status = request(method, full, token, 0);
    wipe(&admin_token);
    config_free(&cfg);
    if (status < 0)
        return 2;
    return status >= 200 && status < 300 ? 0 : 1;
usage:
    wipe(&admin_token);
    config_free(&cfg);
    fprintf(stderr, "usage: deletion-gateway ctl [-c FILE] [--url URL] show queue | show ID | "
                    "list STATE [--limit N] | retry ID | retry --all-dead | cancel ID | pause | "
                    "resume\n");
    return 2;
}

/*
 * config_schema.c: the generic engine behind the config table (see
 * config_schema.h).
 *
 *   loading   refuse unknown keys, then parse every row from the object or
 *             from its default through the same parser, so a default that
 *             broke its own bounds would fail every load at once
 *   secrets   collect every reference, read them all, then swap them in
 *   output    the effective values (`check`), the reference table, key names
 *   freeing   wipe secrets, free strings
 */
#include "config_schema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_LEN 160

#define FIELD(base, off, T) ((T *)(void *)((char *)(base) + (off)))
#define CFIELD(base, off, T) ((const T *)(const void *)((const char *)(base) + (off)))

int schema_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL || errlen == 0)
        return -1;
    n = snprintf(err, errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- loading ---------------------------------------------------------- */

/* Builds a key path for messages; long paths are cut, never overflowed. */
static void path_fmt(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void path_fmt(char *out, size_t outlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
}

static void join_path(char *out, size_t outlen, const char *prefix, const char *name)
{
    if (prefix == NULL || prefix[0] == '\0')
        path_fmt(out, outlen, "%s", name);
    else
        path_fmt(out, outlen, "%s.%s", prefix, name);
}

/* Refuses any key the table does not know. rel is the path relative to the
 * table (to match names), shown is the full path (for the message). */
static int check_unknown(const struct keytab *tab, const json_t *obj, const char *rel,
                         const char *shown, char *err, size_t errlen)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)obj, k, v)
    {
        char r[PATH_MAX_LEN], s[PATH_MAX_LEN];
        size_t rlen;
        int leaf = 0, section = 0;

        join_path(r, sizeof(r), rel, k);
        join_path(s, sizeof(s), shown, k);
        rlen = strlen(r);
        for (size_t i = 0; i < tab->n; i++) {
            const char *name = tab->keys[i].name;
            if (strcmp(name, r) == 0)
                leaf = 1;
            else if (strncmp(name, r, rlen) == 0 && name[rlen] == '.')
                section = 1;
        }
        if (leaf)
            continue;
        if (!section)
            return schema_fail(err, errlen, s, "unknown key");
        if (!json_is_object(v))
            return schema_fail(err, errlen, s, "must be an object");
        if (check_unknown(tab, v, r, s, err, errlen) == -1)
            return -1;
    }
    return 0;
}

static json_t *lookup(const json_t *obj, const char *dotted)
{
    char part[PATH_MAX_LEN];
    const char *p = dotted;

    while (obj != NULL && json_is_object(obj)) {
        size_t n = strcspn(p, ".");
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        obj = json_object_get(obj, part);
        if (p[n] == '\0')
            return (json_t *)obj;
        p += n + 1;
    }
    return NULL;
}

/* Secrets are references only: a literal token in the file would end up in
 * backups, tickets and version control. The value is never echoed. */
static int parse_secret_ref(const char *path, const json_t *v, struct secret *out, char *err,
                            size_t errlen)
{
    if (!json_is_string(v))
        return schema_fail(err, errlen, path, "must be a string \"env:NAME\" or \"file:/path\"");
    if (!secret_ref_valid(json_string_value(v)))
        return schema_fail(err, errlen, path,
                           "must be \"env:NAME\" or \"file:/path\"; secrets are never written in "
                           "the config file itself");
    out->ref = strdup(json_string_value(v));
    if (out->ref == NULL)
        return schema_fail(err, errlen, path, "out of memory");
    return 0;
}

static int parse_value(const struct key *k, void *base, const json_t *v, const char *path,
                       char *err, size_t errlen);

static int parse_string(const struct key *k, const json_t *v, const char *path, char **out,
                        char *err, size_t errlen)
{
    const char *s;
    size_t len;

    *out = NULL;
    if (json_is_null(v) && (k->flags & KF_NULLABLE))
        return 0;
    if (!json_is_string(v))
        return schema_fail(err, errlen, path,
                           (k->flags & KF_NULLABLE) ? "must be a string or null"
                                                    : "must be a string");
    s = json_string_value(v);
    len = json_string_length(v);
    if ((int64_t)len < k->min || (int64_t)len > k->max)
        return schema_fail(err, errlen, path, "must be %lld to %lld characters long",
                           (long long)k->min, (long long)k->max);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return schema_fail(err, errlen, path, "must not contain control characters");
    *out = strdup(s);
    if (*out == NULL)
        return schema_fail(err, errlen, path, "out of memory");
    if (k->scheck != NULL && k->scheck(path, *out, err, errlen) == -1) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static int parse_list(const struct key *k, void *base, const json_t *v, const char *path, char *err,
                      size_t errlen)
{
    const struct keytab *sub = k->sub;
    int *count = FIELD(base, k->n_off, int);
    size_t n;

    if (!json_is_array(v))
        return schema_fail(err, errlen, path, "must be an array");
    n = json_array_size(v);
    if ((int64_t)n < k->min || (int64_t)n > k->max)
        return schema_fail(err, errlen, path, "must have %lld to %lld entries", (long long)k->min,
                           (long long)k->max);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        void *elem = (char *)base + k->off + i * sub->elem_size;
        char ep[PATH_MAX_LEN];

        path_fmt(ep, sizeof(ep), "%s[%zu]", path, i);
        if (!json_is_object(e))
            return schema_fail(err, errlen, ep, "must be an object");
        if (check_unknown(sub, e, "", ep, err, errlen) == -1)
            return -1;
        /* Counted before it is filled so that config_free sees it. */
        *count = (int)i + 1;
        for (size_t j = 0; j < sub->n; j++) {
            const struct key *sk = &sub->keys[j];
            char fp[PATH_MAX_LEN];

            join_path(fp, sizeof(fp), ep, sk->name);
            if (parse_value(sk, elem, lookup(e, sk->name), fp, err, errlen) == -1)
                return -1;
        }
    }
    return 0;
}

static int parse_strs(const struct key *k, void *base, const json_t *v, const char *path, char *err,
                      size_t errlen)
{
    const struct key entry = {.type = K_STR, .min = 1, .max = STRS_ENTRY_MAX, .scheck = k->scheck};
    char **arr = FIELD(base, k->off, char *);
    int *count = FIELD(base, k->n_off, int);
    size_t n;

    if (json_is_null(v) && (k->flags & KF_NULLABLE))
        return 0;
    if (!json_is_array(v))
        return schema_fail(err, errlen, path, "must be an array of strings%s",
                           (k->flags & KF_NULLABLE) ? " or null" : "");
    n = json_array_size(v);
    if ((int64_t)n < k->min || (int64_t)n > k->max)
        return schema_fail(err, errlen, path, "must have %lld to %lld entries", (long long)k->min,
                           (long long)k->max);
    for (size_t i = 0; i < n; i++) {
        char ep[PATH_MAX_LEN];

        path_fmt(ep, sizeof(ep), "%s[%zu]", path, i);
        if (parse_string(&entry, json_array_get(v, i), ep, &arr[i], err, errlen) == -1)
            return -1;
        *count = (int)i + 1;
        if (arr[i] == NULL) /* entry is not nullable: parse_string set it */
            return schema_fail(err, errlen, ep, "must be a string");
        for (size_t j = 0; j < i; j++)
            if (strcmp(arr[i], arr[j]) == 0)
                return schema_fail(err, errlen, path, "\"%s\" is listed twice", arr[i]);
    }
    return 0;
}

/* Joins k->names as "\"a\", \"b\"" with last between the last two. */
static void names_join(const struct key *k, const char *last, char *out, size_t outlen)
{
    size_t n = 0, at = 0;

    while (k->names[n] != NULL)
        n++;
    out[0] = '\0';
    for (size_t i = 0; i < n && at < outlen; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? last : ", ";
        int w = snprintf(out + at, outlen - at, "%s\"%s\"", sep, k->names[i]);
        if (w < 0)
            break;
        at += (size_t)w;
    }
}

/* An array of distinct names, each one bit of the mask. */
static int parse_flags(const struct key *k, unsigned *out, const json_t *v, const char *path,
                       char *err, size_t errlen)
{
    char names[128];
    unsigned mask = 0;
    size_t n;

    if (!json_is_array(v)) {
        names_join(k, " and/or ", names, sizeof(names));
        return schema_fail(err, errlen, path, "must be an array of %s", names);
    }
    n = json_array_size(v);
    if (n == 0) {
        names_join(k, ", ", names, sizeof(names));
        return schema_fail(
            err, errlen, path, "must name %s or %s", names,
            k->names[0] != NULL && k->names[1] != NULL && k->names[2] == NULL ? "both" : "several");
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(v, i));
        unsigned bit = 0;

        for (unsigned b = 0; s != NULL && k->names[b] != NULL; b++)
            if (strcmp(s, k->names[b]) == 0)
                bit = 1u << b;
        if (bit == 0) {
            names_join(k, " or ", names, sizeof(names));
            return schema_fail(err, errlen, path, "entry %zu must be %s", i, names);
        }
        if (mask & bit)
            return schema_fail(err, errlen, path, "\"%s\" is listed twice", s);
        mask |= bit;
    }
    *out = mask;
    return 0;
}

/* Parses one key's JSON value (NULL = absent: use the default) into its
 * field. */
static int parse_value(const struct key *k, void *base, const json_t *v, const char *path,
                       char *err, size_t errlen)
{
    json_t *def = NULL;
    int rc = -1;

    if (v == NULL) {
        json_error_t jerr;

        if (k->def == NULL)
            return schema_fail(err, errlen, path, "required");
        def = json_loads(k->def, JSON_DECODE_ANY, &jerr);
        if (def == NULL)
            return schema_fail(err, errlen, path, "bad built-in default: %s", jerr.text);
        v = def;
    }
    switch (k->type) {
    case K_STR:
        rc = parse_string(k, v, path, FIELD(base, k->off, char *), err, errlen);
        break;
    case K_IDBUF: {
        char *s = NULL;
        rc = parse_string(k, v, path, &s, err, errlen);
        if (rc == 0 && s != NULL)
            snprintf(FIELD(base, k->off, char), (size_t)k->max + 1, "%s", s);
        free(s);
        break;
    }
    case K_INT:
    case K_I64: {
        json_int_t n;
        if (!json_is_integer(v)) {
            rc = schema_fail(err, errlen, path, "must be an integer");
            break;
        }
        n = json_integer_value(v);
        if (n < k->min || n > k->max) {
            rc = schema_fail(err, errlen, path, "must be between %lld and %lld", (long long)k->min,
                             (long long)k->max);
            break;
        }
        if (k->type == K_INT)
            *FIELD(base, k->off, int) = (int)n;
        else
            *FIELD(base, k->off, int64_t) = (int64_t)n;
        rc = 0;
        break;
    }
    case K_NUM: {
        double d;
        if (!json_is_number(v)) {
            rc = schema_fail(err, errlen, path, "must be a number");
            break;
        }
        d = json_number_value(v);
        if (!(d >= (double)k->min && d <= (double)k->max)) {
            rc = schema_fail(err, errlen, path, "must be between %lld and %lld", (long long)k->min,
                             (long long)k->max);
            break;
        }
        *FIELD(base, k->off, double) = d;
        rc = 0;
        break;
    }
    case K_BOOL:
        if (!json_is_boolean(v)) {
            rc = schema_fail(err, errlen, path, "must be true or false");
            break;
        }
        *FIELD(base, k->off, bool) = json_is_true(v);
        rc = 0;
        break;
    case K_SECRET:
        if (json_is_null(v) && (k->flags & KF_NULLABLE))
            rc = 0;
        else
            rc = parse_secret_ref(path, v, FIELD(base, k->off, struct secret), err, errlen);
        break;
    case K_SECRETS: {
        struct secret *arr = FIELD(base, k->off, struct secret);
        int *count = FIELD(base, k->n_off, int);
        size_t n;

        if (!json_is_array(v)) {
            rc = schema_fail(err, errlen, path,
                             "must be an array of \"env:NAME\" or \"file:/path\"");
            break;
        }
        n = json_array_size(v);
        if ((int64_t)n < k->min || (int64_t)n > k->max) {
            rc = schema_fail(err, errlen, path, "must have %lld to %lld entries", (long long)k->min,
                             (long long)k->max);
            break;
        }
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            char ep[PATH_MAX_LEN];
            path_fmt(ep, sizeof(ep), "%s[%zu]", path, i);
            rc = parse_secret_ref(ep, json_array_get(v, i), &arr[i], err, errlen);
            if (rc == 0)
                *count = (int)i + 1;
        }
        break;
    }
    case K_FLAGS:
        rc = parse_flags(k, FIELD(base, k->off, unsigned), v, path, err, errlen);
        break;
    case K_LIST:
        rc = parse_list(k, base, v, path, err, errlen);
        break;
    case K_STRS:
        rc = parse_strs(k, base, v, path, err, errlen);
        break;
    }
    json_decref(def);
    return rc;
}

int schema_load(const struct keytab *tab, void *base, const json_t *root, char *err, size_t errlen)
{
    if (check_unknown(tab, root, "", "", err, errlen) == -1)
        return -1;
    for (size_t i = 0; i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        if (parse_value(k, base, lookup(root, k->name), k->name, err, errlen) == -1)
            return -1;
    }
    return 0;
}

/* ---- secrets ---------------------------------------------------------- */

struct pending {
    struct secret *s;
    const struct key *k;
    char path[PATH_MAX_LEN];
    struct secret fresh; /* read, not yet swapped in; its ref stays NULL */
};

struct pending_list {
    struct pending *items;
    size_t n, cap;
};

static int pending_add(struct pending_list *pl, struct secret *s, const struct key *k,
                       const char *path)
{
    if (s->ref == NULL)
        return 0;
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 32;
        struct pending *p = realloc(pl->items, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        pl->items = p;
        pl->cap = cap;
    }
    memset(&pl->items[pl->n], 0, sizeof(pl->items[0]));
    pl->items[pl->n].s = s;
    pl->items[pl->n].k = k;
    snprintf(pl->items[pl->n].path, PATH_MAX_LEN, "%s", path);
    pl->n++;
    return 0;
}

static int collect_secrets(const struct keytab *tab, void *base, const char *prefix,
                           struct pending_list *pl)
{
    for (size_t i = 0; i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        char p[PATH_MAX_LEN];

        join_path(p, sizeof(p), prefix, k->name);
        if (k->type == K_SECRET) {
            if (pending_add(pl, FIELD(base, k->off, struct secret), k, p) == -1)
                return -1;
        } else if (k->type == K_SECRETS || k->type == K_LIST) {
            int n = *FIELD(base, k->n_off, int);
            for (int j = 0; j < n; j++) {
                char ep[PATH_MAX_LEN];
                path_fmt(ep, sizeof(ep), "%s[%d]", p, j);
                if (k->type == K_SECRETS) {
                    if (pending_add(pl, FIELD(base, k->off, struct secret) + j, k, ep) == -1)
                        return -1;
                } else if (collect_secrets(k->sub,
                                           (char *)base + k->off + (size_t)j * k->sub->elem_size,
                                           ep, pl) == -1) {
                    return -1;
                }
            }
        }
    }
    return 0;
}

int schema_resolve_secrets(const struct keytab *tab, void *base, char *err, size_t errlen)
{
    struct pending_list pl = {NULL, 0, 0};
    int rc = -1;

    if (collect_secrets(tab, base, "", &pl) == -1) {
        snprintf(err, errlen, "config: out of memory");
        goto fail;
    }
    /* Read everything first, so that a failed reload keeps the old values. */
    for (size_t i = 0; i < pl.n; i++) {
        struct pending *p = &pl.items[i];
        if (secret_read(p->path, p->s->ref, &p->fresh.value, &p->fresh.len, err, errlen) == -1)
            goto fail;
        if (p->k->rcheck != NULL) {
            struct secret tmp = {p->s->ref, p->fresh.value, p->fresh.len};
            if (p->k->rcheck(p->path, &tmp, err, errlen) == -1)
                goto fail;
        }
    }
    for (size_t i = 0; i < pl.n; i++) {
        struct pending *p = &pl.items[i];
        secret_wipe(p->s);
        p->s->value = p->fresh.value;
        p->s->len = p->fresh.len;
        p->fresh.value = NULL;
        p->fresh.len = 0;
    }
    rc = 0;
fail:
    for (size_t i = 0; i < pl.n; i++)
        secret_wipe(&pl.items[i].fresh);
    free(pl.items);
    return rc;
}

/* ---- output ----------------------------------------------------------- */

static json_t *secret_json(const struct secret *s)
{
    if (s->ref == NULL)
        return json_null();
    return json_pack("{s:s, s:s}", "ref", s->ref, "value", "(redacted)");
}

static json_t *str_json(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *value_json(const struct key *k, const void *base)
{
    json_t *a;

    switch (k->type) {
    case K_STR:
        return str_json(*CFIELD(base, k->off, char *));
    case K_IDBUF:
        return json_string(CFIELD(base, k->off, char));
    case K_INT:
        return json_integer(*CFIELD(base, k->off, int));
    case K_I64:
        return json_integer(*CFIELD(base, k->off, int64_t));
    case K_NUM: {
        double d = *CFIELD(base, k->off, double);
        if (d == (double)(json_int_t)d)
            return json_integer((json_int_t)d);
        return json_real(d);
    }
    case K_BOOL:
        return json_boolean(*CFIELD(base, k->off, bool));
    case K_SECRET:
        return secret_json(CFIELD(base, k->off, struct secret));
    case K_SECRETS:
        a = json_array();
        for (int i = 0; a != NULL && i < *CFIELD(base, k->n_off, int); i++)
            json_array_append_new(a, secret_json(CFIELD(base, k->off, struct secret) + i));
        return a;
    case K_FLAGS: {
        unsigned m = *CFIELD(base, k->off, unsigned);
        a = json_array();
        for (unsigned b = 0; a != NULL && k->names[b] != NULL; b++)
            if (m & (1u << b))
                json_array_append_new(a, json_string(k->names[b]));
        return a;
    }
    case K_LIST:
        a = json_array();
        for (int i = 0; a != NULL && i < *CFIELD(base, k->n_off, int); i++)
            json_array_append_new(a, schema_to_json(k->sub, (const char *)base + k->off +
                                                                (size_t)i * k->sub->elem_size));
        return a;
    case K_STRS:
        if (*CFIELD(base, k->n_off, int) == 0 && (k->flags & KF_NULLABLE))
            return json_null();
        a = json_array();
        for (int i = 0; a != NULL && i < *CFIELD(base, k->n_off, int); i++)
            json_array_append_new(a, json_string(CFIELD(base, k->off, char *)[i]));
        return a;
    }
    return json_null();
}

/* Builds the nested object for a table, sections made from dotted names. */
json_t *schema_to_json(const struct keytab *tab, const void *base)
{
    json_t *root = json_object();

    for (size_t i = 0; root != NULL && i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        const char *p = k->name, *dot;
        json_t *obj = root;

        while ((dot = strchr(p, '.')) != NULL) {
            char part[PATH_MAX_LEN];
            json_t *next;

            snprintf(part, sizeof(part), "%.*s", (int)(dot - p), p);
            next = json_object_get(obj, part);
            if (next == NULL) {
                next = json_object();
                json_object_set_new(obj, part, next);
            }
            obj = next;
            p = dot + 1;
        }
        json_object_set_new(obj, p, value_json(k, base));
    }
    return root;
}

static const char *type_name(const struct key *k)
{
    switch (k->type) {
    case K_STR:
    case K_IDBUF:
        return (k->flags & KF_NULLABLE) ? "string or null" : "string";
    case K_INT:
    case K_I64:
        return "integer";
    case K_NUM:
        return "number";
    case K_BOOL:
        return "boolean";
    case K_SECRET:
        return (k->flags & KF_NULLABLE) ? "secret ref or null" : "secret ref";
    case K_SECRETS:
        return "array of secret refs";
    case K_FLAGS:
        return "array of strings";
    case K_LIST:
        return "array of objects";
    case K_STRS:
        return (k->flags & KF_NULLABLE) ? "array of strings or null" : "array of strings";
    }
    return "?";
}

static void reference_rows(const struct keytab *tab, const char *prefix, FILE *out)
{
    for (size_t i = 0; i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        char bounds[64] = "";

        switch (k->type) {
        case K_STR:
        case K_IDBUF:
            snprintf(bounds, sizeof(bounds), "%lld..%lld chars", (long long)k->min,
                     (long long)k->max);
            break;
        case K_INT:
        case K_I64:
        case K_NUM:
            snprintf(bounds, sizeof(bounds), "%lld..%lld", (long long)k->min, (long long)k->max);
            break;
        case K_SECRETS:
        case K_LIST:
        case K_STRS:
            snprintf(bounds, sizeof(bounds), "%lld..%lld entries", (long long)k->min,
                     (long long)k->max);
            break;
        case K_FLAGS:
            names_join(k, ", ", bounds, sizeof(bounds));
            break;
        case K_BOOL:
        case K_SECRET:
            snprintf(bounds, sizeof(bounds), "-");
            break;
        }
        fprintf(out, "| `%s%s` | %s | %s%s%s | %s | %s |\n", prefix, k->name, type_name(k),
                k->def ? "`" : "", k->def ? k->def : "(required)", k->def ? "`" : "", bounds,
                k->doc);
        if (k->type == K_LIST) {
            char p[PATH_MAX_LEN];
            path_fmt(p, sizeof(p), "%s%s[].", prefix, k->name);
            reference_rows(k->sub, p, out);
        }
    }
}

void schema_print_reference(const struct keytab *tab, FILE *out)
{
    fprintf(out, "| key | type | default | bounds | meaning |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    reference_rows(tab, "", out);
}

int schema_key_name(const struct keytab *tab, size_t i, char *out, size_t outlen)
{
    size_t at = 0;

    for (size_t j = 0; j < tab->n; j++) {
        const struct key *k = &tab->keys[j];

        if (at++ == i) {
            snprintf(out, outlen, "%s", k->name);
            return 0;
        }
        if (k->type != K_LIST)
            continue;
        for (size_t s = 0; s < k->sub->n; s++)
            if (at++ == i) {
                snprintf(out, outlen, "%s[].%s", k->name, k->sub->keys[s].name);
                return 0;
            }
    }
    return -1;
}

/* ---- freeing ---------------------------------------------------------- */

void schema_free(const struct keytab *tab, void *base)
{
    for (size_t i = 0; i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        int n;

        switch (k->type) {
        case K_STR:
            free(*FIELD(base, k->off, char *));
            *FIELD(base, k->off, char *) = NULL;
            break;
        case K_SECRET:
            secret_free(FIELD(base, k->off, struct secret));
            break;
        case K_SECRETS:
            n = *FIELD(base, k->n_off, int);
            for (int j = 0; j < n; j++)
                secret_free(FIELD(base, k->off, struct secret) + j);
            *FIELD(base, k->n_off, int) = 0;
            break;
        case K_LIST:
            n = *FIELD(base, k->n_off, int);
            for (int j = 0; j < n; j++)
                schema_free(k->sub, (char *)base + k->off + (size_t)j * k->sub->elem_size);
            *FIELD(base, k->n_off, int) = 0;
            break;
        case K_STRS:
            n = *FIELD(base, k->n_off, int);
            for (int j = 0; j < n; j++) {
                free(FIELD(base, k->off, char *)[j]);
                FIELD(base, k->off, char *)[j] = NULL;
            }
            *FIELD(base, k->n_off, int) = 0;
            break;
        default:
            break;
        }
    }
}

/*
 * resource.c: the resource table (see resource.h).
 */
#include "resource.h"

#include <string.h>

static const struct {
    const char *name;
    const char *collection;
} resource_table[RES_COUNT] = {
    [RES_EXTRACT_RUN] = {"extract_run", "extract_runs"},
    [RES_PARSE_RUN] = {"parse_run", "parse_runs"},
    [RES_CLASSIFY_RUN] = {"classify_run", "classify_runs"},
    [RES_SPLIT_RUN] = {"split_run", "split_runs"},
    [RES_EDIT_RUN] = {"edit_run", "edit_runs"},
    [RES_WORKFLOW_RUN] = {"workflow_run", "workflow_runs"},
    [RES_FILE] = {"file", "files"},
};

const char *resource_name(enum resource r)
{
    return (unsigned)r < RES_COUNT ? resource_table[r].name : "unknown";
}

const char *resource_collection(enum resource r)
{
    return (unsigned)r < RES_COUNT ? resource_table[r].collection : NULL;
}

int resource_from_name(const char *name, enum resource *out)
{
    for (int i = 0; i < RES_COUNT; i++) {
        if (strcmp(name, resource_table[i].name) == 0) {
            *out = (enum resource)i;
            return 0;
        }
    }
    return -1;
}

static int id_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

int resource_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > RESOURCE_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!id_char_ok((unsigned char)id[i]))
            return 0;
    }
    return 1;
}

int resource_account_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > RESOURCE_ACCOUNT_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '_' ||
              id[i] == '-'))
            return 0;
    return 1;
}

int resource_encode_segment(const char *id, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++) {
        int plain = id_char_ok(*p) || *p == '.' || *p == '~';

        if (n + (plain ? 1 : 3) + 1 > outlen)
            return -1;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    if (n + 1 > outlen)
        return -1;
    out[n] = '\0';
    return 0;
}

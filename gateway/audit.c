/*
 * audit.c: placeholder until the hash-chained audit log lands; every call
 * fails so nothing can mistake it for a working audit trail.
 */
#include "audit.h"

int audit_open(struct audit **out, const char *path, const unsigned char *key, size_t key_len,
               int64_t rotate_bytes, char *err, size_t errlen)
{
    (void)path, (void)key, (void)key_len, (void)rotate_bytes;
    *out = NULL;
    snprintf(err, errlen, "audit log not implemented");
    return -1;
}

int audit_append(struct audit *a, const struct audit_record *r, uint64_t *seq_out,
                 char mac_out[65])
{
    (void)a, (void)r, (void)seq_out, (void)mac_out;
    return -1;
}

int audit_sync(struct audit *a)
{
    (void)a;
    return -1;
}

void audit_close(struct audit *a)
{
    (void)a;
}

int audit_verify_files(const char *const *paths, int n_paths, const unsigned char *key,
                       size_t key_len, FILE *out)
{
    (void)paths, (void)n_paths, (void)key, (void)key_len, (void)out;
    return -1;
}

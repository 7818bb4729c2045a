/*
 * secret.h: a secret and the one place its bytes are read and wiped.
 *
 * A secret is never written in a config file: "env:NAME" reads an
 * environment variable, "file:/path" reads a regular file (one trailing
 * newline is dropped). The pure cores (verify) take this type alone, not
 * the whole config.
 */
#ifndef DG_SECRET_H
#define DG_SECRET_H

#include <stddef.h>

/* Most secrets in one list: a rotation needs two, a few spare. */
#define SECRET_LIST_MAX 8

/* Where a secret comes from (ref, shown redacted by `check`) and its bytes
 * once resolved. value is NULL until read. */
struct secret {
    char *ref;            /* "env:NAME" or "file:/path"; NULL = not configured */
    unsigned char *value; /* resolved bytes, NUL-terminated for convenience */
    size_t len;
};

/* 1 when ref has the syntax of a reference ("env:" and a variable name,
 * or "file:" and a path without control characters), else 0. */
int secret_ref_valid(const char *ref);

/* Reads ref into a fresh NUL-terminated buffer. Messages start with where
 * (the key it came from) and name the reference, never a byte of the
 * value. 0, or -1 with err. */
int secret_read(const char *where, const char *ref, unsigned char **out, size_t *outlen, char *err,
                size_t errlen);

/* Overwrites len bytes at p so no copy of a secret outlives its use. */
void secret_cleanse(void *p, size_t len);

/* Wipes and frees s->value; s->ref stays. */
void secret_wipe(struct secret *s);

/* Wipes the value and frees the reference too. */
void secret_free(struct secret *s);

#endif

/*
 * config_secret.c: reading secret references and wiping their bytes (see
 * secret.h).
 *
 *   secret_ref_valid   the reference syntax, checked when a config loads
 *   secret_read        env: or file:, bounded, one trailing newline dropped
 *   secret_cleanse, secret_wipe, secret_free: the one place bytes are wiped
 *   config_resolve_ref one reference outside any config (--secret)
 *
 * Messages name the key and the reference, never a byte of the value.
 */
#include "secret.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "config_schema.h"

#define SECRET_MAX_BYTES 65536 /* 64 KiB */
/* Room for the largest value, its "\r\n" and one byte to notice more. */
#define READ_CAP (SECRET_MAX_BYTES + 3)

int secret_ref_valid(const char *s)
{
    int ok = 0;

    if (strncmp(s, "env:", 4) == 0) {
        const char *n = s + 4;
        ok = (*n == '_' || isalpha((unsigned char)*n)) && strlen(n) <= 128;
        for (; ok && *n; n++)
            ok = *n == '_' || isalnum((unsigned char)*n);
    } else if (strncmp(s, "file:", 5) == 0) {
        ok = s[5] != '\0' && strlen(s) <= 4096;
        for (const char *p = s; ok && *p; p++)
            ok = (unsigned char)*p >= 0x20 && *p != 0x7f;
    }
    return ok;
}

void secret_cleanse(void *p, size_t len)
{
    if (p != NULL)
        OPENSSL_cleanse(p, len);
}

void secret_wipe(struct secret *s)
{
    if (s->value != NULL) {
        secret_cleanse(s->value, s->len);
        free(s->value);
    }
    s->value = NULL;
    s->len = 0;
}

void secret_free(struct secret *s)
{
    secret_wipe(s);
    free(s->ref);
    s->ref = NULL;
}

/* A FIFO or device could block or never end: only plain files. */
static int read_file(const char *where, const char *ref, unsigned char *buf, size_t *len, char *err,
                     size_t errlen)
{
    struct stat st;
    ssize_t n;
    int fd, rc = -1;

    fd = open(ref + 5, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1)
        return schema_fail(err, errlen, where, "%s: cannot open: %s", ref, strerror(errno));
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        schema_fail(err, errlen, where, "%s: not a regular file", ref);
        goto fail;
    }
    while (*len < READ_CAP) {
        n = read(fd, buf + *len, READ_CAP - *len);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            schema_fail(err, errlen, where, "%s: cannot read: %s", ref, strerror(errno));
            goto fail;
        }
        *len += (size_t)n;
    }
    if (*len == READ_CAP) {
        schema_fail(err, errlen, where, "%s: larger than %d bytes", ref, SECRET_MAX_BYTES);
        goto fail;
    }
    rc = 0;
fail:
    close(fd);
    return rc;
}

int secret_read(const char *where, const char *ref, unsigned char **out, size_t *outlen, char *err,
                size_t errlen)
{
    unsigned char *buf = NULL, *val = NULL;
    size_t len = 0;

    const char *env = NULL;
    size_t cap = READ_CAP;

    *out = NULL;
    *outlen = 0;
    if (strncmp(ref, "env:", 4) == 0) {
        env = getenv(ref + 4);
        if (env == NULL || env[0] == '\0')
            return schema_fail(err, errlen, where, "%s: environment variable is not set or empty",
                               ref);
        len = strlen(env);
        if (len > SECRET_MAX_BYTES)
            return schema_fail(err, errlen, where, "%s: longer than %d bytes", ref,
                               SECRET_MAX_BYTES);
        cap = len + 1;
    }
    buf = malloc(cap);
    if (buf == NULL)
        return schema_fail(err, errlen, where, "out of memory");
    if (env != NULL)
        memcpy(buf, env, len);
    else if (read_file(where, ref, buf, &len, err, errlen) == -1)
        goto fail;
    /* Editors and `echo` add one newline; it is never part of the secret. */
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    if (len > SECRET_MAX_BYTES) {
        schema_fail(err, errlen, where, "%s: larger than %d bytes", ref, SECRET_MAX_BYTES);
        goto fail;
    }
    if (len == 0) {
        schema_fail(err, errlen, where, "%s: is empty", ref);
        goto fail;
    }
    val = malloc(len + 1);
    if (val == NULL) {
        schema_fail(err, errlen, where, "out of memory");
        goto fail;
    }
    memcpy(val, buf, len);
    val[len] = '\0';
    *out = val;
    *outlen = len;
fail:
    /* The read buffer held the value too, whatever happened. */
    secret_cleanse(buf, len);
    free(buf);
    return val != NULL ? 0 : -1;
}

int config_resolve_ref(const char *ref, struct secret *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    return secret_read("secret", ref, &out->value, &out->len, err, errlen);
}

/*
 * receipt.c: signed deletion receipts (see receipt.h).
 *
 *   keys       load a private or public PEM (Ed25519 only), write the
 *              public PEM, key id; the generated key file of the data
 *              directory
 *   make       the statement as compact ASCII JSON, signed as raw bytes
 *   verify     decode, check key id, signature and the readable copy
 *
 * Ed25519 signs the message itself (no separate digest), so EVP_DigestSign
 * runs with a NULL md and `openssl pkeyutl -rawin` checks the same bytes.
 */
#include "receipt.h"
#include "queue.h"
#include "resource.h"
#include "secret.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#define RECEIPT_TYPE "deletion-receipt/v1"
#define PEM_MAX_BYTES 16384

/* ---- keys ---- */

/* Refuses any passphrase prompt: an encrypted key cannot be used
 * unattended, and OpenSSL's default would read the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

static int load_pem(const unsigned char *pem, size_t len, int private, EVP_PKEY **out, char *err,
                    size_t errlen)
{
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;

    *out = NULL;
    if (pem == NULL || len == 0 || len > PEM_MAX_BYTES) {
        snprintf(err, errlen, "key: empty or longer than %d bytes", PEM_MAX_BYTES);
        return -1;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio != NULL)
        key = private ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
                      : PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (key == NULL) {
        snprintf(err, errlen, "key: not a PEM %s key (or encrypted)",
                 private ? "private" : "public");
        return -1;
    }
    if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "key: must be Ed25519, not %s", EVP_PKEY_get0_type_name(key));
        EVP_PKEY_free(key);
        return -1;
    }
    *out = key;
    return 0;
}

int receipt_load_key(const unsigned char *pem, size_t len, EVP_PKEY **out, char *err, size_t errlen)
{
    return load_pem(pem, len, 1, out, err, errlen);
}

int receipt_load_public_pem(const unsigned char *pem, size_t len, EVP_PKEY **out, char *err,
                            size_t errlen)
{
    return load_pem(pem, len, 0, out, err, errlen);
}

int receipt_default_key_path(const char *queue_path, char *out, size_t len)
{
    const char *slash = strrchr(queue_path, '/');
    int n;

    if (slash == NULL)
        n = snprintf(out, len, "%s", RECEIPT_KEY_FILE);
    else
        n = snprintf(out, len, "%.*s/%s", (int)(slash - queue_path), queue_path, RECEIPT_KEY_FILE);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* Reads the key file: a regular file, ours alone, at most PEM_MAX_BYTES. */
static int key_file_read(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
    unsigned char buf[PEM_MAX_BYTES + 1];
    size_t len = 0;
    struct stat st;
    ssize_t n;
    int fd, rc = -1;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? -2 : -1;
    }
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    if ((st.st_mode & 077) != 0) {
        snprintf(err, errlen, "%s: group or others may read it (mode %03o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        goto fail;
    }
    while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto fail;
        }
        len += (size_t)n;
    }
    if (receipt_load_key(buf, len, out, err, errlen) == 0)
        rc = 0;
fail:
    secret_cleanse(buf, sizeof(buf));
    close(fd);
    return rc;
}

/* Makes a key and links it in at path; -2 when path appeared meanwhile. */
static int key_file_create(const char *path, char *err, size_t errlen)
{
    char tmp[4200];
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pem_len = 0;
    int fd = -1, rc = -1, linked;

    if (snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        goto fail;
    }
    if (key == NULL || bio == NULL ||
        PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        (pem_len = BIO_get_mem_data(bio, &pem)) <= 0) {
        snprintf(err, errlen, "%s: cannot make an Ed25519 key", path);
        goto fail;
    }
    /* The queue's directory, which a PostgreSQL replica never makes. */
    if (util_mkdirs(path) != 0) {
        snprintf(err, errlen, "%s: cannot make its directory: %s", path, strerror(errno));
        goto fail;
    }
    unlink(tmp); /* left by a crash of a process with our pid */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd == -1 || write(fd, pem, (size_t)pem_len) != (ssize_t)pem_len || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    /* link() never replaces: of two processes making a key at once, one
     * key wins and both use it. */
    linked = link(tmp, path);
    if (linked != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    rc = linked == 0 ? 0 : -2;
    /* The directory entry must survive a crash, or the next start makes
     * another key and receipts already handed out stop verifying. */
    if (rc == 0)
        util_sync_dir(path);
fail:
    if (fd != -1)
        close(fd);
    unlink(tmp);
    if (pem != NULL)
        secret_cleanse(pem, (size_t)pem_len);
    BIO_free(bio);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

int receipt_key_file(const char *path, int create, EVP_PKEY **out, int *created, char *err,
                     size_t errlen)
{
    int rc;

    *out = NULL;
    *created = 0;
    rc = key_file_read(path, out, err, errlen);
    if (rc != -2 || !create)
        return rc == 0 ? 0 : -1;
    rc = key_file_create(path, err, errlen);
    if (rc == -1)
        return -1;
    *created = rc == 0;
    return key_file_read(path, out, err, errlen) == 0 ? 0 : -1;
}

int receipt_write_public_pem(EVP_PKEY *key, FILE *out)
{
    return key != NULL && PEM_write_PUBKEY(out, key) == 1 ? 0 : -1;
}

int receipt_key_id(EVP_PKEY *key, char out[17])
{
    unsigned char raw[32], md[SHA256_DIGEST_LENGTH];
    size_t len = sizeof(raw);

    if (key == NULL || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519 ||
        EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != 32)
        return -1;
    SHA256(raw, len, md);
    util_hex(md, 8, out);
    return 0;
}

/* ---- make ---- */

/* A fixed-size field of the view as a JSON string: bounded by the field's
 * size, invalid UTF-8 replaced by '?' (jansson accepts only UTF-8). NULL
 * for an empty field, so "absent" reads as null, not "". */
static json_t *field(const char *s, size_t size)
{
    size_t n = strnlen(s, size), o = 0;
    char *clean = malloc(n + 1);
    json_t *j;

    if (clean == NULL || n == 0) {
        free(clean);
        return json_null();
    }
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        int ok = k > 0 && i + k <= n && !(k == 2 && c < 0xc2);

        for (size_t m = 1; ok && m < k; m++)
            ok = ((unsigned char)s[i + m] & 0xc0) == 0x80;
        if (ok) {
            memcpy(clean + o, s + i, k);
            o += k;
            i += k;
        } else {
            clean[o++] = '?';
            i++;
        }
    }
    j = json_stringn(clean, o);
    free(clean);
    /* json_stringn still refuses overlong forms and surrogates */
    return j != NULL ? j : json_string("?");
}

static json_t *time_or_null(int64_t ms)
{
    char ts[40];

    if (ms <= 0)
        return json_null();
    util_format_time_ms(ms, ts, sizeof(ts));
    return json_string(ts);
}

static char *base64(const unsigned char *in, size_t len)
{
    char *out;

    if (len > INT_MAX / 2)
        return NULL;
    out = malloc(4 * ((len + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

/* The statement's fields, in the order they are signed. */
static json_t *statement_of(const struct queue_deletion_view *v, int64_t now_ms, const char *key_id)
{
    json_t *st = json_object(), *who = json_object(), *audit = json_null();
    int bad = st == NULL || who == NULL;

    if (v->final_audit_seq > 0 && v->final_audit_seq <= (uint64_t)INT64_MAX)
        audit = json_pack("{s:I,s:o}", "seq", (json_int_t)v->final_audit_seq, "mac",
                          field(v->final_audit_mac, sizeof(v->final_audit_mac)));
    bad |= json_object_set_new(who, "source", field(v->source, sizeof(v->source)));
    bad |= json_object_set_new(who, "key", field(v->key, sizeof(v->key)));
    bad |= json_object_set_new(st, "type", json_string(RECEIPT_TYPE));
    bad |= json_object_set_new(st, "deletion_id", field(v->deletion_id, sizeof(v->deletion_id)));
    bad |= json_object_set_new(st, "outcome",
                               json_string(v->state == DEL_DELETED ? "deleted" : "not_found"));
    bad |= json_object_set_new(st, "resource", json_string(resource_name(v->resource)));
    bad |= json_object_set_new(st, "resource_id", field(v->resource_id, sizeof(v->resource_id)));
    bad |= json_object_set_new(st, "collection", json_string(resource_collection(v->resource)));
    /* The Extend account the resource was deleted in; a legacy gateway's
     * one account "default" is left out, so its receipts read as before. */
    if (v->account[0] != '\0' && strcmp(v->account, "default") != 0)
        bad |= json_object_set_new(st, "account", field(v->account, sizeof(v->account)));
    bad |= json_object_set(st, "requested_by", who);
    bad |= json_object_set_new(st, "reason", field(v->reason, sizeof(v->reason)));
    bad |=
        json_object_set_new(st, "gateway_request_id", field(v->request_id, sizeof(v->request_id)));
    bad |= json_object_set_new(st, "accepted_at", time_or_null(v->accepted_ms));
    bad |= json_object_set_new(st, "confirmed_at", time_or_null(v->completed_ms));
    bad |= json_object_set_new(
        st, "extend_request_id",
        field(v->last_upstream_request_id, sizeof(v->last_upstream_request_id)));
    bad |= json_object_set_new(st, "extend_http_status",
                               v->last_http_status > 0 ? json_integer(v->last_http_status)
                                                       : json_null());
    bad |= json_object_set_new(st, "audit", audit != NULL ? audit : json_null());
    bad |= json_object_set_new(st, "issued_at", time_or_null(now_ms));
    bad |= json_object_set_new(st, "gateway_version", json_string(DG_VERSION));
    bad |= json_object_set_new(st, "key_id", json_string(key_id));
    json_decref(who);
    if (bad || audit == NULL) {
        json_decref(st);
        return NULL;
    }
    return st;
}

int receipt_make(EVP_PKEY *key, const struct queue_deletion_view *v, int64_t now_ms,
                 char **json_out)
{
    char key_id[17], *text = NULL, *text_b64 = NULL, *sig_b64 = NULL;
    unsigned char sig[64];
    size_t sig_len = sizeof(sig);
    json_t *statement = NULL, *receipt = NULL;
    EVP_MD_CTX *ctx = NULL;
    int rc = -1;

    *json_out = NULL;
    if (v == NULL || (v->state != DEL_DELETED && v->state != DEL_NOT_FOUND) ||
        (unsigned)v->resource >= RES_COUNT || receipt_key_id(key, key_id) != 0)
        return -1;
    statement = statement_of(v, now_ms, key_id);
    /* Compact and ASCII only: the signed bytes survive any transport and
     * copy-paste, and base64 of them is what a verifier decodes. */
    text = statement ? json_dumps(statement, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
                     : NULL;
    ctx = EVP_MD_CTX_new();
    if (text == NULL || ctx == NULL || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)text, strlen(text)) != 1 ||
        sig_len != sizeof(sig))
        goto fail;
    text_b64 = base64((const unsigned char *)text, strlen(text));
    sig_b64 = base64(sig, sig_len);
    if (text_b64 == NULL || sig_b64 == NULL)
        goto fail;
    receipt = json_pack("{s:s,s:s,s:O,s:s,s:s}", "alg", "Ed25519", "key_id", key_id, "statement",
                        statement, "statement_b64", text_b64, "signature", sig_b64);
    if (receipt == NULL)
        goto fail;
    *json_out = json_dumps(receipt, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (*json_out != NULL)
        rc = 0;
fail:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    json_decref(statement);
    json_decref(receipt);
    free(text);
    free(text_b64);
    free(sig_b64);
    return rc;
}

/* ---- verify ---- */

/* Strict base64 (no whitespace, padded). 0 with *out (malloc'd), or -1. */
static int unbase64(const char *in, unsigned char **out, size_t *out_len)
{
    size_t len = strlen(in), pad = 0;
    unsigned char *buf;
    int n;

    *out = NULL;
    if (len == 0 || len % 4 != 0 || len > INT_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || (c == '=' && i >= len - 2)))
            return -1;
    }
    pad = (in[len - 1] == '=') + (in[len - 2] == '=');
    if (in[len - 1] != '=' && in[len - 2] == '=')
        return -1;
    buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL)
        return -1;
    n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len);
    if (n < 0 || (size_t)n < pad) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = (size_t)n - pad;
    return 0;
}

int receipt_verify(const char *json, size_t len, EVP_PKEY *pub, char *err, size_t errlen)
{
    json_t *root = NULL, *signed_st = NULL;
    json_error_t jerr;
    const char *alg, *key_id, *text_b64, *sig_b64;
    unsigned char *text = NULL, *sig = NULL;
    size_t text_len = 0, sig_len = 0;
    char want_id[17];
    EVP_MD_CTX *ctx = NULL;
    int rc = -1;

    if (json == NULL || len == 0 || len > RECEIPT_MAX_BYTES) {
        snprintf(err, errlen, "receipt: empty or longer than %d bytes", RECEIPT_MAX_BYTES);
        return -1;
    }
    if (receipt_key_id(pub, want_id) != 0) {
        snprintf(err, errlen, "key: not an Ed25519 public key");
        return -1;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (json_unpack(root, "{s:s,s:s,s:s,s:s}", "alg", &alg, "key_id", &key_id, "statement_b64",
                    &text_b64, "signature", &sig_b64) != 0) {
        snprintf(err, errlen, "receipt: not JSON with alg, key_id, statement_b64, signature");
        goto fail;
    }
    if (strcmp(alg, "Ed25519") != 0) {
        snprintf(err, errlen, "receipt: alg must be Ed25519");
        goto fail;
    }
    if (strcmp(key_id, want_id) != 0) {
        snprintf(err, errlen, "receipt: signed by key %.16s, not by this key (%s)", key_id,
                 want_id);
        goto fail;
    }
    if (unbase64(text_b64, &text, &text_len) != 0 || unbase64(sig_b64, &sig, &sig_len) != 0 ||
        sig_len != 64) {
        snprintf(err, errlen, "receipt: statement_b64 or signature is not valid base64");
        goto fail;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) != 1 ||
        EVP_DigestVerify(ctx, sig, sig_len, text, text_len) != 1) {
        snprintf(err, errlen, "receipt: bad signature");
        goto fail;
    }
    /* Signed, but a statement that is not ours, or a readable copy that
     * says something else, would mislead whoever reads it. */
    signed_st = json_loadb((const char *)text, text_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(signed_st) || !json_is_string(json_object_get(signed_st, "type")) ||
        strcmp(json_string_value(json_object_get(signed_st, "type")), RECEIPT_TYPE) != 0 ||
        !json_is_string(json_object_get(signed_st, "key_id")) ||
        strcmp(json_string_value(json_object_get(signed_st, "key_id")), want_id) != 0) {
        snprintf(err, errlen, "receipt: the signed statement is not a %s for this key",
                 RECEIPT_TYPE);
        goto fail;
    }
    if (json_object_get(root, "statement") != NULL &&
        !json_equal(json_object_get(root, "statement"), signed_st)) {
        snprintf(err, errlen, "receipt: the readable statement differs from the signed one");
        goto fail;
    }
    rc = 0;
fail:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    json_decref(root);
    json_decref(signed_st);
    free(text);
    free(sig);
    return rc;
}

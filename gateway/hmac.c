/*
 * hmac.c: HMAC-SHA256 through OpenSSL's EVP_MAC (see hmac.h).
 */
#include "hmac.h"

#include <pthread.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct hmac_key {
    EVP_MAC_CTX *ctx;
};

/* OpenSSL 3 looks a MAC up in its provider store on every fetch, which
 * costs as much as hashing a webhook; fetch it once per process. The
 * reference is kept for the life of the process on purpose. */
static EVP_MAC *hmac_method;
static pthread_once_t hmac_method_once = PTHREAD_ONCE_INIT;

static void hmac_method_fetch(void)
{
    hmac_method = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static EVP_MAC_CTX *keyed_ctx(const void *key, size_t key_len)
{
    EVP_MAC_CTX *ctx;
    OSSL_PARAM params[2];

    if (key == NULL || key_len == 0)
        return NULL;
    pthread_once(&hmac_method_once, hmac_method_fetch);
    if (hmac_method == NULL)
        return NULL;
    ctx = EVP_MAC_CTX_new(hmac_method);
    if (ctx == NULL)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Feeds the pieces and finishes; ctx is spent afterwards. */
static int finish(EVP_MAC_CTX *ctx, const struct hmac_piece *pieces, int n_pieces,
                  unsigned char out[HMAC_SHA256_LEN])
{
    size_t out_len = 0;

    for (int i = 0; i < n_pieces; i++)
        if (pieces[i].len > 0 && EVP_MAC_update(ctx, pieces[i].p, pieces[i].len) != 1)
            return -1;
    if (EVP_MAC_final(ctx, out, &out_len, HMAC_SHA256_LEN) != 1 || out_len != HMAC_SHA256_LEN)
        return -1;
    return 0;
}

int hmac_sha256(const void *key, size_t key_len, const struct hmac_piece *pieces, int n_pieces,
                unsigned char out[HMAC_SHA256_LEN])
{
    EVP_MAC_CTX *ctx = keyed_ctx(key, key_len);
    int rc = -1;

    if (ctx == NULL)
        goto fail;
    rc = finish(ctx, pieces, n_pieces, out);
fail:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

struct hmac_key *hmac_key_new(const void *key, size_t key_len)
{
    struct hmac_key *k = calloc(1, sizeof(*k));

    if (k == NULL)
        return NULL;
    k->ctx = keyed_ctx(key, key_len);
    if (k->ctx == NULL) {
        free(k);
        return NULL;
    }
    return k;
}

int hmac_key_sign(const struct hmac_key *k, const void *data, size_t len,
                  unsigned char out[HMAC_SHA256_LEN])
{
    struct hmac_piece piece = {data, len};
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->ctx);
    int rc = -1;

    if (c == NULL)
        goto fail;
    rc = finish(c, &piece, 1, out);
fail:
    EVP_MAC_CTX_free(c);
    return rc;
}

void hmac_key_free(struct hmac_key *k)
{
    if (k == NULL)
        return;
    EVP_MAC_CTX_free(k->ctx);
    free(k);
}

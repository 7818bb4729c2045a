/*
 * hmac.h: HMAC-SHA256, the one MAC of the gateway: webhook signatures
 * (verify.c) and the audit chain (audit*.c) both go through here.
 */
#ifndef DG_HMAC_H
#define DG_HMAC_H

#include <stddef.h>

#define HMAC_SHA256_LEN 32

struct hmac_piece {
    const void *p;
    size_t len;
};

/* HMAC-SHA256 of the concatenated pieces. An empty key is refused: it is
 * a configuration mistake, never something to accept. 0 or -1. */
int hmac_sha256(const void *key, size_t key_len, const struct hmac_piece *pieces, int n_pieces,
                unsigned char out[HMAC_SHA256_LEN]);

/* A key set up once for many messages (the audit writer signs every record
 * with one key): each hmac_key_sign copies the keyed state, which costs a
 * third of setting the key up again. */
struct hmac_key;
struct hmac_key *hmac_key_new(const void *key, size_t key_len);
int hmac_key_sign(const struct hmac_key *k, const void *data, size_t len,
                  unsigned char out[HMAC_SHA256_LEN]);
void hmac_key_free(struct hmac_key *k);

#endif

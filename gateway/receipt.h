/*
 * receipt.h: signed deletion receipts. For a deletion that ended deleted
 * or not_found, the gateway can hand out a statement of what was deleted,
 * on whose request and when Extend confirmed it, signed with Ed25519, that
 * anyone holding the gateway's public key can check with stock tools:
 *
 *   {"alg": "Ed25519", "key_id": "<16 hex>",
 *    "statement": { the statement, for people to read },
 *    "statement_b64": "<base64 of the exact signed bytes>",
 *    "signature": "<base64 of the 64-byte Ed25519 signature>"}
 *
 * The signature covers the bytes of statement_b64 (compact JSON, ASCII
 * only); the readable copy must say the same thing or the receipt is
 * refused. key_id is the first 16 hex digits of SHA-256 of the raw 32-byte
 * public key.
 */
#ifndef DG_RECEIPT_H
#define DG_RECEIPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/evp.h>

struct queue_deletion_view;

#define RECEIPT_MAX_BYTES 65536 /* longest receipt receipt_verify reads */

/* A PEM private key (unencrypted PKCS#8); anything but Ed25519 is refused.
 * 0 with *out (EVP_PKEY_free it), or -1 with err. */
int receipt_load_key(const unsigned char *pem, size_t len, EVP_PKEY **out, char *err,
                     size_t errlen);

/* Where the gateway keeps the key it made itself when receipts.signing_key
 * is unset: receipt-key.pem in the directory of queue.path, the data
 * directory the gateway owns. -1 when it does not fit out. */
#define RECEIPT_KEY_FILE "receipt-key.pem"
int receipt_default_key_path(const char *queue_path, char *out, size_t len);

/* Loads the key in the file at path; with create, makes a new Ed25519 key
 * there first if there is none (mode 0600, written to a temporary file,
 * fsynced, then linked into place, so a crash or a second process never
 * leaves a half-written or a second key). A file that group or others
 * may read is refused, as sshd refuses such a host key. *created = 1 when
 * this call made it. 0, or -1 with err (which never holds key bytes). */
int receipt_key_file(const char *path, int create, EVP_PKEY **out, int *created, char *err,
                     size_t errlen);

/* A PEM public key ("-----BEGIN PUBLIC KEY-----"), Ed25519 only. */
int receipt_load_public_pem(const unsigned char *pem, size_t len, EVP_PKEY **out, char *err,
                            size_t errlen);

/* Writes the public half of key as PEM, for whoever checks receipts. */
int receipt_write_public_pem(EVP_PKEY *key, FILE *out);

/* First 16 hex digits of SHA-256 of the raw public key. 0 or -1. */
int receipt_key_id(EVP_PKEY *key, char out[17]);

/* The receipt for v as a JSON text (malloc'd, NUL-terminated). -1 when v
 * is not deleted or not_found, or on failure. */
int receipt_make(EVP_PKEY *key, const struct queue_deletion_view *v, int64_t now_ms,
                 char **json_out);

/* 0 when the receipt is intact and signed by pub, else -1 with err
 * saying why (malformed, other key, bad signature, readable copy differs). */
int receipt_verify(const char *json, size_t len, EVP_PKEY *pub, char *err, size_t errlen);

#endif

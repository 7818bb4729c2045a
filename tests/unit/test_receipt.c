/* test_receipt.c: signed deletion receipts: made, verified, refused when
 * tampered or signed by another key, and checked by the stock openssl CLI
 * with the exact commands docs/receipts.md gives. */
#include "check.h"
#include "queue.h"
#include "receipt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

static char dir[64];

static void fill_view(struct queue_deletion_view *v)
{
    memset(v, 0, sizeof(*v));
    snprintf(v->deletion_id, sizeof(v->deletion_id), "del_abcdefghijklmnopqrstuvwxyz");
    v->job_id = 42;
    v->resource = RES_EXTRACT_RUN;
    snprintf(v->resource_id, sizeof(v->resource_id), "exr_Xj8mK2pL9nR4vT7qY5wZ");
    v->state = DEL_DELETED;
    snprintf(v->source, sizeof(v->source), "crm");
    snprintf(v->key, sizeof(v->key), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
    snprintf(v->request_id, sizeof(v->request_id), "req_q7c2");
    snprintf(v->reason, sizeof(v->reason), "gdpr erasure #123 (M\xc3\xbcller)");
    v->attempts = 1;
    v->last_http_status = 200;
    snprintf(v->last_upstream_request_id, sizeof(v->last_upstream_request_id), "xreq_77");
    v->accepted_ms = 1795944904123;
    v->completed_ms = 1795944905456;
    v->final_audit_seq = 1234;
    memset(v->final_audit_mac, 'a', 64);
}

/* Replaces one character of the base64 statement with another valid one,
 * so the receipt still parses but the signed bytes differ. */
static char *flip_statement(const char *receipt)
{
    json_t *root = json_loads(receipt, 0, NULL);
    char *b64 = strdup(json_string_value(json_object_get(root, "statement_b64")));
    char *out;

    b64[10] = b64[10] == 'A' ? 'B' : 'A';
    json_object_set_new(root, "statement_b64", json_string(b64));
    out = json_dumps(root, JSON_PRESERVE_ORDER);
    json_decref(root);
    free(b64);
    return out;
}

static void test_make_and_verify(EVP_PKEY *key, EVP_PKEY *other)
{
    struct queue_deletion_view v;
    char *r = NULL, *bad = NULL, err[256], id[17];
    json_t *root, *st;

    fill_view(&v);
    CHECK(receipt_make(key, &v, 1795944906000, &r) == 0 && r != NULL);
    if (r == NULL)
        return;
    CHECK(receipt_verify(r, strlen(r), key, err, sizeof(err)) == 0);

    /* the readable statement says what the task asks of a receipt */
    root = json_loads(r, 0, NULL);
    st = json_object_get(root, "statement");
    CHECK(receipt_key_id(key, id) == 0 && strlen(id) == 16);
    CHECK_STR(json_string_value(json_object_get(root, "alg")), "Ed25519");
    CHECK_STR(json_string_value(json_object_get(root, "key_id")), id);
    CHECK_STR(json_string_value(json_object_get(st, "key_id")), id);
    CHECK_STR(json_string_value(json_object_get(st, "outcome")), "deleted");
    CHECK_STR(json_string_value(json_object_get(st, "resource")), "extract_run");
    CHECK_STR(json_string_value(json_object_get(st, "resource_id")), "exr_Xj8mK2pL9nR4vT7qY5wZ");
    CHECK_STR(json_string_value(json_object_get(st, "collection")), "extract_runs");
    CHECK_STR(json_string_value(json_object_get(st, "deletion_id")),
              "del_abcdefghijklmnopqrstuvwxyz");
    CHECK_STR(json_string_value(json_object_get(json_object_get(st, "requested_by"), "source")),
              "crm");
    CHECK_STR(json_string_value(json_object_get(json_object_get(st, "requested_by"), "key")),
              "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
    CHECK_STR(json_string_value(json_object_get(st, "reason")),
              "gdpr erasure #123 (M\xc3\xbcller)");
    CHECK_STR(json_string_value(json_object_get(st, "accepted_at")), "2026-11-29T09:35:04.123Z");
    CHECK_STR(json_string_value(json_object_get(st, "confirmed_at")), "2026-11-29T09:35:05.456Z");
    CHECK_STR(json_string_value(json_object_get(st, "issued_at")), "2026-11-29T09:35:06.000Z");
    CHECK_STR(json_string_value(json_object_get(st, "extend_request_id")), "xreq_77");
    CHECK_STR(json_string_value(json_object_get(st, "gateway_version")), DG_VERSION);
    CHECK(json_integer_value(json_object_get(json_object_get(st, "audit"), "seq")) == 1234);
    CHECK(strlen(json_string_value(json_object_get(json_object_get(st, "audit"), "mac"))) == 64);
    json_decref(root);

    /* one byte of the signed statement changed */
    bad = flip_statement(r);
    CHECK(receipt_verify(bad, strlen(bad), key, err, sizeof(err)) == -1);
    CHECK(strstr(err, "bad signature") != NULL);
    free(bad);

    /* the readable copy edited, signed bytes untouched */
    root = json_loads(r, 0, NULL);
    json_object_set_new(json_object_get(root, "statement"), "outcome", json_string("not_found"));
    bad = json_dumps(root, 0);
    json_decref(root);
    CHECK(receipt_verify(bad, strlen(bad), key, err, sizeof(err)) == -1);
    CHECK(strstr(err, "readable statement differs") != NULL);
    free(bad);

    /* another key */
    CHECK(receipt_verify(r, strlen(r), other, err, sizeof(err)) == -1);
    CHECK(strstr(err, "not by this key") != NULL);
    /* another key that claims this key's id still fails on the signature */
    {
        char oid[17], *swapped = strdup(r), *p;
        receipt_key_id(other, oid);
        while ((p = strstr(swapped, id)) != NULL)
            memcpy(p, oid, 16);
        CHECK(receipt_verify(swapped, strlen(swapped), other, err, sizeof(err)) == -1);
        CHECK(strstr(err, "bad signature") != NULL);
        free(swapped);
    }
    /* garbage */
    CHECK(receipt_verify("{}", 2, key, err, sizeof(err)) == -1);
    CHECK(receipt_verify("not json", 8, key, err, sizeof(err)) == -1);
    free(r);

    /* not_found gets a receipt; anything unfinished or failed does not */
    v.state = DEL_NOT_FOUND;
    CHECK(receipt_make(key, &v, 1795944906000, &r) == 0);
    CHECK(r != NULL && strstr(r, "\"outcome\": \"not_found\"") != NULL);
    free(r);
    enum deletion_state refused[] = {DEL_QUEUED, DEL_IN_FLIGHT, DEL_REJECTED, DEL_DEAD,
                                     DEL_CANCELLED};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        v.state = refused[i];
        r = (char *)"untouched";
        CHECK(receipt_make(key, &v, 1795944906000, &r) == -1 && r == NULL);
    }
}

static void test_key_loading(EVP_PKEY *key)
{
    char err[256], id1[17], id2[17];
    EVP_PKEY *k2 = NULL, *pub = NULL, *rsa = NULL;
    BIO *mem = BIO_new(BIO_s_mem());
    char *pem;
    long len;

    /* private PEM round trip keeps the key id */
    PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL);
    len = BIO_get_mem_data(mem, &pem);
    CHECK(receipt_load_key((unsigned char *)pem, (size_t)len, &k2, err, sizeof(err)) == 0);
    CHECK(receipt_key_id(key, id1) == 0 && receipt_key_id(k2, id2) == 0);
    CHECK_STR(id1, id2);
    /* a public PEM is not a private key */
    BIO_reset(mem);
    PEM_write_bio_PUBKEY(mem, key);
    len = BIO_get_mem_data(mem, &pem);
    CHECK(receipt_load_public_pem((unsigned char *)pem, (size_t)len, &pub, err, sizeof(err)) == 0);
    CHECK(receipt_key_id(pub, id2) == 0);
    CHECK_STR(id1, id2);
    EVP_PKEY *none = NULL;
    CHECK(receipt_load_key((unsigned char *)pem, (size_t)len, &none, err, sizeof(err)) == -1);
    CHECK(none == NULL);
    /* RSA refused */
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    BIO_reset(mem);
    PEM_write_bio_PrivateKey(mem, rsa, NULL, NULL, 0, NULL, NULL);
    len = BIO_get_mem_data(mem, &pem);
    CHECK(receipt_load_key((unsigned char *)pem, (size_t)len, &none, err, sizeof(err)) == -1);
    CHECK(strstr(err, "must be Ed25519") != NULL);
    CHECK(receipt_load_key((const unsigned char *)"junk", 4, &none, err, sizeof(err)) == -1);
    BIO_free(mem);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(rsa);
}

/* Runs a shell command in dir; its status and (first 1 KiB of) output. */
static int run(const char *cmd, char *out, size_t outlen)
{
    char full[2048];
    FILE *p;
    size_t n;
    int status;

    snprintf(full, sizeof(full), "cd '%s' && { %s ; } 2>&1", dir, cmd);
    p = popen(full, "r");
    if (p == NULL)
        return -1;
    n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_file(const char *name, const char *data, size_t len)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f != NULL) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

/* The commands of docs/receipts.md, verbatim. */
#define EXTRACT_PY                                                                                 \
    "python3 -c 'import base64,json,sys; r=json.load(open(sys.argv[1])); "                         \
    "open(\"statement.bin\",\"wb\").write(base64.b64decode(r[\"statement_b64\"])); "               \
    "open(\"sig.bin\",\"wb\").write(base64.b64decode(r[\"signature\"]))' receipt.json"
#define EXTRACT_JQ                                                                                 \
    "jq -r .statement_b64 receipt.json | base64 -d > statement.bin && "                            \
    "jq -r .signature receipt.json | base64 -d > sig.bin"
#define OPENSSL_VERIFY                                                                             \
    "openssl pkeyutl -verify -pubin -inkey receipt-pub.pem -rawin -in statement.bin "              \
    "-sigfile sig.bin"
#define KEY_ID_CMD                                                                                 \
    "openssl pkey -pubin -in receipt-pub.pem -outform DER | tail -c 32 | sha256sum | cut -c1-16"

static void test_stock_openssl_verifies(EVP_PKEY *key)
{
    struct queue_deletion_view v;
    char *r = NULL, out[1100], path[128], id[17];
    FILE *f;

    if (run("command -v openssl && command -v python3", out, sizeof(out)) != 0) {
        fprintf(stderr, "openssl or python3 missing: %s\n", out);
        CHECK(0);
        return;
    }
    fill_view(&v);
    CHECK(receipt_make(key, &v, 1795944906000, &r) == 0);
    if (r == NULL)
        return;
    write_file("receipt.json", r, strlen(r));
    snprintf(path, sizeof(path), "%s/receipt-pub.pem", dir);
    f = fopen(path, "w");
    CHECK(f != NULL && receipt_write_public_pem(key, f) == 0);
    if (f != NULL)
        fclose(f);

    CHECK(run(EXTRACT_PY, out, sizeof(out)) == 0);
    CHECK(run(OPENSSL_VERIFY, out, sizeof(out)) == 0);
    CHECK(strstr(out, "Signature Verified Successfully") != NULL);
    /* the key id a third party computes from the PEM is the receipt's */
    CHECK(run(KEY_ID_CMD, out, sizeof(out)) == 0);
    CHECK(receipt_key_id(key, id) == 0 && strncmp(out, id, 16) == 0);
    /* the same with jq and base64 -d, where jq is installed */
    if (run("command -v jq", out, sizeof(out)) == 0) {
        CHECK(run("rm -f statement.bin sig.bin && " EXTRACT_JQ, out, sizeof(out)) == 0);
        CHECK(run(OPENSSL_VERIFY, out, sizeof(out)) == 0);
        CHECK(strstr(out, "Signature Verified Successfully") != NULL);
    }
    /* one byte of the statement changed: openssl refuses it */
    CHECK(run("python3 -c 'b=bytearray(open(\"statement.bin\",\"rb\").read()); b[20]^=1; "
              "open(\"statement.bin\",\"wb\").write(b)'",
              out, sizeof(out)) == 0);
    CHECK(run(OPENSSL_VERIFY, out, sizeof(out)) != 0);
    CHECK(strstr(out, "Signature Verification Failure") != NULL);
    free(r);
}

/* The key the gateway makes itself: made once, 0600, the same key after;
 * a file others may read is refused; without create nothing is made. */
static void test_generated_key_file(void)
{
    char path[160], err[256], id1[17], id2[17];
    EVP_PKEY *k1 = NULL, *k2 = NULL;
    struct stat st;
    int created = -1;

    CHECK(receipt_default_key_path("var/queue.db", path, sizeof(path)) == 0);
    CHECK_STR(path, "var/receipt-key.pem");
    CHECK(receipt_default_key_path("queue.db", path, sizeof(path)) == 0);
    CHECK_STR(path, "receipt-key.pem");
    CHECK(receipt_default_key_path("/queue.db", path, sizeof(path)) == 0);
    CHECK_STR(path, "/receipt-key.pem");
    CHECK(receipt_default_key_path("/a/b/queue.db", path, 8) == -1);

    snprintf(path, sizeof(path), "%s/receipt-key.pem", dir);
    CHECK(receipt_key_file(path, 0, &k1, &created, err, sizeof(err)) == -1 && k1 == NULL);
    CHECK(access(path, F_OK) != 0);
    CHECK(receipt_key_file(path, 1, &k1, &created, err, sizeof(err)) == 0 && created == 1);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(receipt_key_file(path, 1, &k2, &created, err, sizeof(err)) == 0 && created == 0);
    CHECK(k1 != NULL && k2 != NULL && receipt_key_id(k1, id1) == 0 &&
          receipt_key_id(k2, id2) == 0 && strcmp(id1, id2) == 0);
    EVP_PKEY_free(k2);
    k2 = NULL;
    CHECK(chmod(path, 0640) == 0);
    CHECK(receipt_key_file(path, 1, &k2, &created, err, sizeof(err)) == -1 && k2 == NULL);
    CHECK(strstr(err, "chmod 600") != NULL);
    CHECK(strstr(err, "PRIVATE") == NULL); /* no key bytes in the message */
    EVP_PKEY_free(k1);
}

int main(void)
{
    char cmd[128];
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

    snprintf(dir, sizeof(dir), "/tmp/dg_receipt_XXXXXX");
    if (key == NULL || other == NULL || mkdtemp(dir) == NULL)
        return 1;
    test_make_and_verify(key, other);
    test_key_loading(key);
    test_stock_openssl_verifies(key);
    test_generated_key_file();
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return check_done();
}

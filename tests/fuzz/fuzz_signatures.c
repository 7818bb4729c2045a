/*
 * fuzz_signatures.c: libFuzzer target for both signature header sets as
 * they arrive: Extend's x-extend-request-timestamp / -signature and
 * Standard Webhooks' webhook-id / -timestamp / -signature (several
 * "v1,..." entries, other versions, odd spacing). Also checks that a
 * signature made by the signing side always verifies, whatever the body.
 *
 * Input: "ts\nsignature\nid\nbody..." (fields cut at '\n').
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "verify.h"

#define NOW 1795944904LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char ext_key[] = "wss_fuzz_secret";
    static char std_key[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    struct secret ext = {NULL, (unsigned char *)ext_key, sizeof(ext_key) - 1};
    struct secret std = {NULL, (unsigned char *)std_key, sizeof(std_key) - 1};
    const uint8_t *p = data, *end = data + size;
    char *ts, *sig, *id, hex[65], v1[128], ts_ok[24];
    size_t body_len;

    ts = field(&p, end);
    sig = field(&p, end);
    id = field(&p, end);
    body_len = (size_t)(end - p);
    if (ts != NULL && sig != NULL && id != NULL) {
        (void)verify_extend_signature(&ext, 1, ts, sig, p, body_len, NOW, 300, 60);
        (void)verify_standard_webhook(&std, 1, id, ts, sig, p, body_len, NOW, 300);
        /* The round trip: what we sign, we accept. */
        snprintf(ts_ok, sizeof(ts_ok), "%lld", NOW);
        if (verify_sign_extend(ext_key, sizeof(ext_key) - 1, NOW, p, body_len, hex) != 0 ||
            verify_extend_signature(&ext, 1, ts_ok, hex, p, body_len, NOW, 300, 60) != VERIFY_OK)
            abort();
        if (id[0] != '\0' && strlen(id) <= 64 && strchr(id, ' ') == NULL &&
            strchr(id, ',') == NULL &&
            verify_sign_standard(std_key, id, NOW, p, body_len, v1, sizeof(v1)) == 0) {
            enum verify_result r =
                verify_standard_webhook(&std, 1, id, ts_ok, v1, p, body_len, NOW, 300);

            if (r != VERIFY_OK && r != VERIFY_MALFORMED) /* ids are checked for characters */
                abort();
        }
    }
    free(ts);
    free(sig);
    free(id);
    return 0;
}

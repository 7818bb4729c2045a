/*
 * fuzz_webhook.c: libFuzzer target for the Extend side of ingest: the
 * webhook body planner with a fixed rule set, and both signature
 * verifiers, whose headers are cut out of the input.
 *
 * Input layout for the verifiers: "id\nts\nsignature\nbody..."; any input
 * also goes to webhook_plan whole. Built by tests/fuzz/build.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "verify.h"
#include "webhook.h"

static struct rule rules[] = {
    {"extract_run.processed", RULE_DELETE_RUN | RULE_DELETE_FILE, 0},
    {"parse_run.*", RULE_DELETE_RUN, 3600},
    {"*", RULE_DELETE_FILE, 0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char ext_key[] = "wss_fuzz_secret";
    static char std_key[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    struct secret secrets[2] = {{NULL, (unsigned char *)ext_key, sizeof(ext_key) - 1},
                                {NULL, (unsigned char *)std_key, sizeof(std_key) - 1}};
    struct webhook_plan *plan = malloc(sizeof(*plan));
    const uint8_t *p = data, *end = data + size;
    struct api_error err;
    char *id, *ts, *sig;

    if (plan == NULL)
        return 0;
    if (webhook_plan((const char *)data, size, rules, 3, 1795944904000LL, plan, &err) == 0) {
        if (plan->n < 0 || plan->n > WEBHOOK_MAX_DELETIONS)
            __builtin_trap();
        for (int i = 0; i < plan->n; i++) {
            if (!resource_id_valid(plan->items[i].id, strlen(plan->items[i].id)))
                __builtin_trap();
        }
    } else if (err.code == NULL || err.status != 400) {
        __builtin_trap();
    }
    free(plan);

    id = field(&p, end);
    ts = field(&p, end);
    sig = field(&p, end);
    if (id != NULL && ts != NULL && sig != NULL) {
        verify_extend_signature(secrets, 2, ts, sig, p, (size_t)(end - p), 1795944904, 300, 60);
        verify_standard_webhook(secrets, 2, id, ts, sig, p, (size_t)(end - p), 1795944904, 300);
    }
    free(id);
    free(ts);
    free(sig);
    return 0;
}

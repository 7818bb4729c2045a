/*
 * fuzz_erasure.c: libFuzzer target for internal erasure request bodies.
 * Every accepted item must satisfy the invariants the queue relies on.
 * Built by tests/fuzz/build.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "erasure.h"

#define NOW 1795944904000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct erasure_item *items = NULL;
    struct api_error err;
    int n = -1;

    if (erasure_parse((const char *)data, size, 1000, NOW, &items, &n, &err) == 0) {
        if (items == NULL || n < 1 || n > 1000)
            __builtin_trap();
        for (int i = 0; i < n; i++) {
            if ((unsigned)items[i].resource >= RES_COUNT ||
                !resource_id_valid(items[i].id, strlen(items[i].id)) ||
                strlen(items[i].reason) > ERASURE_REASON_MAX ||
                (items[i].not_before_ms != 0 && items[i].not_before_ms < NOW) ||
                items[i].not_before_ms > NOW + 366LL * 86400 * 1000)
                __builtin_trap();
        }
    } else if (items != NULL || n != 0 || err.code == NULL || err.status < 400) {
        __builtin_trap();
    }
    free(items);
    return 0;
}

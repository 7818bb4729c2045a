/*
 * fuzz_json_outline.c: libFuzzer target that holds the outline parser to
 * jansson. For any input:
 *   - jansson accepts it  =>  the outline accepts it, and what comes back
 *     equals jansson's tree with the left-out containers made null;
 *   - jansson refuses it for its grammar, UTF-8, a NUL or depth  =>  the
 *     outline refuses it too (duplicate keys and numbers too large for
 *     jansson are only refused where the outline keeps them).
 * One quirk of jansson's is allowed for: it takes a NUL byte right after a
 * top-level number as the end of the text; the outline refuses it.
 * Built by tests/fuzz/build.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_body.h"

static const char *const keep[] = {"file", "files", NULL};

static int kept(const char *key)
{
    for (const char *const *k = keep; *k != NULL; k++)
        if (strcmp(*k, key) == 0)
            return 1;
    return 0;
}

/* The reference: the same cut, made on jansson's tree. */
static json_t *cut(json_t *v, int level, const char *key)
{
    if (!json_is_object(v) && !json_is_array(v))
        return json_incref(v);
    if (level >= 2)
        return key != NULL && kept(key) ? json_incref(v) : json_null();
    if (json_is_object(v)) {
        json_t *o = json_object(), *m;
        const char *k;
        json_object_foreach(v, k, m) json_object_set_new(o, k, cut(m, level + 1, k));
        return o;
    }
    json_t *a = json_array(), *e;
    size_t i;
    json_array_foreach(v, i, e) json_array_append_new(a, cut(e, level + 1, NULL));
    return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_error e1, e2;
    json_error_t jerr;
    json_t *full = json_body_load((const char *)data, size, &e1);
    json_t *outline = json_body_load_outline((const char *)data, size, keep, &e2);

    if (full != NULL) {
        /* jansson stops at a NUL byte after a top-level number and takes
         * "2\0"; the outline refuses any NUL byte outside a string. */
        if (outline == NULL && memchr(data, '\0', size) != NULL) {
            json_decref(full);
            return 0;
        }
        if (outline == NULL)
            abort(); /* refused what jansson takes */
        json_t *want = cut(full, 0, NULL);
        if (!json_equal(want, outline))
            abort(); /* kept something else than the cut */
        json_decref(want);
    } else if (outline != NULL) {
        /* Only duplicates and out-of-range numbers may differ, and only in
         * what the outline leaves out. */
        json_t *again = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
        enum json_error_code code = json_error_code(&jerr);
        if (again == NULL && code != json_error_numeric_overflow)
            abort();
        json_decref(again);
    }
    json_decref(full);
    json_decref(outline);
    return 0;
}

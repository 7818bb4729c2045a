/*
 * json_body.c: the one way request bodies are parsed and quoted back in
 * error messages (see json_body.h).
 */
#include "json_body.h"

#include <string.h>

const char *json_body_show(const char *s, size_t len, char out[JSON_BODY_SHOW_MAX + 4])
{
    size_t n;

    for (n = 0; n < len && n < JSON_BODY_SHOW_MAX; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = '?';
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[n] = s[n];
    }
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

json_t *json_body_load(const char *body, size_t len, struct api_error *err)
{
    json_error_t jerr;
    json_t *root;
    const char *why;

    if (body == NULL) {
        api_error_set(err, 400, "malformed_json", "body is empty");
        return NULL;
    }
    /* Duplicate keys are refused: {"id": "a", "id": "b"} must not mean
     * one thing here and another to the client that wrote it. */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root != NULL)
        return root;
    switch (json_error_code(&jerr)) {
    case json_error_duplicate_key:
        why = "duplicate object key";
        break;
    case json_error_invalid_utf8:
        why = "invalid UTF-8";
        break;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        why = "NUL character";
        break;
    case json_error_stack_overflow:
        why = "nested too deeply";
        break;
    default:
        why = "invalid JSON";
        break;
    }
    api_error_set(err, 400, "malformed_json", "body: %s at line %d, column %d", why, jerr.line,
                  jerr.column);
    return NULL;
}

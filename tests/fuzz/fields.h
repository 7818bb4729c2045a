/*
 * fields.h: the fuzz targets' input splitting: the next '\n'-terminated
 * field as a fresh string (NULL when out of memory).
 */
#ifndef DG_FUZZ_FIELDS_H
#define DG_FUZZ_FIELDS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char *field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t len = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = malloc(len + 1);

    if (s == NULL)
        return NULL;
    memcpy(s, *p, len);
    s[len] = '\0';
    *p += nl ? len + 1 : len;
    return s;
}

#endif

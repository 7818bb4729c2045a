/*
 * config_schema.h: the generic engine behind the config table.
 *
 * A table is an array of struct key, one row per key: its dotted name, its
 * type, where it lives in the target struct, its default (as JSON text,
 * parsed by the same code as the file), bounds, and one line of meaning.
 * From that one table the engine loads a JSON object (unknown keys are an
 * error), resolves the secrets, prints the effective values with secrets
 * redacted (`check`), prints the reference (`check --reference`) and frees
 * everything. It knows nothing of the gateway's keys: config.c holds them.
 *
 * Rows are written with the KEY_* macros below, one per type, so a table
 * reads as a list of keys rather than of initialisers.
 */
#ifndef DG_CONFIG_SCHEMA_H
#define DG_CONFIG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "secret.h"

enum ktype {
    K_STR,     /* char *, length bounds */
    K_IDBUF,   /* char[max + 1] inside the struct, length bounds */
    K_INT,     /* int */
    K_I64,     /* int64_t */
    K_NUM,     /* double */
    K_BOOL,    /* bool */
    K_SECRET,  /* struct secret */
    K_SECRETS, /* struct secret[], count in n_off, entry bounds */
    K_FLAGS,   /* unsigned mask from an array of names: names[i] is bit i */
    K_LIST,    /* array of objects described by sub, count in n_off */
    K_STRS,    /* char *[], count in n_off, entry bounds; null = none (count 0) */
};

#define KF_NULLABLE 1u /* JSON null is accepted (NULL pointer / no secret) */
#define KF_REQUIRED 2u /* no default: must be given (only inside list elements) */

struct key;

struct keytab {
    const struct key *keys;
    size_t n;
    size_t elem_size; /* of one list element; the whole struct at the top */
};

/* Extra check of a string value; may shorten it in place. */
typedef int (*key_scheck)(const char *path, char *s, char *err, size_t errlen);
/* Extra check of a resolved secret's bytes. */
typedef int (*key_rcheck)(const char *path, const struct secret *s, char *err, size_t errlen);

struct key {
    const char *name; /* dotted, relative to its table */
    enum ktype type;
    size_t off;
    size_t n_off;    /* K_SECRETS, K_LIST: offset of the int count */
    const char *def; /* default as JSON text; NULL with KF_REQUIRED */
    int64_t min, max;
    unsigned flags;
    key_scheck scheck;
    key_rcheck rcheck;
    const struct keytab *sub; /* K_LIST */
    const char *const *names; /* K_FLAGS, NULL-terminated */
    const char *doc;
};

#define KEYTAB(keys, elem)                                                                         \
    {                                                                                              \
        (keys), sizeof(keys) / sizeof((keys)[0]), sizeof(elem)                                     \
    }

/* A string default is written as the string; the macro makes it JSON. */
#define KEY_STR(name_, off_, def_, lo, hi, check, doc_)                                            \
    {                                                                                              \
        .name = (name_), .type = K_STR, .off = (off_), .def = "\"" def_ "\"", .min = (lo),         \
        .max = (hi), .scheck = (check), .doc = (doc_)                                              \
    }
#define KEY_STR_OR_NULL(name_, off_, lo, hi, check, doc_)                                          \
    {                                                                                              \
        .name = (name_), .type = K_STR, .off = (off_), .def = "null", .min = (lo), .max = (hi),    \
        .flags = KF_NULLABLE, .scheck = (check), .doc = (doc_)                                     \
    }
#define KEY_STR_REQUIRED(name_, off_, lo, hi, check, doc_)                                         \
    {                                                                                              \
        .name = (name_), .type = K_STR, .off = (off_), .min = (lo), .max = (hi),                   \
        .flags = KF_REQUIRED, .scheck = (check), .doc = (doc_)                                     \
    }
#define KEY_IDBUF_REQUIRED(name_, off_, lo, hi, check, doc_)                                       \
    {                                                                                              \
        .name = (name_), .type = K_IDBUF, .off = (off_), .min = (lo), .max = (hi),                 \
        .flags = KF_REQUIRED, .scheck = (check), .doc = (doc_)                                     \
    }
/* Numbers and booleans are written as C literals; the macro spells them. */
#define KEY_INT(name_, off_, def_, lo, hi, doc_)                                                   \
    {                                                                                              \
        .name = (name_), .type = K_INT, .off = (off_), .def = #def_, .min = (lo), .max = (hi),     \
        .doc = (doc_)                                                                              \
    }
#define KEY_I64(name_, off_, def_, lo, hi, doc_)                                                   \
    {                                                                                              \
        .name = (name_), .type = K_I64, .off = (off_), .def = #def_, .min = (lo), .max = (hi),     \
        .doc = (doc_)                                                                              \
    }
#define KEY_NUM(name_, off_, def_, lo, hi, doc_)                                                   \
    {                                                                                              \
        .name = (name_), .type = K_NUM, .off = (off_), .def = #def_, .min = (lo), .max = (hi),     \
        .doc = (doc_)                                                                              \
    }
#define KEY_BOOL(name_, off_, def_, doc_)                                                          \
    {                                                                                              \
        .name = (name_), .type = K_BOOL, .off = (off_), .def = #def_, .doc = (doc_)                \
    }
/* A secret's default is a reference, "env:NAME". */
#define KEY_SECRET(name_, off_, def_, doc_)                                                        \
    {                                                                                              \
        .name = (name_), .type = K_SECRET, .off = (off_), .def = "\"" def_ "\"", .doc = (doc_)     \
    }
#define KEY_SECRET_NULLABLE(name_, off_, def_, doc_)                                               \
    {                                                                                              \
        .name = (name_), .type = K_SECRET, .off = (off_), .def = "\"" def_ "\"",                   \
        .flags = KF_NULLABLE, .doc = (doc_)                                                        \
    }
#define KEY_SECRET_OR_NULL(name_, off_, check, doc_)                                               \
    {                                                                                              \
        .name = (name_), .type = K_SECRET, .off = (off_), .def = "null", .flags = KF_NULLABLE,     \
        .rcheck = (check), .doc = (doc_)                                                           \
    }
/* Lists take their default as JSON text (NULL: required), the offset of
 * their int count, and bounds on the number of entries. */
#define KEY_SECRETS(name_, off_, count_off, def_, lo, hi, doc_)                                    \
    {                                                                                              \
        .name = (name_), .type = K_SECRETS, .off = (off_), .n_off = (count_off), .def = (def_),    \
        .min = (lo), .max = (hi), .doc = (doc_)                                                    \
    }
#define KEY_SECRETS_REQUIRED(name_, off_, count_off, lo, hi, check, doc_)                          \
    {                                                                                              \
        .name = (name_), .type = K_SECRETS, .off = (off_), .n_off = (count_off), .min = (lo),      \
        .max = (hi), .flags = KF_REQUIRED, .rcheck = (check), .doc = (doc_)                        \
    }
/* Each entry is 1..STRS_ENTRY_MAX characters and passes check. */
#define STRS_ENTRY_MAX 255
#define KEY_STRS_OR_NULL(name_, off_, count_off, lo, hi, check, doc_)                              \
    {                                                                                              \
        .name = (name_), .type = K_STRS, .off = (off_), .n_off = (count_off), .def = "null",       \
        .min = (lo), .max = (hi), .flags = KF_NULLABLE, .scheck = (check), .doc = (doc_)           \
    }
#define KEY_FLAGS(name_, off_, names_, def_, doc_)                                                 \
    {                                                                                              \
        .name = (name_), .type = K_FLAGS, .off = (off_), .def = (def_), .names = (names_),         \
        .doc = (doc_)                                                                              \
    }
#define KEY_LIST(name_, off_, count_off, def_, hi, sub_, doc_)                                     \
    {                                                                                              \
        .name = (name_), .type = K_LIST, .off = (off_), .n_off = (count_off), .def = (def_),       \
        .max = (hi), .sub = (sub_), .doc = (doc_)                                                  \
    }

/* Writes "path: message" into err; returns -1 for `return schema_fail(...)`. */
int schema_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fills base from root (a JSON object) under tab: refuses unknown keys,
 * then sets every key from root or from its default. On error -1 with the
 * key's path first in err; what was filled must go to schema_free. */
int schema_load(const struct keytab *tab, void *base, const json_t *root, char *err, size_t errlen);

/* Reads every secret of base. All or nothing: on error the old values are
 * kept. Replaced values are wiped. */
int schema_resolve_secrets(const struct keytab *tab, void *base, char *err, size_t errlen);

/* The effective values as a JSON object, sections from dotted names; a
 * secret shows as {"ref": ..., "value": "(redacted)"} or null. */
json_t *schema_to_json(const struct keytab *tab, const void *base);

/* The Markdown reference: key | type | default | bounds | meaning. */
void schema_print_reference(const struct keytab *tab, FILE *out);

/* The i-th key as a dotted path, list members as "list[].member". 0, or
 * -1 past the last key. */
int schema_key_name(const struct keytab *tab, size_t i, char *out, size_t outlen);

/* Wipes secrets and frees every string of base. */
void schema_free(const struct keytab *tab, void *base);

#endif

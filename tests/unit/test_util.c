/*
 * test_util.c: util_json_indent against jansson's own indented output.
 */
#include "check.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* What util_json_indent writes for text, in a new string (free it). */
static char *indented(const char *text, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL) {
        perror("open_memstream");
        exit(1);
    }
    *rc = util_json_indent(f, text);
    fclose(f);
    return buf;
}

/* The compact text of doc, indented, is what jansson indents. */
static void check_same_as_jansson(const char *doc)
{
    json_t *v = json_loads(doc, JSON_DECODE_ANY, NULL);
    char *compact, *want, *got;
    int rc;

    REQUIRE(v != NULL);
    compact = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    want = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    got = indented(compact, &rc);
    CHECK(rc == 0);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "for %s\nwant:\n%s\ngot:\n%s\n", compact, want, got);
    CHECK_STR(got, want);
    free(compact);
    free(want);
    free(got);
    json_decref(v);
}

static void test_indent_matches_jansson(void)
{
    static const char *const docs[] = {
        "{}",
        "[]",
        "{\"a\":1}",
        "{\"count\":2,\"deletions\":[{\"id\":\"del_1\",\"reason\":null,\"audit\":{\"seq\":3}},"
        "{\"id\":\"del_2\",\"attempt_history\":[],\"requested_by\":{}}]}",
        /* Brackets, commas, colons and escapes inside strings are text. */
        "{\"s\":\"a,b:c{d}[e]\\\"f\\\\\",\"u\":\"\\u00e9\\n\\t\",\"k,:{}\":[1,-2.5,true,false,null]"
        "}",
        "[[[[]]],[{}],{\"x\":[{}, []]}]",
        "\"just a string\"",
        "42",
    };

    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
        check_same_as_jansson(docs[i]);
}

static void test_indent_refuses_what_is_not_json(void)
{
    static const char *const bad[] = {"",         "   ",    "{", "[}",
                                      "{\"a\":1", "\"open", "]", "{\"a\":\"b\\"};
    int rc;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        free(indented(bad[i], &rc));
        if (rc != -1)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(rc == -1);
    }
    /* Deeper than any answer: refused, not overrun. */
    {
        char deep[200];

        memset(deep, '[', 100);
        memset(deep + 100, ']', 99);
        deep[199] = '\0';
        free(indented(deep, &rc));
        CHECK(rc == -1);
    }
}

int main(void)
{
    test_indent_matches_jansson();
    test_indent_refuses_what_is_not_json();
    return check_done();
}

/*
 * test_probe.c: the query parameters ctl sends (percent-encoded, bounded,
 * the query untouched when one does not fit) and the input the commands
 * read (bounded to the byte: exactly max is read, one byte more refused).
 */
#include "check.h"
#include "cmd.h"
#include "probe.h"

#include <stdlib.h>
#include <unistd.h>

static void test_query_add(void)
{
    char q[48] = "";

    CHECK(probe_query_add(q, sizeof(q), "since", NULL) == 0);
    CHECK_STR(q, "");
    CHECK(probe_query_add(q, sizeof(q), "since", "2026-01-01T00:00:00+01:00") == 0);
    CHECK_STR(q, "&since=2026-01-01T00%3A00%3A00%2B01%3A00");
    /* Does not fit: the query stays as it was, never cut mid-escape. */
    CHECK(probe_query_add(q, sizeof(q), "state", "dead") == -1);
    CHECK_STR(q, "&since=2026-01-01T00%3A00%3A00%2B01%3A00");
    q[0] = '\0';
    CHECK(probe_query_add(q, sizeof(q), "source", "a b&c=d_e.f~g-h") == 0);
    CHECK_STR(q, "&source=a%20b%26c%3Dd_e.f~g-h");
    q[0] = '\0';
    CHECK(probe_query_add(q, 9, "source", "") == 0);
    CHECK_STR(q, "&source=");
    CHECK(probe_query_add(q, 9, "x", "") == -1);
    CHECK_STR(q, "&source=");
}

static void test_read_input(void)
{
    char path[] = "/tmp/dg-test-probe-XXXXXX";
    int fd = mkstemp(path);
    size_t len = 1;
    char *text;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, "0123456789", 10) == 10);
    close(fd);
    text = cmd_read_input(path, 10, &len);
    CHECK(text != NULL && len == 10);
    CHECK_STR(text, "0123456789");
    free(text);
    CHECK(cmd_read_input(path, 9, &len) == NULL && len == 0);
    text = cmd_read_input(path, 1u << 20, &len);
    CHECK(text != NULL && len == 10);
    free(text);
    unlink(path);
    CHECK(cmd_read_input(path, 10, &len) == NULL);
}

int main(void)
{
    test_query_add();
    test_read_input();
    return check_done();
}

/*
 * check.h: the whole framework of the C tests (tests/unit/,
 * tests/integration/). CHECK records a pass or a failure (with file and
 * line) and goes on; REQUIRE does the same but on a failure leaves the
 * (void) test function, for a check the lines after it rely on, such as a
 * call that fills the buffer they read: going on would read garbage.
 * check_done() prints the ctest-readable summary line and gives the exit
 * status.
 */
#ifndef DG_CHECK_H
#define DG_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

/* One check: count it; on a failure say where and what (text: the
 * condition as written), then run the statement on_fail. */
#define CHECK_ONE_(cond, text, name, on_fail)                                                      \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, name, text);             \
            on_fail                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK(cond) CHECK_ONE_(cond, #cond, "CHECK", (void)0;)
#define REQUIRE(cond) CHECK_ONE_(cond, #cond, "REQUIRE", return;)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (check_a_ != NULL && check_b_ != NULL && strcmp(check_a_, check_b_) == 0) {             \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__,    \
                    __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",                              \
                    check_b_ ? check_b_ : "(null)");                                               \
        }                                                                                          \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed == 0 && check_passed > 0 ? 0 : 1;
}

#endif

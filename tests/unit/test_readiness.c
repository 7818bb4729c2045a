/*
 * test_readiness.c: ready only when the queue commits, the credentials
 * are accepted, no stop has begun and the audit log takes records; each
 * reporter clears only its own flag.
 */
#include "check.h"
#include "readiness.h"

int main(void)
{
    struct readiness r = {0};

    CHECK(readiness_ready(&r, 1));
    CHECK(!readiness_ready(&r, 0));
    readiness_set_queue_failing(&r, 5);
    CHECK(readiness_queue_failing(&r) == 1);
    CHECK(!readiness_ready(&r, 1));
    readiness_set_breaker_open(&r, 1);
    readiness_set_queue_failing(&r, 0);
    CHECK(!readiness_ready(&r, 1));
    CHECK(readiness_breaker_open(&r));
    readiness_set_breaker_open(&r, 0);
    CHECK(readiness_ready(&r, 1));
    readiness_set_stopping(&r);
    CHECK(readiness_stopping(&r));
    CHECK(!readiness_ready(&r, 1));
    return check_done();
}

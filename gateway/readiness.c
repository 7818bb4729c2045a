/*
 * readiness.c: the gateway's readiness flags (see readiness.h).
 */
#include "readiness.h"

void readiness_set_queue_failing(struct readiness *r, int failing)
{
    r->queue_failing = failing != 0;
}

void readiness_set_breaker_open(struct readiness *r, int open)
{
    r->breaker_open = open != 0;
}

void readiness_set_accounts(struct readiness *r, int n)
{
    r->n_accounts = n;
}

void readiness_set_account_breaker(struct readiness *r, int account, int open)
{
    unsigned all = r->n_accounts > 1 && r->n_accounts < 32 ? (1u << r->n_accounts) - 1 : 1u;

    if (account < 0 || account >= 32)
        return;
    if (open)
        r->breaker_accounts |= 1u << account;
    else
        r->breaker_accounts &= ~(1u << account);
    r->breaker_open = (r->breaker_accounts & all) == all;
}

int readiness_account_breaker(const struct readiness *r, int account)
{
    return account >= 0 && account < 32 && (r->breaker_accounts & (1u << account)) != 0;
}

void readiness_set_stopping(struct readiness *r)
{
    r->stopping = 1;
}

int readiness_queue_failing(const struct readiness *r)
{
    return r->queue_failing;
}

int readiness_breaker_open(const struct readiness *r)
{
    return r->breaker_open;
}

int readiness_stopping(const struct readiness *r)
{
    return r->stopping;
}

int readiness_ready(const struct readiness *r, int audit_ok)
{
    return audit_ok && !r->queue_failing && !r->breaker_open && !r->stopping;
}

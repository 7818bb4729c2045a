/*
 * readiness.h: whether the gateway should get traffic, as GET /readyz and
 * dg_ready say it. Three parties report, each through its own setter: the
 * queue's callbacks (the last commit failed or worked), the dispatcher
 * (Extend refuses the credentials: the breaker) and serve (a stop has
 * begun). Everyone else only reads.
 *
 * The fields are this module's: set and read them through the functions
 * below, so a reader finds every writer by grepping one prefix.
 */
#ifndef DG_READINESS_H
#define DG_READINESS_H

struct readiness {
    int queue_failing;         /* the last queue commit failed */
    int breaker_open;          /* Extend refused the credentials (of every account) */
    unsigned breaker_accounts; /* bit i: account i's credentials are refused */
    int n_accounts;            /* 0 or 1: one account, its breaker is the gateway's */
    int stopping;              /* SIGTERM: answers in progress finish, nothing new */
};

void readiness_set_queue_failing(struct readiness *r, int failing);
void readiness_set_breaker_open(struct readiness *r, int open);
/* One account's breaker: the gateway is not ready while every account's
 * credentials are refused (one bad key leaves the others delivering).
 * n: the number of accounts, set once at start. */
void readiness_set_accounts(struct readiness *r, int n);
void readiness_set_account_breaker(struct readiness *r, int account, int open);
int readiness_account_breaker(const struct readiness *r, int account);
void readiness_set_stopping(struct readiness *r);

int readiness_queue_failing(const struct readiness *r);
int readiness_breaker_open(const struct readiness *r);
int readiness_stopping(const struct readiness *r);

/* The one definition of ready, given whether the audit log takes records.
 * Extend out of reach leaves the gateway ready: accepting and queueing
 * through an outage is its job, and nobody needs to act on the gateway.
 * Rejected credentials and an audit log that takes no record do need
 * someone. */
int readiness_ready(const struct readiness *r, int audit_ok);

#endif

/*
 * fdlimit.h: the process's file descriptor budget. The soft limit is
 * raised to the hard one at start; the listeners' connection caps are
 * planned inside what is left once the queue, the audit log and the
 * upstream connections have theirs, so a flood of clients runs into the
 * cap (which sheds the slowest) and not into EMFILE (which would stall
 * every accept, the admin listener's and the health probes' included).
 */
#ifndef DG_FDLIMIT_H
#define DG_FDLIMIT_H

#include <stddef.h>

/* Raises RLIMIT_NOFILE's soft limit to the hard limit; logs both. Returns
 * the soft limit in force, or -1 if it cannot be read. */
long fdlimit_raise(void);

/* Descriptors open now (a count of /proc/self/fd, or a probe up to the
 * soft limit where there is no /proc). */
long fdlimit_in_use(void);

/* Splits what the soft limit leaves (after in_use and reserve) between the
 * public and admin listeners, each at most what was asked. 0, or -1 when
 * not even one connection per listener fits (err says why). Logs the
 * plan. */
int fdlimit_plan(long want_public, long want_admin, long reserve, int *public_cap, int *admin_cap,
                 char *err, size_t errlen);

#endif

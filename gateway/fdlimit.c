/*
 * fdlimit.c: raising the descriptor limit and planning the connection
 * caps (see fdlimit.h).
 */
#include "fdlimit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"

static long soft_limit = -1;

long fdlimit_raise(void)
{
    struct rlimit rl;
    long was;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warn(NULL, "file descriptors: cannot read the limit: %s", strerror(errno));
        return -1;
    }
    was = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
    if (rl.rlim_cur != rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};

        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
        else
            log_warn(NULL, "file descriptors: cannot raise the soft limit: %s", strerror(errno));
    }
    soft_limit = rl.rlim_cur == RLIM_INFINITY ? 1048576L : (long)rl.rlim_cur;
    log_info(NULL, "file descriptors: soft limit %ld (was %ld), hard limit %ld", soft_limit, was,
             rl.rlim_max == RLIM_INFINITY ? -1L : (long)rl.rlim_max);
    return soft_limit;
}

long fdlimit_in_use(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.')
                n++;
        }
        closedir(d);
        return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
    }
    for (long fd = 0; fd < (soft_limit > 0 && soft_limit < 65536 ? soft_limit : 65536); fd++) {
        if (fcntl((int)fd, F_GETFD) != -1)
            n++;
    }
    return n;
}

int fdlimit_plan(long want_public, long want_admin, long reserve, int *public_cap, int *admin_cap,
                 char *err, size_t errlen)
{
    long limit = soft_limit > 0 ? soft_limit : 1024;
    long in_use = fdlimit_in_use();
    long avail = limit - in_use - reserve, adm, pub;

    /* The admin listener gets its share first, so operators can always
     * get in; at most an eighth of what is left. */
    adm = want_admin < avail / 8 ? want_admin : avail / 8;
    if (adm < 1)
        adm = 1;
    pub = avail - adm < want_public ? avail - adm : want_public;
    if (pub < 1) {
        snprintf(err, errlen,
                 "file descriptor limit %ld is too low: %ld in use and %ld kept for the queue, "
                 "audit log and upstream leave no room for connections",
                 limit, in_use, reserve);
        return -1;
    }
    *public_cap = (int)pub;
    *admin_cap = (int)adm;
    log_info(NULL,
             "connections: at most %ld on the public listener%s, %ld on the admin listener "
             "(file descriptors: limit %ld, %ld in use, %ld kept in reserve)",
             pub, pub < want_public ? " (limits.max_connections lowered to fit)" : "", adm, limit,
             in_use, reserve);
    return 0;
}

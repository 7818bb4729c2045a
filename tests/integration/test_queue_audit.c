/*
 * test_queue_audit.c: what the queue writes to the audit log and that a
 * failing audit log fails the whole cycle.
 *
 * audit_append, audit_sync, audit_mark, audit_rewind and the position
 * calls are defined here, so the linker takes these recording versions and
 * never pulls the library's audit.o (this program uses no other audit
 * function).
 */
#include "audit.h"
#include "check.h"
#include "queue.h"
#include "util.h"

#include <dirent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct audit {
    int unused;
};

struct rec {
    char event[16];
    char deletion_id[48];
    int64_t job_id;
    char source[16], key[32], request_id[32], resource_id[32];
    int http_status;
    uint64_t seq;
};

static struct rec recs[64];
static int n_recs, n_synced, fail_append, fail_sync;
static uint64_t next_seq = 1;

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src != NULL ? src : "");
}

int audit_append(struct audit *a, const struct audit_record *r, uint64_t *seq_out, char mac_out[65])
{
    (void)a;
    if (fail_append || n_recs == 64)
        return -1;
    struct rec *x = &recs[n_recs++];
    copy(x->event, sizeof(x->event), r->event);
    copy(x->deletion_id, sizeof(x->deletion_id), r->deletion_id);
    copy(x->source, sizeof(x->source), r->source);
    copy(x->key, sizeof(x->key), r->key);
    copy(x->request_id, sizeof(x->request_id), r->request_id);
    copy(x->resource_id, sizeof(x->resource_id), r->resource_id);
    x->job_id = r->job_id;
    x->http_status = r->http_status;
    x->seq = next_seq++;
    *seq_out = x->seq;
    snprintf(mac_out, 65, "%064llu", (unsigned long long)x->seq);
    return 0;
}

int audit_sync(struct audit *a)
{
    (void)a;
    if (fail_sync) {
        n_recs = n_synced; /* the buffered records are dropped, as audit.h says */
        return -1;
    }
    n_synced = n_recs;
    return 0;
}

void audit_mark(const struct audit *a, struct audit_mark *m)
{
    (void)a;
    m->len = (size_t)n_recs;
    m->seq = next_seq;
}

void audit_rewind(struct audit *a, const struct audit_mark *m)
{
    (void)a;
    n_recs = (int)m->len;
    next_seq = m->seq;
}

void audit_position(const struct audit *a, uint64_t *seq, char mac[65])
{
    (void)a;
    *seq = n_synced > 0 ? recs[n_synced - 1].seq : 0;
    snprintf(mac, 65, "%064llu", (unsigned long long)*seq);
}

void audit_set_committed(struct audit *a, uint64_t seq)
{
    (void)a, (void)seq;
}

int audit_last_committed(const struct audit *a, uint64_t *committed)
{
    (void)a, (void)committed;
    return 0;
}

static struct event_base *base;
static struct audit fake;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

static void run_until(const int *flag)
{
    int64_t deadline = util_mono_ms() + 5000;

    while (!*flag && util_mono_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
}

struct res {
    int done, status, n, synced_at_callback;
    int64_t count;
    struct queue_job job;
    struct queue_deletion_view v;
};

static void on_submit(const struct queue_submit_result *r, void *arg)
{
    struct res *x = arg;

    x->done = 1;
    x->status = (int)r->status;
    x->synced_at_callback = n_synced == n_recs;
}

static int submit(struct queue *q, const char *key, const char *del_id, const char *rid)
{
    struct queue_item it = {.resource = RES_FILE};
    struct queue_submission sub = {.source = "crm",
                                   .key = key,
                                   .request_id = "req_a",
                                   .now_ms = util_now_ms(),
                                   .items = &it,
                                   .n_items = del_id != NULL,
                                   .response_body = ""};
    struct res x = {0};

    if (del_id != NULL) {
        copy(it.deletion_id, sizeof(it.deletion_id), del_id);
        copy(it.resource_id, sizeof(it.resource_id), rid);
    }
    CHECK(queue_submit(q, &sub, on_submit, &x) == 0);
    run_until(&x.done);
    CHECK(x.done && x.synced_at_callback);
    return x.status;
}

static void on_claim(const struct queue_job *jobs, int n, int64_t next, int failed, void *arg)
{
    struct res *x = arg;

    (void)next;
    x->done = 1;
    x->n = failed ? -1 : n;
    if (n > 0)
        x->job = jobs[0];
}

static void on_done(int failed, void *arg)
{
    struct res *x = arg;

    x->done = 1;
    x->status = !failed;
}

static int64_t claim_complete(struct queue *q, enum deletion_state state, int http_status)
{
    struct res c = {0}, d = {0};
    struct queue_outcome o = {.state = state,
                              .counts_as_attempt = 1,
                              .http_status = http_status,
                              .retry_at_ms = util_now_ms()};

    CHECK(queue_claim(q, 1, 60000, on_claim, &c) == 0);
    run_until(&c.done);
    CHECK(c.n == 1);
    o.job_id = c.job.job_id;
    o.lease = c.job.lease;
    o.started_ms = util_now_ms();
    o.finished_ms = o.started_ms + 1;
    CHECK(queue_complete(q, &o, on_done, &d) == 0);
    run_until(&d.done);
    CHECK(d.status == 1);
    return c.job.job_id;
}

static void on_get(const struct queue_deletion_view *v, int failed, void *arg)
{
    struct res *x = arg;

    x->done = 1;
    x->n = v != NULL && !failed;
    if (v != NULL)
        x->v = *v;
}

static int get(struct queue *q, const char *id, struct queue_deletion_view *v)
{
    struct res x = {0};

    CHECK(queue_get(q, id, on_get, &x) == 0);
    run_until(&x.done);
    *v = x.v;
    return x.n;
}

static void on_count(int64_t count, int failed, void *arg)
{
    struct res *x = arg;

    x->done = 1;
    x->count = failed ? -1 : count;
}

static const struct rec *last(void)
{
    return n_recs > 0 ? &recs[n_recs - 1] : &recs[63];
}

int main(void)
{
    char dir[64] = "/tmp/dg_queue_audit_XXXXXX", path[128], err[256] = "";
    struct queue *q = NULL;
    struct queue_deletion_view v;
    struct event *tick;
    struct timeval tv = {0, 20000};
    struct res x = {0};
    int64_t job;

    if (evthread_use_pthreads() != 0 || mkdtemp(dir) == NULL)
        return 1;
    base = event_base_new();
    tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    event_add(tick, &tv);
    snprintf(path, sizeof(path), "%s/q.db", dir);
    struct queue_options o = {.path = path, .audit = &fake};
    if (queue_open(&q, base, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    /* accepted, with everything that says who asked for what */
    CHECK(submit(q, "k1", "del_1", "file_1") == QUEUE_SUBMIT_OK);
    CHECK(n_recs == 1);
    CHECK_STR(recs[0].event, "accepted");
    CHECK_STR(recs[0].deletion_id, "del_1");
    CHECK_STR(recs[0].source, "crm");
    CHECK_STR(recs[0].key, "k1");
    CHECK_STR(recs[0].request_id, "req_a");
    CHECK_STR(recs[0].resource_id, "file_1");
    CHECK(recs[0].job_id > 0);

    /* a submission whose second item fails in SQLite (its deletion id is
     * taken) is rolled back whole, and so is the first item's "accepted"
     * record, already appended when the second failed */
    {
        struct queue_item two[2] = {{.resource = RES_FILE}, {.resource = RES_FILE}};
        struct queue_submission sub = {.source = "crm",
                                       .key = "k9",
                                       .request_id = "req_b",
                                       .now_ms = util_now_ms(),
                                       .items = two,
                                       .n_items = 2,
                                       .response_body = ""};
        struct res r9 = {0};
        int n_before_failure = n_recs;

        copy(two[0].deletion_id, sizeof(two[0].deletion_id), "del_9");
        copy(two[0].resource_id, sizeof(two[0].resource_id), "file_9");
        copy(two[1].deletion_id, sizeof(two[1].deletion_id), "del_1");
        copy(two[1].resource_id, sizeof(two[1].resource_id), "file_10");
        CHECK(queue_submit(q, &sub, on_submit, &r9) == 0);
        run_until(&r9.done);
        CHECK(r9.status == QUEUE_SUBMIT_FAILED);
        CHECK(n_recs == n_before_failure);
        for (int i = 0; i < n_recs; i++)
            CHECK(strcmp(recs[i].resource_id, "file_9") != 0);
    }

    CHECK(submit(q, "k1", "del_x", "file_x") == QUEUE_SUBMIT_DUPLICATE);
    CHECK_STR(last()->event, "duplicate");
    CHECK(submit(q, "k2", NULL, NULL) == QUEUE_SUBMIT_OK);
    CHECK_STR(last()->event, "ignored");

    /* a retried try is an attempt record; the try that ends the job is
     * told by the terminal record alone, whose seq the job keeps */
    claim_complete(q, DEL_QUEUED, 503);
    CHECK_STR(last()->event, "attempt");
    CHECK(last()->http_status == 503);
    int before = n_recs;
    job = claim_complete(q, DEL_DELETED, 204);
    CHECK(n_recs == before + 1);
    CHECK_STR(last()->event, "deleted");
    CHECK(last()->http_status == 204);
    CHECK(last()->job_id == job);
    CHECK(get(q, "del_1", &v) && v.state == DEL_DELETED);
    CHECK(v.final_audit_seq == last()->seq && v.final_audit_seq != 0);
    CHECK(strlen(v.final_audit_mac) == 64);

    /* cancelled and retried name the operator */
    CHECK(submit(q, "k3", "del_3", "file_3") == QUEUE_SUBMIT_OK);
    memset(&x, 0, sizeof(x));
    CHECK(queue_cancel(q, "del_3", "bob", 0, on_count, &x) == 0);
    run_until(&x.done);
    CHECK(x.count == 1);
    CHECK_STR(last()->event, "cancelled");
    CHECK_STR(last()->source, "operator");
    CHECK_STR(last()->key, "bob");
    CHECK(get(q, "del_3", &v) && v.state == DEL_CANCELLED && v.final_audit_seq == last()->seq);
    CHECK(submit(q, "k4", "del_4", "file_4") == QUEUE_SUBMIT_OK);
    claim_complete(q, DEL_DEAD, 500);
    CHECK_STR(last()->event, "dead");
    memset(&x, 0, sizeof(x));
    CHECK(queue_retry(q, "del_4", "bob", 0, on_count, &x) == 0);
    run_until(&x.done);
    CHECK(x.count == 1);
    CHECK_STR(last()->event, "retried");
    CHECK_STR(last()->deletion_id, "del_4");

    /* A sync failure fails the cycle: nothing is kept, the key is free. */
    fail_sync = 1;
    CHECK(submit(q, "k5", "del_5", "file_5") == QUEUE_SUBMIT_FAILED);
    fail_sync = 0;
    CHECK(get(q, "del_5", &v) == 0);
    /* So does an append failure. */
    fail_append = 1;
    CHECK(submit(q, "k5", "del_5", "file_5") == QUEUE_SUBMIT_FAILED);
    fail_append = 0;
    CHECK(get(q, "del_5", &v) == 0);
    CHECK(submit(q, "k5", "del_5", "file_5") == QUEUE_SUBMIT_OK);
    CHECK(get(q, "del_5", &v) == 1 && v.state == DEL_QUEUED);
    CHECK_STR(last()->deletion_id, "del_5");

    queue_close(q);
    event_free(tick);
    event_base_free(base);
    const char *suffix[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char f[200];
        snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
        unlink(f);
    }
    rmdir(dir);
    return check_done();
}

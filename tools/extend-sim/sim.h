/*
 * sim.h: what the two files of extend-sim share: its state, the fault
 * rules, and the functions one file calls in the other. extend_sim.c is
 * the server and the DELETE path; sim_control.c keeps the request log, the
 * deleted-id set and the fault rules, and answers the /_sim/ routes.
 */
#ifndef DG_SIM_H
#define DG_SIM_H

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#define SIM_MAX_FAULTS 1024
#define SIM_MAX_LOG 200000      /* request records kept; later ones are only counted */
#define SIM_MAX_DELETED 4000000 /* ids remembered as deleted */
#define SIM_MAX_ID 1024         /* bytes of a decoded id */
#define SIM_MAX_DELAY_MS 600000
#define SIM_MAX_BODY 1048576
#define SIM_TEXT 128

enum fault_action { ACT_RESPOND, ACT_DROP, ACT_PLAIN };

struct fault {
    char match[SIM_TEXT];
    int64_t count; /* -1 = forever */
    int status;    /* 0 = no status: only the delay */
    char code[SIM_TEXT];
    char retry_after[SIM_TEXT];
    char ratelimit_reset[SIM_TEXT];
    int delay_ms;
    enum fault_action action;
};

/* A DELETE between its arrival and its answer. */
struct pending {
    struct sim *sim;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *timer; /* NULL when answered at once */
    json_t *rec;         /* its request-log record, status still unset */
    int64_t slot;        /* index in the log, -1 if not kept */
    const char *collection;
    char *id;           /* decoded */
    struct fault fault; /* copy of the rule that matched, status -1 if none */
    struct pending *prev, *next;
};

struct log_slot {
    char *line;     /* the serialised record once answered */
    json_t *record; /* the record while the DELETE waits for its answer */
};

struct sim {
    struct event_base *base;
    struct evhttp *http;
    SSL_CTX *ssl_ctx;
    char *token; /* NULL: any non-empty bearer is accepted */
    FILE *log;
    bool log_dirty;
    int latency_ms;
    double rate_limit; /* DELETEs per second before 429s, 0 = no limit */
    double rate_tokens, rate_last;
    uint32_t boot_tag;
    uint64_t req_counter;

    struct fault faults[SIM_MAX_FAULTS];
    int n_faults;

    struct log_slot *slots;
    int64_t n_slots, cap_slots, log_dropped;
    int64_t seq;

    char **deleted; /* open addressing set of "collection/id" */
    size_t deleted_cap, deleted_n;

    struct pending *pending;
    int64_t deletes, dropped, in_flight, max_concurrent, connections_opened;
    int64_t by_status[600];
};

/* Small helpers and answers (extend_sim.c). */
int sim_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);
void sim_copy(char *dst, size_t len, const char *src);
void sim_send_json(struct evhttp_request *req, int status, json_t *v);
void sim_send_text(struct evhttp_request *req, int status, const char *text);
void sim_send_error(struct sim *s, struct evhttp_request *req, int status, const char *code,
                    const char *message);

/* State and control routes (sim_control.c). */
void sim_deleted_clear(struct sim *s);
int sim_deleted_add(struct sim *s, const char *key);
void sim_log_clear(struct sim *s);
int64_t sim_log_reserve(struct sim *s, json_t *rec);
struct fault *sim_match_fault(struct sim *s, const char *id);
void sim_handle_faults(struct sim *s, struct evhttp_request *req);
void sim_handle_reset(struct sim *s, struct evhttp_request *req);
void sim_handle_requests(struct sim *s, struct evhttp_request *req, const char *query);
void sim_handle_stats(struct sim *s, struct evhttp_request *req);

#endif

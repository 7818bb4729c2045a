/*
 * http.h: the gateway's inbound HTTP: the public listener (Extend
 * webhooks, the internal erasure API, health and metrics) and the admin
 * listener for operators, each with its route table. Routes answer
 * through http_reply.h.
 */
#ifndef DG_HTTP_H
#define DG_HTTP_H

struct gateway;
struct http;

/* Binds the listeners of gw->cfg (the admin one only when configured) and
 * installs their routes. The routes get gw's parts, read here once, and
 * report to gw->ready; nothing else of gw is written.
 * 0 or -1 (logged); on -1, *out may be set: http_close and http_free it. */
int http_open(struct http **out, struct gateway *gw);

/* Stops accepting new connections (SIGTERM); answers in progress finish. */
void http_stop_accepting(struct http *h);

/* Answers still owed after an asynchronous step: a stop waits for them. */
int http_in_flight(const struct http *h);

/* Before event_base_free: frees the listeners and their connections. */
void http_close(struct http *h);

/* After event_base_free, whose finalizers free the last connections. */
void http_free(struct http *h);

#endif

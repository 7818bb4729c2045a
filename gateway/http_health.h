/*
 * http_health.h: the public listener's probes (http_health.c), as route
 * handlers (see http_route.h): GET or HEAD /healthz, /readyz, /metrics.
 */
#ifndef DG_HTTP_HEALTH_H
#define DG_HTTP_HEALTH_H

#include "http_route.h"

http_handler http_health_live;
http_handler http_health_ready;
http_handler http_health_metrics;

#endif

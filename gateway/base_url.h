/*
 * base_url.h: the one rule for extend.base_url. Config validation and
 * upstream_open both call it, so what `check` accepts is exactly what the
 * dispatcher will send to.
 *
 * https:// to any host; http:// only to 127.0.0.1, localhost or [::1] (a
 * test double on this machine: anywhere else the Extend token would cross
 * the network in clear text). No user, query, fragment, space or
 * backslash; a host of A-Z a-z 0-9 . _ - (or a bracketed IPv6 address);
 * an optional port 1..65535; a path whose trailing '/' are dropped, since
 * "/extract_runs/..." is appended to it.
 */
#ifndef DG_BASE_URL_H
#define DG_BASE_URL_H

#include <stdbool.h>
#include <stddef.h>

/* 0 with *https set and *keep the length of url without its trailing
 * slashes, or -1 with *why a phrase for "extend.base_url: <why>". */
int base_url_check(const char *url, bool *https, size_t *keep, const char **why);

#endif

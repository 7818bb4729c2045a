/*
 * ctl.h: the operator's side of the admin listener, and the container's
 * health probe; both are short-lived HTTP clients (libcurl easy).
 */
#ifndef DG_CTL_H
#define DG_CTL_H

/* deletion-gateway ctl ...: 0 on success, 1 on a refused action, 2 on usage
 * or connection errors. */
int ctl_main(int argc, char **argv);

/* deletion-gateway health [--url URL]: 0 when the URL answers 200. */
int ctl_health(int argc, char **argv);

#endif

/*
 * ctl.h: the operator's side of the admin listener, a short-lived HTTP
 * client (libcurl easy).
 */
#ifndef DG_CTL_H
#define DG_CTL_H

/* deletion-gateway ctl ...: 0 on success, 1 on a refused action, 2 on usage
 * or connection errors. */
int ctl_main(int argc, char **argv);

#endif

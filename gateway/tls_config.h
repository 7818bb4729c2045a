/*
 * tls_config.h: listen.tls in the config, the type the TLS module reads,
 * apart from the whole config.
 */
#ifndef DG_TLS_CONFIG_H
#define DG_TLS_CONFIG_H

struct tls_config {
    char *cert_file; /* NULL = plain HTTP */
    char *key_file;
    char *client_ca_file; /* NULL = no client certificates asked for */
};

#endif

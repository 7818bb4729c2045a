/*
 * wal_buffer.h: the SQLite VFS the queue opens its database with, which
 * writes a commit's WAL frames in one write (see wal_buffer.c).
 */
#ifndef DG_WAL_BUFFER_H
#define DG_WAL_BUFFER_H

#define WAL_BUFFER_VFS "dg-wal-buffer"

/* Registers the VFS (not as the default) once per process; any thread.
 * 0, or -1 if SQLite has no default VFS to build on. */
int wal_buffer_register(void);

#endif

/*
 * wal_buffer.c: a SQLite VFS that writes each commit's WAL frames with one
 * pwrite instead of two per page.
 *
 * SQLite appends a commit to the WAL as a 24-byte frame header and then the
 * page, one write each, and syncs once at the end. A queue commit touches a
 * few pages per request (rows plus index leaves keyed by random ids), so a
 * group of 64 requests was ~700 small pwrites, a sixth of the worker's
 * time. This VFS keeps the appends to a WAL file in memory while they are
 * contiguous and writes them in one go when SQLite syncs, reads, truncates,
 * asks the size, writes elsewhere, or closes the file, and when the buffer
 * is full. Every other file, and every other call, goes to the default VFS.
 *
 * Durability is unchanged: nothing SQLite has synced is still in memory,
 * since xSync writes the buffer first. Other connections read only frames
 * that a commit made visible, and a commit syncs (synchronous = FULL)
 * before it publishes them. Writes land in the file in the order SQLite
 * made them, so a frame rewritten later wins. Frames of a rolled-back
 * transaction may reach the file later, where SQLite ignores them as it
 * ignores any frame past the last commit.
 */
#include "wal_buffer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

/* Larger commits are written in pieces: the default VFS writes at most
 * 128 KiB - 1 in one call (it masks the length), and reports a longer
 * write as a full disk. */
#define WAL_BUFFER_SIZE ((size_t)64 * 1024)

struct walbuf_file {
    sqlite3_file base;   /* our methods */
    sqlite3_file *real;  /* the default VFS's file, right after this struct */
    unsigned char *data; /* WAL_BUFFER_SIZE bytes */
    size_t len;
    sqlite3_int64 offset; /* where data[0] goes in the file */
};

static sqlite3_vfs walbuf_vfs;
static sqlite3_vfs *default_vfs;
static pthread_once_t walbuf_once = PTHREAD_ONCE_INIT;
static int walbuf_rc = SQLITE_ERROR;

static int walbuf_flush(struct walbuf_file *f)
{
    int rc = SQLITE_OK;

    if (f->len > 0)
        rc = f->real->pMethods->xWrite(f->real, f->data, (int)f->len, f->offset);
    f->len = 0;
    return rc;
}

static int walbuf_close(sqlite3_file *file)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    int rc = walbuf_flush(f);
    int rc2 = f->real->pMethods->xClose(f->real);

    free(f->data);
    f->data = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int walbuf_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    int rc = walbuf_flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, buf, amt, off);
}

static int walbuf_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    size_t n = (size_t)amt;
    int rc;

    if (f->len > 0 && (off != f->offset + (sqlite3_int64)f->len || f->len + n > WAL_BUFFER_SIZE)) {
        if ((rc = walbuf_flush(f)) != SQLITE_OK)
            return rc;
    }
    if (n > WAL_BUFFER_SIZE)
        return f->real->pMethods->xWrite(f->real, buf, amt, off);
    if (f->len == 0)
        f->offset = off;
    memcpy(f->data + f->len, buf, n);
    f->len += n;
    return SQLITE_OK;
}

static int walbuf_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    int rc = walbuf_flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int walbuf_sync(sqlite3_file *file, int flags)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    int rc = walbuf_flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int walbuf_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    int rc = walbuf_flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

/* The rest only pass through. */

static int walbuf_lock(sqlite3_file *file, int level)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    return f->real->pMethods->xLock(f->real, level);
}

static int walbuf_unlock(sqlite3_file *file, int level)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    return f->real->pMethods->xUnlock(f->real, level);
}

static int walbuf_check_reserved(sqlite3_file *file, int *out)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int walbuf_file_control(sqlite3_file *file, int op, void *arg)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int walbuf_sector_size(sqlite3_file *file)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    return f->real->pMethods->xSectorSize(f->real);
}

static int walbuf_device_characteristics(sqlite3_file *file)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static const sqlite3_io_methods walbuf_methods = {
    .iVersion = 1, /* no shared memory or mmap: a WAL file uses neither */
    .xClose = walbuf_close,
    .xRead = walbuf_read,
    .xWrite = walbuf_write,
    .xTruncate = walbuf_truncate,
    .xSync = walbuf_sync,
    .xFileSize = walbuf_file_size,
    .xLock = walbuf_lock,
    .xUnlock = walbuf_unlock,
    .xCheckReservedLock = walbuf_check_reserved,
    .xFileControl = walbuf_file_control,
    .xSectorSize = walbuf_sector_size,
    .xDeviceCharacteristics = walbuf_device_characteristics,
};

static int walbuf_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                       int *out_flags)
{
    struct walbuf_file *f = (struct walbuf_file *)file;
    int rc;
    (void)vfs;

    if (!(flags & SQLITE_OPEN_WAL)) {
        /* Not a WAL: the default VFS's file, in our space, as it is. */
        return default_vfs->xOpen(default_vfs, name, file, flags, out_flags);
    }
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)(f + 1);
    if ((f->data = malloc(WAL_BUFFER_SIZE)) == NULL)
        return SQLITE_NOMEM;
    rc = default_vfs->xOpen(default_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        free(f->data);
        /* SQLite calls xClose only on a file whose pMethods is set. */
        if (f->real->pMethods != NULL)
            f->real->pMethods->xClose(f->real);
        f->base.pMethods = NULL;
        return rc;
    }
    f->base.pMethods = &walbuf_methods;
    return SQLITE_OK;
}

static void walbuf_init(void)
{
    default_vfs = sqlite3_vfs_find(NULL);
    if (default_vfs == NULL)
        return;
    walbuf_vfs = *default_vfs; /* every other entry point is the default's */
    walbuf_vfs.pNext = NULL;
    walbuf_vfs.zName = WAL_BUFFER_VFS;
    walbuf_vfs.szOsFile = (int)sizeof(struct walbuf_file) + default_vfs->szOsFile;
    walbuf_vfs.xOpen = walbuf_open;
    walbuf_rc = sqlite3_vfs_register(&walbuf_vfs, 0);
}

int wal_buffer_register(void)
{
    pthread_once(&walbuf_once, walbuf_init);
    return walbuf_rc == SQLITE_OK ? 0 : -1;
}

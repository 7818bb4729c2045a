/*
 * audit_file.c: the audit log's rotated files path.1, path.2, ...
 */
#include "audit_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* Rotated numbers K of path.K, ascending. */
int audit_file_rotated(const char *path, long **nums, int *n)
{
    char *dir = util_dir_of(path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t blen = strlen(base);
    DIR *d = NULL;
    struct dirent *de;
    long *v = NULL;
    int count = 0, cap = 0;

    *nums = NULL;
    *n = 0;
    if (dir == NULL)
        return -1;
    d = opendir(dir);
    if (d == NULL)
        goto fail;
    while ((de = readdir(d)) != NULL) {
        const char *s = de->d_name;
        int64_t k;

        if (strncmp(s, base, blen) != 0 || s[blen] != '.' || s[blen + 1] < '1' ||
            s[blen + 1] > '9' || strlen(s + blen + 1) > 9 ||
            util_parse_int64(s + blen + 1, 1, 999999999, &k) != 0)
            continue;
        if (count == AUDIT_MAX_FILES)
            goto fail;
        if (count == cap) {
            long *nv = realloc(v, (size_t)(cap ? cap * 2 : 16) * sizeof(*v));
            if (nv == NULL)
                goto fail;
            v = nv;
            cap = cap ? cap * 2 : 16;
        }
        /* insertion keeps the list sorted; rotated sets are small */
        int i = count++;
        while (i > 0 && v[i - 1] > k) {
            v[i] = v[i - 1];
            i--;
        }
        v[i] = (long)k;
    }
    closedir(d);
    free(dir);
    *nums = v;
    *n = count;
    return 0;
fail:
    if (d != NULL)
        closedir(d);
    free(dir);
    free(v);
    return -1;
}

char *audit_file_rotated_name(const char *path, long k)
{
    size_t len = strlen(path) + 16;
    char *s = malloc(len);

    if (s != NULL)
        snprintf(s, len, "%s.%ld", path, k);
    return s;
}

void audit_free_files(char **files, int n)
{
    for (int i = 0; files != NULL && i < n; i++)
        free(files[i]);
    free(files);
}

int audit_list_files(const char *path, char ***files, int *n)
{
    long *nums = NULL;
    int count = 0, k = 0;
    char **v = NULL;
    struct stat st;

    *files = NULL;
    *n = 0;
    if (audit_file_rotated(path, &nums, &count) != 0)
        return -1;
    v = calloc((size_t)count + 1, sizeof(*v));
    if (v == NULL)
        goto fail;
    for (; k < count; k++) {
        if ((v[k] = audit_file_rotated_name(path, nums[k])) == NULL)
            goto fail;
    }
    if (stat(path, &st) == 0) {
        if ((v[k] = strdup(path)) == NULL)
            goto fail;
        k++;
    }
    free(nums);
    *files = v;
    *n = k;
    return 0;
fail:
    free(nums);
    audit_free_files(v, k);
    return -1;
}

int audit_file_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

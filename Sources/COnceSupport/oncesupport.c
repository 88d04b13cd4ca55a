// See include/oncesupport.h. Compiled with _GNU_SOURCE, for O_DIRECT.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/uio.h>
#include <unistd.h>
#include "oncesupport.h"

int ol_open_direct_flag(void) {
#if defined(O_DIRECT)
    return O_DIRECT;
#else
    return 0;
#endif
}

long ol_pwrite_dsync(int fd, const void *buffer, size_t count, int64_t offset) {
#if defined(__linux__) && defined(RWF_DSYNC)
    struct iovec vector = { (void *)buffer, count };
    return (long)pwritev2(fd, &vector, 1, (off_t)offset, RWF_DSYNC);
#else
    (void)fd; (void)buffer; (void)count; (void)offset;
    errno = ENOSYS;
    return -1;
#endif
}

void ol_start_writeback(int fd, int64_t offset, int64_t count) {
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    (void)sync_file_range(fd, (off_t)offset, (off_t)count, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd; (void)offset; (void)count;
#endif
}

int ol_spawn_actions_close_from(void *actions, int from) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
#else
    (void)actions; (void)from;
    return ENOSYS;
#endif
}

int ol_pipe_cloexec(int descriptors[2]) {
    return pipe2(descriptors, O_CLOEXEC);
}

int ol_spawnattr_default_signals(void *attributes) {
    posix_spawnattr_t *spawn = (posix_spawnattr_t *)attributes;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    int result = posix_spawnattr_setsigmask(spawn, &none);
    if (result == 0) result = posix_spawnattr_setsigdefault(spawn, &all);
    if (result == 0) result = posix_spawnattr_setflags(spawn, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    return result;
}

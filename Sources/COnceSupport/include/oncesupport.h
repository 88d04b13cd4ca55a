// Small C helpers Swift has no spelling for. Mostly header-only (static inline);
// oncesupport.c holds what needs `_GNU_SOURCE`.
#ifndef ONCESUPPORT_H
#define ONCESUPPORT_H

#include <stddef.h>
#include <stdint.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

/// Asks the CPU to start loading the cache line holding `address` (a hint: no fault,
/// no effect on results). `LedgerState` uses it to overlap a replay's one random
/// hash-table access per record with the work on the previous record.
static inline void ol_prefetch(const void *address) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 3);
#else
    (void)address;
#endif
}

/// Asks Linux to back the 2 MiB-aligned part of [base, base + bytes) with
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`; a hint, without effect where
/// THP is off). For large buffers filled right after they are allocated: a 64 MiB
/// segment read then takes 32 page faults instead of 16,384, which halves the time
/// of a recovery scan. Blocks under 4 MiB are left alone.
static inline void ol_advise_huge_pages(void *base, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const size_t huge_page = (size_t)2 << 20;
    if (base == NULL || bytes < 2 * huge_page) return;
    long page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0) return;
    // madvise wants a page-aligned start; the huge pages themselves only cover the
    // 2 MiB-aligned part of the range, which is nearly all of a large block.
    uintptr_t page = (uintptr_t)page_size;
    uintptr_t start = ((uintptr_t)base + page - 1) / page * page;
    uintptr_t end = (uintptr_t)base + bytes;
    if (end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)base;
    (void)bytes;
#endif
}

/// The `open` flag `O_DIRECT` (Linux: write through to the device, bypassing the
/// page cache), or 0 where there is none. Swift's Glibc module does not export it
/// (glibc defines it only under `_GNU_SOURCE`); oncesupport.c is compiled with it.
/// The library never opens a file with it; the benchmark's diagnostic raw loop does.
int ol_open_direct_flag(void);

/// Starts writing back [offset, offset + count) of `fd` to the device without waiting
/// for it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`; a hint, nothing where the call is
/// missing). Makes no data durable: the caller still syncs.
void ol_start_writeback(int fd, int64_t offset, int64_t count);

/// `pwritev2(fd, {buffer, count}, 1, offset, RWF_DSYNC)`: a write that returns only
/// once its data (and the metadata needed to read it back) is durable, as if
/// followed by `fdatasync` — one system call instead of two. Returns what
/// `pwritev2` returns, with `errno` set on -1; -1 with `errno` ENOSYS where the
/// C library or the kernel headers have no `pwritev2`/`RWF_DSYNC` (the caller then
/// writes and syncs in two calls). A kernel older than 4.7 says EOPNOTSUPP or ENOSYS
/// without writing anything.
long ol_pwrite_dsync(int fd, const void *buffer, size_t count, int64_t offset);

/// Adds "close every descriptor from `from` on" to `actions` (a `posix_spawn_file_actions_t *`),
/// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34). Returns 0, an error number, or
/// ENOSYS where the C library lacks it.
int ol_spawn_actions_close_from(void *actions, int from);

/// `pipe2(descriptors, O_CLOEXEC)`: a pipe no program started meanwhile by another thread
/// inherits (`pipe` then `fcntl` leaves a window). Returns 0 or -1 with errno set.
int ol_pipe_cloexec(int descriptors[2]);

/// Sets `attributes` (a `posix_spawnattr_t *`, initialised) so the child starts with no signal
/// blocked and every signal at its default action, as from a shell: the spawning thread may
/// block signals (a Dispatch worker blocks most) and this process ignores SIGPIPE, and a child
/// would inherit both (a SIGTERM sent to it would then not end it). Returns 0 or an error number.
int ol_spawnattr_default_signals(void *attributes);

#endif

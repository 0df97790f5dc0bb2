// Linux calls Swift's Glibc module does not export (they need _GNU_SOURCE).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>

/// Starts writing `count` bytes of `fd` from `offset` back to disk without waiting
/// (sync_file_range with SYNC_FILE_RANGE_WRITE), so a later fsync has little left to do.
/// Returns 0, or -1 with errno set; a file system without it is harmless (the fsync still runs).
static inline int ckpt_start_writeback(int fd, long long offset, long long count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE);
}

/// O_DIRECT (Glibc's Swift module leaves it out): writes that go from the caller's memory to the
/// device without a copy into the page cache; offsets, lengths and memory must be block-aligned.
static inline int ckpt_direct_io_flag(void) {
    return O_DIRECT;
}

#include <malloc.h>

/// Serves every allocation from the heap (no mmap for large ones) and keeps freed memory in the
/// process, so a large block freed is reused by the next allocation of its size without page
/// faults or the kernel zeroing it again. Returns 1 when glibc took both settings.
static inline int ckpt_reuse_large_allocations(void) {
    return mallopt(M_MMAP_MAX, 0) && mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

/// Makes every thread allocate from glibc's one main arena (M_ARENA_MAX 1) rather than an arena
/// of its own. Returns 1 when glibc took the setting.
static inline int ckpt_share_one_arena(void) {
    return mallopt(M_ARENA_MAX, 1);
}

/// Gives the kernel back the free memory the heap holds (malloc_trim: the top, and whole free pages
/// inside it). Returns 1 when some was released.
static inline int ckpt_release_free_memory(void) {
    return malloc_trim(0);
}

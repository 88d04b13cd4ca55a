// Small C helpers Swift has no spelling for. Header-only (static inline); the .c file
// exists because a SwiftPM C target needs one source.
#ifndef ONCESUPPORT_H
#define ONCESUPPORT_H

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

#endif

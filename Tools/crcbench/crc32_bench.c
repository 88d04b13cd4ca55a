// Micro-benchmark: ns per call of zlib's crc32 and of our ol_crc32 (both paths) at the
// sizes recovery sees (32-byte position block, 96- and 128-byte frames), at 1 MiB, and of
// a whole record checksum (two zlib calls vs one ol_crc32_record). Not part of the package
// build or of the tests; build and run from the repository root:
//
//   clang -O2 -I Sources/CCRC32/include Sources/CCRC32/ccrc32.c Tools/crcbench/crc32_bench.c \
//       -lz -o /tmp/crc32_bench && /tmp/crc32_bench
//
// Each figure is the best of five timed runs of a chained loop (every call's result feeds
// the next call's seed, so calls cannot overlap).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "ccrc32.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

enum { ZLIB, OURS, PORTABLE, KINDS };
static const char *const kind_names[KINDS] = {"zlib crc32", "ol_crc32", "ol_crc32_portable"};

static uint32_t run(int kind, const unsigned char *buf, size_t len, long iterations, uint32_t crc) {
    for (long i = 0; i < iterations; i++) {
        switch (kind) {
        case ZLIB: crc = (uint32_t)crc32(crc, buf, (uInt)len); break;
        case OURS: crc = ol_crc32(crc, buf, len); break;
        default: crc = ol_crc32_portable(crc, buf, len); break;
        }
    }
    return crc;
}

static uint32_t sink;

static double ns_per_call(int kind, const unsigned char *buf, size_t len) {
    long iterations = len >= 4096 ? (long)(512ull * 1024 * 1024 / len) : 2000000;
    double best = 1e300;
    for (int r = 0; r < 5; r++) {
        double start = now_ns();
        sink ^= run(kind, buf, len, iterations, (uint32_t)r);
        double elapsed = (now_ns() - start) / (double)iterations;
        if (elapsed < best) best = elapsed;
    }
    return best;
}

// The record checksum over a `len`-byte frame: as OnceLedger did it (two zlib calls on a
// position block built in memory) and with ol_crc32_record.
static double record_ns(int use_zlib, const unsigned char *frame, size_t len) {
    const long iterations = 2000000;
    double best = 1e300;
    for (int r = 0; r < 5; r++) {
        uint32_t crc = (uint32_t)r;
        double start = now_ns();
        for (long i = 0; i < iterations; i++) {
            uint64_t words[4] = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull, 2, (uint64_t)i * 136};
            if (use_zlib) {
                unsigned char block[32];
                memcpy(block, words, sizeof block);
                crc = (uint32_t)crc32(crc32(crc, block, 32), frame, (uInt)len);
            } else {
                crc = ol_crc32_record(crc, words[0], words[1], words[2], words[3], frame, len);
            }
        }
        double elapsed = (now_ns() - start) / (double)iterations;
        sink ^= crc;
        if (elapsed < best) best = elapsed;
    }
    return best;
}

int main(void) {
    const size_t sizes[] = {32, 96, 128, 1u << 20};
    unsigned char *buf = malloc((1u << 20) + 64);
    if (buf == NULL) return 1;
    for (size_t i = 0; i < (1u << 20) + 64; i++) buf[i] = (unsigned char)(i * 2654435761u >> 13);

    printf("ol_crc32 path on this CPU: %s\n\n", ol_crc32_accelerated() ? "PCLMULQDQ" : "portable");
    printf("%-20s %12s %12s %12s %12s\n", "ns per call", "32 B", "96 B", "128 B", "1 MiB");
    for (int kind = 0; kind < KINDS; kind++) {
        printf("%-20s", kind_names[kind]);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            double ns = ns_per_call(kind, buf + 1, sizes[s]);
            if (sizes[s] >= 4096) {
                printf(" %7.0f (%4.1f GB/s)", ns, (double)sizes[s] / ns);
            } else {
                printf(" %12.1f", ns);
            }
        }
        printf("\n");
    }
    printf("\nrecord checksum, 132-byte frame (100-byte body): two zlib calls %.1f ns, ol_crc32_record %.1f ns\n",
           record_ns(1, buf + 4, 132), record_ns(0, buf + 4, 132));
    printf("record checksum,  92-byte frame  (56-byte body): two zlib calls %.1f ns, ol_crc32_record %.1f ns\n",
           record_ns(1, buf + 4, 92), record_ns(0, buf + 4, 92));
    return (int)(sink & 0);
}

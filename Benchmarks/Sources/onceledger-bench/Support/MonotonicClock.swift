import Glibc

/// Elapsed-time measurement for the benchmark. The corresponding C function is
/// `clock_gettime(CLOCK_MONOTONIC)`: unaffected by wall-clock adjustments.
struct MonotonicClock {
    static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    let startNanoseconds: UInt64

    init() { startNanoseconds = MonotonicClock.nanoseconds() }

    var elapsedSeconds: Double { Double(MonotonicClock.nanoseconds() - startNanoseconds) / 1e9 }

    /// A deadline `seconds` from now, in `nanoseconds()` units.
    static func deadline(afterSeconds seconds: Double) -> UInt64 {
        nanoseconds() + UInt64(max(0, seconds) * 1e9)
    }
}

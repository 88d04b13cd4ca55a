import Glibc

/// CPU time of the calling thread (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`), next
/// to wall time for single-threaded work: on a shared 2-CPU machine the wall time
/// of a CPU-bound step also measures whoever else was running.
struct ThreadCPUClock {
    static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    let startNanoseconds: UInt64

    init() { startNanoseconds = ThreadCPUClock.nanoseconds() }

    var elapsedSeconds: Double { Double(ThreadCPUClock.nanoseconds() - startNanoseconds) / 1e9 }
}

import Glibc
import Dispatch

/// Spin-then-park for a thread that serves a queue (the log's I/O thread, a
/// `SpinningExecutor`): how long to poll for the next job before sleeping on a
/// condition, since a thread wake-up costs tens of µs on a virtual machine.
///
/// It keeps a moving average (weight 1/4) of the gaps between one job's end and the
/// next one's arrival, and polls for twice that plus 10 µs, at most `maxNanoseconds`,
/// and not at all while jobs come further apart than `maxNanoseconds`: there a
/// wake-up is cheap next to the wait, and polling would only burn CPU.
struct AdaptivePolling {
    let maxNanoseconds: UInt64
    /// Gaps count up to this much in the average, so how fast polling comes back after
    /// a long idle stretch is bounded.
    let gapCapNanoseconds: UInt64
    private(set) var averageGapNanoseconds: UInt64 = 0

    init(maxNanoseconds: UInt64, gapCapNanoseconds: UInt64) {
        self.maxNanoseconds = maxNanoseconds
        self.gapCapNanoseconds = gapCapNanoseconds
    }

    /// How long to poll now.
    var budgetNanoseconds: UInt64 {
        guard averageGapNanoseconds <= maxNanoseconds else { return 0 }
        return min(maxNanoseconds, 2 * averageGapNanoseconds + 10_000)
    }

    /// Folds one gap into the average.
    mutating func note(gapNanoseconds gap: UInt64) {
        averageGapNanoseconds = (3 * averageGapNanoseconds + min(gap, gapCapNanoseconds)) / 4
    }

    static func nanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Polls until `hasWork()` or `deadline`, yielding the CPU between polls (on a
    /// small machine the threads that bring the work need it).
    static func poll(until deadline: UInt64, hasWork: () -> Bool) {
        while !hasWork() && nanoseconds() < deadline { sched_yield() }
    }
}

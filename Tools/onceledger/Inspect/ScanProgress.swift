import Glibc

/// A one-line progress indicator on standard error for long scans: redrawn in place
/// at most every half second, only when standard error is a terminal (never in
/// tests, pipes or logs), and erased when the scan ends.
final class ScanProgress {
    private let enabled: Bool
    private let label: String
    private let firstSegment: UInt64
    private let segmentCount: Int
    private var lastDrawNanoseconds: UInt64
    private var drawn = false

    init(label: String, firstSegment: UInt64, segmentCount: Int, enabled: Bool = isatty(STDERR_FILENO) == 1) {
        self.label = label
        self.firstSegment = firstSegment
        self.segmentCount = segmentCount
        self.enabled = enabled
        self.lastDrawNanoseconds = MonotonicClock.nanoseconds()
    }

    /// Called per record; cheap unless half a second has passed.
    func update(segment: UInt64, records: Int) {
        guard enabled, records & 0x3ff == 0 else { return }
        let now = MonotonicClock.nanoseconds()
        guard now - lastDrawNanoseconds >= 500_000_000 else { return }
        lastDrawNanoseconds = now
        drawn = true
        StandardError.write("\r\u{1B}[K\(label): segment \(segment &- firstSegment &+ 1) of \(segmentCount), \(Format.grouped(records)) records")
    }

    func finish() {
        guard drawn else { return }
        StandardError.write("\r\u{1B}[K")
        drawn = false
    }
}

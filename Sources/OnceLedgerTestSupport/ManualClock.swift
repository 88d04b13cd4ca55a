import Synchronization

/// Time under a test's control, for a ledger's injectable clock: it only moves when the
/// test moves it, so retention windows, `.window` scopes and the memo sweeper are tested
/// without sleeping or reading the wall clock.
///
/// ```swift
/// let clock = ManualClock()
/// let ledger = try Ledger.open(directory: dir, clock: clock.function, memoRetention: MemoRetention(.seconds(60)))
/// try await ledger.finishRun("run-1", status: .succeeded)
/// clock.advance(by: .seconds(61))
/// try await ledger.sweepMemo()      // sweeps run-1's memo
/// ```
public final class ManualClock: Sendable {
    private let value: Mutex<UInt64>

    /// A clock reading `start` milliseconds since the Unix epoch.
    public init(_ start: UInt64 = 1_700_000_000_000) { value = Mutex(start) }

    /// Now, in milliseconds since the Unix epoch.
    public var now: UInt64 { value.withLock { $0 } }

    /// Sets now (backwards too: a clock that goes backwards is a case to test).
    public func set(_ milliseconds: UInt64) { value.withLock { $0 = milliseconds } }

    /// Moves now forward by `milliseconds`.
    public func advance(_ milliseconds: UInt64) { value.withLock { $0 += milliseconds } }

    /// Moves now forward by `duration` (whole milliseconds).
    public func advance(by duration: Duration) {
        let (seconds, attoseconds) = duration.components
        advance(UInt64(max(0, seconds)) * 1000 + UInt64(max(0, attoseconds) / 1_000_000_000_000_000))
    }

    /// The clock as a ledger takes it (`Ledger.open(…, clock:)`).
    public var function: @Sendable () -> UInt64 { { [self] in self.now } }
}

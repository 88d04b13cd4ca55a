import OnceLedger
import Synchronization

/// What one caller appending one call at a time saw while `compact()` ran beside it: how long
/// the compaction took, how many calls returned meanwhile, and the longest one call waited
/// (what an append waits for a compaction).
struct CompactionBeside {
    var seconds = 0.0
    var calls = 0
    var longestCallSeconds = 0.0

    /// Runs `ledger.compact()` while one task calls `append` again and again until it returns.
    static func measure(_ ledger: Ledger, append: @escaping @Sendable () async throws -> Void) async throws
        -> CompactionBeside {
        try await append()
        let done = Mutex(false)
        async let appending: (Int, Double) = {
            var calls = 0
            var longest = 0.0
            while !done.withLock({ $0 }) {
                let clock = MonotonicClock()
                try await append()
                longest = max(longest, clock.elapsedSeconds)
                calls += 1
            }
            return (calls, longest)
        }()
        let clock = MonotonicClock()
        do {
            try await ledger.compact()
        } catch {
            done.withLock { $0 = true }
            _ = try? await appending
            throw error
        }
        let seconds = clock.elapsedSeconds
        done.withLock { $0 = true }
        let (calls, longest) = try await appending
        return CompactionBeside(seconds: seconds, calls: calls, longestCallSeconds: longest)
    }

    /// "N recorded in its T, the longest waited L".
    func summary(_ noun: String) -> String {
        "\(Format.grouped(calls)) \(noun) in its \(Format.seconds(seconds)), the longest waited \(Format.seconds(longestCallSeconds))"
    }
}

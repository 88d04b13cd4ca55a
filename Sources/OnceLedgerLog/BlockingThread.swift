import Foundation

/// Runs blocking work (`fdatasync`, SQLite commits, whole-file reads) on a
/// dedicated OS thread so it never occupies Swift concurrency's cooperative pool
/// (on a 2-core machine that pool has two threads; `ARCHITECTURE.md` §4).
package enum BlockingThread {
    /// Runs `body` on a new thread and suspends the calling task until it returns.
    package static func run<Value: Sendable>(
        name: String = "onceledger-bench", _ body: @escaping @Sendable () throws -> Value
    ) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try body() })
            }
            thread.name = name
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `count` copies of `body` (given its index) on `count` threads at once
    /// and returns their results in index order.
    package static func runAll<Value: Sendable>(
        count: Int, name: String = "onceledger-bench", _ body: @escaping @Sendable (Int) throws -> Value
    ) async throws -> [Value] {
        try await withThrowingTaskGroup(of: (Int, Value).self) { group in
            for index in 0..<count {
                group.addTask { (index, try await run(name: "\(name)-\(index)") { try body(index) }) }
            }
            var results = [Value?](repeating: nil, count: count)
            for try await (index, value) in group { results[index] = value }
            return results.map { $0! }
        }
    }
}

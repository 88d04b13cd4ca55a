// Proves where a compaction's `onCompacted` runs (`LogEngine.compactStreaming`): with
// `LogConfiguration.compactsInBackground` (the default), on a thread of its own after the
// marker, while later appends commit; a compaction asked for meanwhile starts only after it
// returned; `close` waits for it. With the option off, on the I/O thread. No timing: each
// test holds `onCompacted` at a gate and checks what happened around it, in order.
import Dispatch
import Foundation
import OnceLedgerFormat
@testable import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization
import Testing

@Suite struct CompactionThreadTests {
    static let directory = "/ledger"

    /// A gate a thread waits at, and a signal that it got there.
    final class Gate: Sendable {
        let reached = DispatchSemaphore(value: 0)
        let opened = DispatchSemaphore(value: 0)
        func pass() {
            reached.signal()
            opened.wait()
        }
    }

    /// What happened, in order, from any thread.
    final class Events: Sendable {
        private let list = Mutex<[String]>([])
        func note(_ event: String) { list.withLock { $0.append(event) } }
        var all: [String] { list.withLock { $0 } }
        func index(of event: String) -> Int? { all.firstIndex(of: event) }
    }

    static func open(_ storage: SimulatedStorage, background: Bool = true) throws -> LogEngine {
        var configuration = LogConfiguration(segmentBytes: 1 << 20)
        configuration.compactsInBackground = background
        return try LogEngine.open(directory: directory, storage: storage, configuration: configuration, clock: { 1 })
    }

    /// The I/O thread: where an append's `onDurable` runs.
    static func ioThread(_ engine: LogEngine) async throws -> pthread_t {
        let thread = Mutex<pthread_t?>(nil)
        _ = try await engine.append([LogRecord(kind: .opaque, body: [0])], onDurable: { _ in
            thread.withLock { $0 = pthread_self() }
        })
        return try #require(thread.withLock { $0 })
    }

    /// Waits until `gate` is reached, on a thread of its own. Not on `DispatchQueue.global()`:
    /// its threads are Swift concurrency's pool (two on two cores), and the compaction that
    /// reaches the gate is started by a task that needs one of them. With a second such wait
    /// (this suite's tests run in parallel) or another blocked thread, the whole test run hung.
    static func arrival(_ gate: Gate) async {
        await withCheckedContinuation { continuation in
            Thread {
                gate.reached.wait()
                continuation.resume()
            }.start()
        }
    }

    @Test func onCompactedRunsOnItsOwnThreadWhileAppendsCommit() async throws {
        let storage = SimulatedStorage(seed: 3)
        let engine = try Self.open(storage)
        defer { try? engine.close() }
        for index in 0..<20 { _ = try await engine.append(kind: .opaque, body: [UInt8(index)]) }
        let gate = Gate()
        let events = Events()
        let threadName = Mutex<pthread_t?>(nil)
        let first = Task {
            try await engine.compact({ _ in [] }, onCompacted: { _ in
                threadName.withLock { $0 = pthread_self() }
                events.note("onCompacted begins")
                gate.pass()
                events.note("onCompacted ends")
            })
        }
        await Self.arrival(gate)
        // Appends commit while onCompacted is held.
        for index in 0..<10 { _ = try await engine.append(kind: .opaque, body: [UInt8(index)]) }
        events.note("appends returned")
        // A second compaction waits for the first's onCompacted.
        let second = Task {
            try await engine.compact({ _ in
                events.note("second compaction takes its items")
                return []
            })
        }
        // Let the I/O thread take the second compaction's job (it must park it, not start it).
        for index in 0..<3 { _ = try await engine.append(kind: .opaque, body: [UInt8(index)]) }
        events.note("more appends returned")
        gate.opened.signal()
        let firstResult = try await first.value
        _ = try await second.value
        let io = try await Self.ioThread(engine)
        #expect(threadName.withLock { $0 } != nil && threadName.withLock { $0 } != io)
        #expect(events.all == ["onCompacted begins", "appends returned", "more appends returned", "onCompacted ends",
                               "second compaction takes its items"])
        #expect(firstResult.coveredSequence > 0)
        #expect(engine.poisonError == nil)
    }

    @Test func closeWaitsForOnCompacted() async throws {
        let storage = SimulatedStorage(seed: 4)
        let engine = try Self.open(storage)
        for index in 0..<20 { _ = try await engine.append(kind: .opaque, body: [UInt8(index)]) }
        let gate = Gate()
        let events = Events()
        let compaction = Task {
            try await engine.compact({ _ in [] }, onCompacted: { _ in
                gate.pass()
                events.note("onCompacted ends")
            })
        }
        await Self.arrival(gate)
        let closing = Task.detached {
            try engine.close()
            events.note("close returned")
        }
        // `close` is waiting (it cannot return before the gate opens); appends are refused.
        await #expect(throws: LedgerError.self) {
            for _ in 0..<1_000_000 { _ = try await engine.append(kind: .opaque, body: [1]) }
        }
        gate.opened.signal()
        try await closing.value
        let result = try await compaction.value
        #expect(events.all == ["onCompacted ends", "close returned"])
        // The snapshot and its marker are durable: a reopen starts from it.
        let reopened = try Self.open(storage)
        #expect(reopened.recovery.snapshot?.coveredSequence == result.coveredSequence)
        try reopened.close()
    }

    @Test func withTheOptionOffOnCompactedRunsOnTheIOThread() async throws {
        let storage = SimulatedStorage(seed: 5)
        let engine = try Self.open(storage, background: false)
        defer { try? engine.close() }
        for index in 0..<20 { _ = try await engine.append(kind: .opaque, body: [UInt8(index)]) }
        let threadName = Mutex<pthread_t?>(nil)
        _ = try await engine.compact({ _ in [] }, onCompacted: { _ in threadName.withLock { $0 = pthread_self() } })
        #expect(threadName.withLock { $0 } == (try await Self.ioThread(engine)))
    }
}

// Proves that an idle log costs no CPU, by counting instead of timing: after a lone
// caller's commits, with the default configuration, the I/O thread goes to sleep on its
// condition (`LogEngine.waitUntilParked` returns once it does) without having polled the
// queue once, and while it sits idle — another log doing real commits meanwhile, so
// time passes without a sleep — it neither wakes nor polls (its counters are unchanged).
// The opt-in spin (`idleSpinMicroseconds`) is counted by the same counter, so the first
// test fails if polling comes back by default.
import Foundation
import OnceLedgerFormat
@testable import OnceLedgerLog
import Testing

@Suite struct IdleTests {
    static let commits = Int(ProcessInfo.processInfo.environment["ONCELEDGER_IDLE_COMMITS"] ?? "") ?? 40

    /// Appends `count` records one at a time, each after the previous one is durable:
    /// the traffic the idle spin was for.
    static func appendOneByOne(_ engine: LogEngine, count: Int) async throws {
        for index in 0..<count {
            _ = try await engine.append([LogRecord(kind: .opaque, body: payload(index))])
        }
    }

    @Test func byDefaultTheIOThreadSleepsAtOnceAndStaysAsleepWhileIdle() async throws {
        let directory = temporaryDirectory("idle")
        let other = temporaryDirectory("idle-other")
        defer {
            removeDirectory(directory)
            removeDirectory(other)
        }
        let engine = try LogEngine.open(directory: directory)
        #expect(engine.configuration.idleSpinMicroseconds == 0, "no polling unless asked for")
        try await Self.appendOneByOne(engine, count: Self.commits)
        let afterTraffic = engine.waitUntilParked()
        #expect(afterTraffic.polls == 0, "the I/O thread polled the queue between commits")
        #expect(afterTraffic.sleeps >= 1)

        // Idle while another log commits (real fdatasyncs: time passes, no sleep needed).
        let busy = try LogEngine.open(directory: other)
        try await Self.appendOneByOne(busy, count: Self.commits)
        try busy.close()
        let afterIdle = engine.waitUntilParked()
        #expect(afterIdle == afterTraffic, "the idle I/O thread woke up or polled")
        #expect(engine.commitStatistics.batches == UInt64(Self.commits))
        try engine.close()
    }

    /// The opt-in spin is what the counter counts: with it, the I/O thread polls between
    /// a lone caller's commits (and still sleeps once the traffic stops).
    @Test func theOptInSpinPollsBetweenCommits() async throws {
        let directory = temporaryDirectory("idle-spin")
        defer { removeDirectory(directory) }
        var configuration = LogConfiguration()
        configuration.idleSpinMicroseconds = 200
        let engine = try LogEngine.open(directory: directory, configuration: configuration)
        try await Self.appendOneByOne(engine, count: Self.commits)
        let idle = engine.waitUntilParked()
        #expect(idle.polls > 0)
        #expect(engine.waitUntilParked() == idle)
        try engine.close()
    }
}

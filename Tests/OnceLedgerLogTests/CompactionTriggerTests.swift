// Proves `LogEngine.setCompactionTrigger`, what `LogConfiguration.compactAfterLogBytes` runs on:
// the handler fires once the records committed since the last snapshot reach the threshold
// (before the committing callers resume, so the count is exact when `append` returns), not
// again until a compaction has run; after a compaction it waits for max(threshold, the
// snapshot's size) bytes; after a failed one for as many bytes again; and a reopened engine
// counts the records its segments already hold; a threshold below the minimum is refused.
// On `SimulatedStorage`.
import OnceLedgerFormat
@testable import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization
import Testing

@Suite struct CompactionTriggerTests {
    static let directory = "/ledger"
    static let threshold: UInt64 = 64 << 10
    static let body = [UInt8](repeating: 7, count: 1000)
    static var frame: UInt64 { UInt64(RecordFrame.frameBytes(bodyBytes: body.count)) }

    final class Counter: Sendable {
        let fired = Atomic<Int>(0)
        var count: Int { fired.load(ordering: .acquiring) }
    }

    static func open(_ storage: SimulatedStorage, _ counter: Counter) throws -> LogEngine {
        let engine = try LogEngine.open(directory: directory, storage: storage,
                                        configuration: LogConfiguration(segmentBytes: 1 << 20), clock: { 1 })
        engine.setCompactionTrigger(logBytes: threshold) { counter.fired.add(1, ordering: .releasing) }
        return engine
    }

    /// Appends records until the handler has fired `target` times; returns the bytes appended.
    static func appendUntil(_ engine: LogEngine, _ counter: Counter, fired target: Int) async throws -> UInt64 {
        var bytes: UInt64 = 0
        while counter.count < target {
            _ = try await engine.append(kind: .opaque, body: body)
            bytes += frame
            guard bytes < 64 << 20 else {
                Issue.record("the trigger never fired")
                return bytes
            }
        }
        return bytes
    }

    @Test func theTriggerFiresAtItsBytesAndOnceUntilACompaction() async throws {
        let storage = SimulatedStorage(seed: 1)
        let counter = Counter()
        let engine = try Self.open(storage, counter)
        let first = try await Self.appendUntil(engine, counter, fired: 1)
        #expect(first >= Self.threshold && first < Self.threshold + Self.frame, "fired after \(first) bytes")
        for _ in 0..<100 { _ = try await engine.append(kind: .opaque, body: Self.body) }
        #expect(counter.count == 1, "fired again before any compaction")

        // A failed compaction: the next firing waits for as many bytes again.
        await #expect(throws: (any Error).self) {
            _ = try await engine.compact { _ in throw LedgerError(.invalidArgument, "no items today") }
        }
        #expect(engine.poisonError == nil)
        let afterFailure = try await Self.appendUntil(engine, counter, fired: 2)
        #expect(afterFailure >= Self.threshold && afterFailure < Self.threshold + Self.frame, "\(afterFailure)")

        // A compaction whose snapshot is larger than the threshold: the next firing waits for
        // the snapshot's size.
        let items = (0..<200).map { _ in SnapshotFile.Item(kind: .opaque, body: Self.body) }
        let result = try await engine.compact { _ in items }
        #expect(result.snapshotBytes > Self.threshold)
        let afterCompaction = try await Self.appendUntil(engine, counter, fired: 3)
        #expect(afterCompaction >= result.snapshotBytes && afterCompaction < result.snapshotBytes + Self.frame,
                "\(afterCompaction) bytes after a \(result.snapshotBytes)-byte snapshot")
        try engine.close()
    }

    @Test func aThresholdBelowTheMinimumIsRefused() throws {
        var configuration = LogConfiguration()
        configuration.compactAfterLogBytes = LogConfiguration.compactAfterLogBytesMin - 1
        #expect {
            try configuration.validate()
        } throws: { error in
            (error as? LedgerError)?.code == .invalidArgument
                && (error as? LedgerError)?.message.contains("compactAfterLogBytes") == true
        }
        configuration.compactAfterLogBytes = LogConfiguration.compactAfterLogBytesMin
        try configuration.validate()
    }

    @Test func aReopenedEngineCountsWhatItsSegmentsHold() async throws {
        let storage = SimulatedStorage(seed: 2)
        let counter = Counter()
        var engine = try Self.open(storage, counter)
        let records = Int(Self.threshold / Self.frame) + 1
        engine.setCompactionTrigger(logBytes: Self.threshold, handler: nil)
        for _ in 0..<records { _ = try await engine.append(kind: .opaque, body: Self.body) }
        #expect(counter.count == 0, "a removed trigger fired")
        try engine.close()
        engine = try Self.open(storage, counter)
        _ = try await engine.append(kind: .opaque, body: Self.body)
        #expect(counter.count == 1, "the records the segments held were not counted")
        try engine.close()
    }
}

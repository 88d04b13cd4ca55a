// Proves that a compaction writes its snapshot beside the appends (`LogEngine.startCompaction`,
// `LogConfiguration.compactsInBackground`): held at a gate before its first receipt is read, `once`
// calls, an operator's forget, memo puts, a run's end and journal steps all commit and return; once
// it finishes, the entries that did not change read from the snapshot, those that changed keep their
// newer records, the covered segments are gone, and the state equals what a reopen replays (and
// what a second compaction writes). Retention drops happen as the items are taken: a dropped key
// claimed meanwhile gets the floor's generation, as its replay does. Closing while a snapshot is
// being written stops it (the compaction fails with `closed`, nothing is lost, no temporary file).
// With the option off, an append waits for the compaction. Real files in a temporary directory.
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization
import Testing
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerStoreContract

@Suite struct BackgroundCompactionTests {
    final class Flag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    /// A compaction held at the gate before the first value it reads.
    struct Held {
        let task: Task<Void, any Error>
        let gate: StreamedCompactionTests.Gate
        let finished: Flag

        func release() async throws {
            gate.open()
            try await task.value
        }
    }

    /// Starts a compaction of `ledger` at `now` (nil: retention off) and returns once it waits
    /// at the gate (its items taken, its snapshot not written).
    static func holdCompaction(_ ledger: Ledger, now: UInt64?) async throws -> Held {
        let store = try #require(ledger.logStore)
        let (reached, reachedContinuation) = AsyncStream.makeStream(of: Void.self)
        let gate = StreamedCompactionTests.Gate()
        let first = Mutex(true)
        let finished = Flag()
        let task = Task {
            defer {
                finished.set()
                reachedContinuation.finish()
            }
            // Two items per hold of a lock: later records are applied between the ranges.
            try await store.compact(nowMilliseconds: now, relocationChunk: 2, beforeReadingReceipt: { _ in
                let isFirst = first.withLock { value in
                    defer { value = false }
                    return value
                }
                if isFirst {
                    reachedContinuation.yield()
                    gate.wait()
                }
            })
        }
        var iterator = reached.makeAsyncIterator()
        guard await iterator.next() != nil else {
            try await task.value
            throw LedgerError(.invalidArgument, "the compaction read no value")
        }
        return Held(task: task, gate: gate, finished: finished)
    }

    /// Everything a reader sees: entries with receipts, the memo values named, the journal's records.
    struct Seen: Equatable {
        var entries: [EntryInfo]
        var memo: [[UInt8]?]
        var journal: [JournalRecord]
        var newJournal: [JournalRecord]
        var runs: [RunInfo]
    }

    static let memoNames = (0..<8).map { "v\($0)" } + ["late"]

    static func seen(_ ledger: Ledger) async throws -> Seen {
        var memo: [[UInt8]?] = []
        for run in ["run-1", "run-2"] {
            let handle = try await ledger.memo(run: run, step: "s")
            for name in memoNames { memo.append(try await handle.bytes(name)) }
        }
        return Seen(entries: try await ledger.entries(), memo: memo,
                    journal: try await ledger.journalRecords(run: "agent"),
                    newJournal: try await ledger.journalRecords(run: "new-agent"), runs: try await ledger.runs())
    }

    static func segmentNumbers(_ directory: String) throws -> [UInt64] {
        try FileManager.default.contentsOfDirectory(atPath: directory).compactMap(LedgerFileNames.parseSegment).sorted()
    }

    static func location(_ ledger: Ledger, _ key: String) throws -> ValueLocation? {
        try ledger.logStore!.withState { try? $0.lookup(key) }?.onDisk?.location
    }

    @Test func appendsCommitWhileTheSnapshotIsWritten() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("background")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments)
        try await ValuesOnDiskTests.fill(ledger, count: 30)
        let memo = try await ledger.memo(run: "run-1", step: "s")
        for index in 0..<8 { try await memo.put("v\(index)", bytes: MemoCompactionTests.value(index)) }
        // A finished run whose memo a sweep removes while the snapshot is written (its slots
        // are then reused by later puts, which must keep their own values).
        let old = try await ledger.memo(run: "old", step: "s")
        for index in 0..<6 { try await old.put("o\(index)", bytes: MemoCompactionTests.value(index + 100)) }
        _ = try await ledger.finishRun("old", status: .succeeded)
        let oldJournal = try await ledger.journal(run: "old-agent")
        for index in 0..<4 { _ = try await oldJournal.step("old-\(index)") { "old-out-\(index)" } }
        _ = try await oldJournal.finish(.succeeded)
        let journal = try await ledger.journal(run: "agent")
        for index in 0..<5 { _ = try await journal.step("step-\(index)") { "out-\(index)" } }
        let segmentsBefore = try Self.segmentNumbers(directory)
        let engine = try #require((ledger.store as? FileStore)?.engine)
        let batchesBefore = engine.commitStatistics.batches

        let held = try await Self.holdCompaction(ledger, now: nil)
        do {
            // New keys, a done key forgotten and run again, memo puts in a run the snapshot
            // holds and in a new one, a run's end, journal steps: all durable while it waits.
            try await ValuesOnDiskTests.fill(ledger, count: 10, round: 1)
            try await ledger.forgetDoneEntryAllowingRerun("key-3-r0", reason: "test")
            let rerun = try await ledger.onceBytes(IdempotencyKey("key-3-r0")) { _ in [9, 9, 9] }
            #expect(rerun.wasPerformed)
            let swept = try await ledger.sweepMemo(now: LogEngine.systemMilliseconds() + 3_600_000,
                                                   retention: MemoRetention(.seconds(1)))
            #expect(swept.runs.count == 2)
            let newJournal = try await ledger.journal(run: "new-agent")
            for index in 0..<4 { _ = try await newJournal.step("new-\(index)") { "new-out-\(index)" } }
            try await memo.put("late", bytes: [1, 2, 3])
            let second = try await ledger.memo(run: "run-2", step: "s")
            for index in 0..<4 { try await second.put("v\(index)", bytes: MemoCompactionTests.value(index + 50)) }
            // A run's end (a later memo of that run id starts a new generation, so not run-2).
            try await ledger.memo(run: "run-3", step: "s").put("only", bytes: [4])
            _ = try await ledger.finishRun("run-3", status: .succeeded)
            for index in 5..<8 { _ = try await journal.step("step-\(index)") { "out-\(index)" } }
            #expect(!held.finished.isSet, "the compaction still waits at its gate")
            #expect(engine.commitStatistics.batches >= batchesBefore + 20)
        } catch {
            held.gate.open()
            _ = try? await held.task.value
            throw error
        }
        try await held.release()

        // The covered segments are gone; the untouched entries read from the snapshot.
        let segmentsAfter = try Self.segmentNumbers(directory)
        #expect(segmentsAfter.first.map { $0 > segmentsBefore.first! } == true, "\(segmentsBefore) → \(segmentsAfter)")
        #expect(try Self.location(ledger, "key-5-r0")?.isSnapshot == true)
        #expect(try Self.location(ledger, "key-3-r0")?.isSnapshot == false, "the rerun's receipt is in a later segment")
        #expect(try await ledger.entry("key-3-r0")?.receipt == [9, 9, 9])
        #expect(MemoValuesOnDiskTests.location(ledger, memo.key("v2"))?.isSnapshot == true)
        var expected = try await Self.seen(ledger)
        #expect(expected.journal.count == 8)
        #expect(expected.newJournal.count == 4)
        #expect(expected.runs.contains { $0.run.run == "run-3" && $0.status == .succeeded })
        #expect(expected.memo.compactMap { $0 }.count == 8 + 1 + 4)
        for index in 0..<30 where index != 3 {
            #expect(expected.entries.first { $0.key == "key-\(index)-r0" }?.receipt == ValuesOnDiskTests.receipt(index))
        }
        try await ValuesOnDiskTests.expectReceipts(ledger, count: 10, round: 1)

        // What a reopen replays (the snapshot, then the records after it) is the same state.
        try ledger.close()
        ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments)
        #expect(try await Self.seen(ledger) == expected)
        // And a second compaction (reading the relocated values) writes it again.
        try await ledger.compact()
        #expect(try await Self.seen(ledger) == expected)
        try ledger.close()
        ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments)
        expected.runs = try await ledger.runs()
        #expect(try await Self.seen(ledger) == expected)
        try ledger.close()
    }

    @Test func aKeyRetentionDropsIsClaimedAgainAtTheFloorWhileTheSnapshotIsWritten() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("background-retention")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clock = ManualClock()
        var ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments,
                                     clock: clock.function)
        try await ValuesOnDiskTests.fill(ledger, count: 6)
        _ = try await ledger.onceBytes(IdempotencyKey("brief"), scope: .whileInFlight) { _ in [1] }
        _ = try await ledger.onceBytes(IdempotencyKey("forgotten")) { _ in [2] }
        try await ledger.forgetDoneEntryAllowingRerun("forgotten", reason: "test")
        let before = try #require(try await ledger.entry("brief"))
        clock.advance(1000)

        let held = try await Self.holdCompaction(ledger, now: clock.now)
        let store = try #require(ledger.logStore)
        do {
            // Dropped as the items were taken, the floor past them.
            #expect(try await ledger.entry("brief") == nil)
            #expect(try await ledger.entry("forgotten") == nil)
            #expect(store.generationFloor > before.generation)
            let again = try await ledger.onceBytes(IdempotencyKey("brief"), scope: .whileInFlight) { _ in [3] }
            #expect(again.wasPerformed)
            #expect(again.entry.generation == store.generationFloor)
            #expect(again.entry.token != before.token)
            await #expect { try await ledger.forgetDoneEntryAllowingRerun("forgotten", reason: "gone already") }
                throws: { ($0 as? LedgerError)?.code == .wrongState }
        } catch {
            held.gate.open()
            _ = try? await held.task.value
            throw error
        }
        try await held.release()
        let expected = try await ledger.entries()
        #expect(expected.map(\.key).contains("brief"))
        #expect(!expected.map(\.key).contains("forgotten"))
        try ledger.close()
        ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments,
                                 clock: clock.function)
        #expect(try await ledger.entries() == expected)
        try ledger.close()
    }

    @Test func closingStopsASnapshotBeingWrittenAndLosesNothing() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("background-close")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments)
        try await ValuesOnDiskTests.fill(ledger, count: 20)
        let engine = try #require((ledger.store as? FileStore)?.engine)
        let held = try await Self.holdCompaction(ledger, now: nil)
        try await ValuesOnDiskTests.fill(ledger, count: 5, round: 1)
        let closed = ledger
        let closing = Task.detached { try closed.close() }
        // The gate opens only once close has told the snapshot's writer to stop.
        while !engine.isClosing { await Task.yield() }
        held.gate.open()
        await #expect { try await held.task.value } throws: { ($0 as? LedgerError)?.code == .closed }
        try await closing.value
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(!names.contains { $0.hasSuffix(LedgerFileNames.temporarySuffix) }, "\(names)")
        #expect(!names.contains { LedgerFileNames.parseSnapshot($0) != nil }, "\(names)")
        ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments)
        try await ValuesOnDiskTests.expectReceipts(ledger, count: 20)
        try await ValuesOnDiskTests.expectReceipts(ledger, count: 5, round: 1)
        try ledger.close()
    }

    @Test func withTheOptionOffAnAppendWaitsForTheCompaction() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("foreground")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = ValuesOnDiskTests.smallSegments
        configuration.compactsInBackground = false
        let ledger = try Ledger.open(directory: directory, configuration: configuration)
        defer { try? ledger.close() }
        try await ValuesOnDiskTests.fill(ledger, count: 10)
        let held = try await Self.holdCompaction(ledger, now: nil)
        let appended = Flag()
        let append = Task {
            _ = try await ledger.onceBytes(IdempotencyKey("after")) { _ in [7] }
            appended.set()
        }
        // The append is queued behind the compaction on the I/O thread, which waits at the gate.
        let engine = try #require((ledger.store as? FileStore)?.engine)
        while engine.queuedJobCount == 0 { await Task.yield() }
        #expect(!appended.isSet)
        try await held.release()
        try await append.value
        #expect(try await ledger.entry("after")?.receipt == [7])
    }
}

extension BackgroundCompactionTests {
    @Test func aFailedSyncBesideTheSnapshotFailsTheCompactionAndCloseStillReturns() async throws {
        let storage = SimulatedStorage(seed: 11)
        var ledger = try Ledger.open(directory: "/ledger", configuration: LedgerCrashRunner.fastConfiguration,
                                     storage: storage)
        for index in 0..<8 { _ = try await ledger.onceBytes(IdempotencyKey("k\(index)")) { _ in [UInt8(index)] } }
        let held = try await Self.holdCompaction(ledger, now: nil)
        storage.injectFault(.fileSync, errno: EIO, pathContaining: "wal-")
        await #expect { _ = try await ledger.onceBytes(IdempotencyKey("lost")) { _ in [1] } } throws: { _ in true }
        held.gate.open()
        await #expect { try await held.task.value } throws: { ($0 as? LedgerError)?.code == .poisoned }
        try? ledger.close()
        storage.clearFaults()
        ledger = try Ledger.open(directory: "/ledger", configuration: LedgerCrashRunner.fastConfiguration,
                                 storage: storage)
        for index in 0..<8 { #expect(try await ledger.entry("k\(index)")?.receipt == [UInt8(index)]) }
        try ledger.close()
    }

    static func bytes(_ index: Int) -> [UInt8] { (0..<(60 + index * 7)).map { UInt8(truncatingIfNeeded: $0 &+ index) } }

    /// `/ledger` on `storage`, with the crash runner's configuration and `clock`.
    static func reopen(_ storage: SimulatedStorage, _ clock: ManualClock) throws -> Ledger {
        try Ledger.open(directory: "/ledger", configuration: LedgerCrashRunner.fastConfiguration, storage: storage,
                        clock: clock.function)
    }

    /// A compaction whose marker is lost (here its write fails; a crash between the snapshot's
    /// rename and the marker leaves the same) leaves `snap-C` with nothing after C. After a
    /// reopen, the next compaction covers a number of its own (a checkpoint first): renamed
    /// over the old `snap-C`, its values would be read through the handle of the old file the
    /// reader still holds (found by an outside review: every entry then read as damaged).
    @Test func aCompactionAfterALostMarkerCoversANumberOfItsOwn() async throws {
        let storage = SimulatedStorage(seed: 5)
        let clock = ManualClock()
        var ledger = try Self.reopen(storage, clock)
        // Sorts first; retention lets it go at the next compaction with a `now` (so the second
        // snapshot's layout differs from the first's).
        _ = try await ledger.onceBytes(IdempotencyKey("a-brief"), scope: .whileInFlight) { _ in Self.bytes(40) }
        for index in 0..<5 { _ = try await ledger.onceBytes(IdempotencyKey("k\(index)")) { _ in Self.bytes(index) } }
        let held = try await Self.holdCompaction(ledger, now: nil)
        storage.injectFault(.write, errno: EIO, pathContaining: "wal-")
        held.gate.open()
        await #expect { try await held.task.value } throws: { _ in true }
        try? ledger.close()
        storage.clearFaults()
        let first = storage.listFiles().compactMap { LedgerFileNames.parseSnapshot(($0 as NSString).lastPathComponent) }
        #expect(first.count == 1)

        ledger = try Self.reopen(storage, clock)
        for index in 0..<5 { #expect(try await ledger.entry("k\(index)")?.receipt == Self.bytes(index)) }
        clock.advance(1000)
        try await ledger.compact()
        let second = storage.listFiles().compactMap { LedgerFileNames.parseSnapshot(($0 as NSString).lastPathComponent) }
        #expect(second.count == 1 && second != first, "snapshots \(first) then \(second)")
        #expect(try await ledger.entry("a-brief") == nil)
        for index in 0..<5 { #expect(try await ledger.entry("k\(index)")?.receipt == Self.bytes(index), "k\(index)") }
        try await ledger.compact()
        for index in 0..<5 { #expect(try await ledger.entry("k\(index)")?.receipt == Self.bytes(index), "k\(index)") }
        try ledger.close()
        ledger = try Self.reopen(storage, clock)
        for index in 0..<5 { #expect(try await ledger.entry("k\(index)")?.receipt == Self.bytes(index)) }
        try ledger.close()
    }

    /// A compaction refused for a damaged receipt has already let go, in memory, of the entries
    /// retention drops, and kept the raised floor (`Spec/FORMAT.md` §8, step 2); the log still
    /// holds them, and a reopen reads them again. A claim of such a key meanwhile starts at the
    /// floor, and replays the same on the log without the drop: no token is given twice.
    @Test func aRefusedCompactionLetsGoOfRetiredEntriesInMemoryOnlyAndGivesNoTokenTwice() async throws {
        let storage = SimulatedStorage(seed: 9)
        let clock = ManualClock()
        var ledger = try Self.reopen(storage, clock)
        let tokens = Mutex<[String]>([])
        _ = try await ledger.onceBytes(IdempotencyKey("brief"), scope: .whileInFlight) { context in
            tokens.withLock { $0.append(context.token) }
            return [1, 2, 3]
        }
        _ = try await ledger.onceBytes(IdempotencyKey("damaged")) { _ in Self.bytes(3) }
        let location = try #require(try Self.location(ledger, "damaged"))
        #expect(!location.isSnapshot)
        // Damage the receipt's bytes in its segment record; put back before the reopen.
        let path = "/ledger/" + LedgerFileNames.segment(location.file)
        let original = Array(try #require(storage.fileBytes(path))[Int(location.offset + 40)..<Int(location.offset + 44)])
        storage.overwriteDurably(path, at: location.offset + 40, with: [0xEE, 0xEE, 0xEE, 0xEE])
        let before = try #require(try await ledger.entry("brief"))
        clock.advance(1000)
        await #expect { try await ledger.compact() } throws: { ($0 as? LedgerError)?.code == .corruptRecord }
        let store = try #require(ledger.logStore)
        #expect(try await ledger.entry("brief") == nil)
        #expect(store.generationFloor == before.generation + 1)
        // Claimed again: at the floor, a new token.
        let again = try await ledger.onceBytes(IdempotencyKey("brief"), scope: .whileInFlight) { context in
            tokens.withLock { $0.append(context.token) }
            return [4]
        }
        #expect(again.wasPerformed && again.entry.generation == before.generation + 1)
        try ledger.close()
        storage.overwriteDurably(path, at: location.offset + 40, with: original)
        ledger = try Self.reopen(storage, clock)
        // The log without the drop replays to the same entry; its next claim has a token of its own.
        let replayed = try #require(try await ledger.entry("brief"))
        #expect(replayed.generation == again.entry.generation && replayed.receipt == [4])
        _ = try await ledger.onceBytes(IdempotencyKey("brief"), scope: .whileInFlight) { context in
            tokens.withLock { $0.append(context.token) }
            return [5]
        }
        let all = tokens.withLock { $0 }
        #expect(all.count == 3 && Set(all).count == 3, "\(all)")
        #expect(try await ledger.entry("damaged")?.receipt == Self.bytes(3))
        try ledger.close()
    }
}

/// Every crash point of a workload whose appends commit while a compaction's snapshot is
/// written (held at its gate, so the order of operations repeats): an acknowledged call is never
/// lost, and its effect never runs under a second token.
@Suite struct BackgroundCompactionCrashTests {
    final class World: Sendable {
        let acknowledged = Mutex<[String: [UInt8]]>([:])
        let tokens = Mutex<[String: Set<String>]>([:])
    }

    static let keys = 12

    static func receipt(_ index: Int) -> [UInt8] { (0..<(40 + index * 50)).map { UInt8(truncatingIfNeeded: $0 &+ index) } }

    static func call(_ ledger: Ledger, _ world: World, _ index: Int) async throws {
        let key = "k\(index)"
        let outcome = try await ledger.onceBytes(IdempotencyKey(key), whenPending: .retry) { context in
            world.tokens.withLock { $0[key, default: []].insert(context.token) }
            return Self.receipt(index)
        }
        world.acknowledged.withLock { $0[key] = outcome.receipt }
    }

    static func workload(_ ledger: Ledger, _ world: World, _ epoch: LedgerCrashRunner.Epoch) async throws {
        for index in 0..<6 { try await call(ledger, world, index) }
        let held: BackgroundCompactionTests.Held
        do {
            held = try await BackgroundCompactionTests.holdCompaction(ledger, now: nil)
        } catch {
            if epoch.processIsDead { throw error }
            throw CrashInvariantViolation("the compaction failed with no crash: \(error)")
        }
        do {
            for index in 6..<10 { try await call(ledger, world, index) }
        } catch {
            held.gate.open()
            _ = try? await held.task.value
            throw error
        }
        held.gate.open()
        do { try await held.task.value } catch {
            if !epoch.processIsDead { throw CrashInvariantViolation("the compaction failed with no crash: \(error)") }
            throw error
        }
        for index in 10..<keys { try await call(ledger, world, index) }
    }

    static func check(_ ledger: Ledger, _ world: World, _ epoch: LedgerCrashRunner.Epoch) async throws {
        var problems: [String] = []
        for (key, receipt) in world.acknowledged.withLock({ $0 }) {
            let entry = try await ledger.entry(key)
            if entry?.status != .done || entry?.receipt != receipt {
                problems.append("\(key) was acknowledged but reads \(entry.map { "\($0.status)" } ?? "nothing")")
            }
        }
        for (key, tokens) in world.tokens.withLock({ $0 }) where tokens.count > 1 {
            problems.append("\(key)'s effect ran under \(tokens.count) tokens")
        }
        if epoch.isEnd {
            let done = try await ledger.entries(status: .done).count
            if done != keys { problems.append("\(done) of \(keys) keys done at the end") }
        }
        if !problems.isEmpty { throw CrashInvariantViolation(problems: problems) }
    }

    @Test func noCrashPointLosesAnAppendMadeBesideASnapshot() async {
        let report = await LedgerCrashRunner().run(
            world: { World() },
            workload: { ledger, world, epoch in try await Self.workload(ledger, world, epoch) },
            check: { ledger, world, epoch in try await Self.check(ledger, world, epoch) })
        #expect(report.passed, "\(report)")
        #expect(report.crashedAtPoint > 0)
        print("BackgroundCompactionCrashTests: \(report)")
    }
}

extension BackgroundCompactionTests {
    /// Workers call `once` (new keys, keys run again after a forget, `.whileInFlight` keys that
    /// retention drops), put memo values (over old names too), record journal steps, end runs
    /// and sweep them, while another task compacts again and again with retention on: real
    /// interleavings, not a gate. Every answer a worker got is what the ledger says at the end,
    /// and a reopen, and a compaction after it, say the same. Rounds from
    /// ONCELEDGER_BACKGROUND_ROUNDS (small default).
    @Test func workersAndRepeatedCompactionsAgreeWithAReopen() async throws {
        let rounds = ProcessInfo.processInfo.environment["ONCELEDGER_BACKGROUND_ROUNDS"].flatMap(Int.init) ?? 30
        let directory = ValuesOnDiskTests.temporaryDirectory("background-stress")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clock = ManualClock()
        var ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments,
                                     clock: clock.function)
        let opened = ledger
        let answers = Answers()
        let compactions = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var random = SeededRandom(seed: UInt64(worker + 1))
                    for round in 0..<rounds {
                        let key = "w\(worker)-\(round)"
                        let receipt = ValuesOnDiskTests.receipt(worker * 1000 + round)
                        _ = try await opened.onceBytes(IdempotencyKey(key)) { _ in receipt }
                        answers.entries.withLock { $0[key] = receipt }
                        // A short-lived key: done, then dropped by a compaction's retention.
                        _ = try await opened.onceBytes(IdempotencyKey("brief-\(worker)-\(round % 3)"),
                                                       scope: .whileInFlight) { _ in [UInt8(truncatingIfNeeded: round)] }
                        if round % 4 == 3 {
                            // Run an earlier key of this worker again, with a new receipt.
                            let again = "w\(worker)-\(Int(random.next() % UInt64(round)))"
                            try await opened.forgetDoneEntryAllowingRerun(again, reason: "stress")
                            let fresh: [UInt8] = [UInt8(worker), UInt8(truncatingIfNeeded: round), 1]
                            _ = try await opened.onceBytes(IdempotencyKey(again)) { _ in fresh }
                            answers.entries.withLock { $0[again] = fresh }
                        }
                        let memo = try await opened.memo(run: "m\(worker)", step: "s")
                        let name = "n\(random.next() % 8)"
                        let value = MemoCompactionTests.value(worker * 100 + round)
                        try await memo.put(name, bytes: value)
                        answers.memo.withLock { $0["m\(worker)/\(name)"] = value }
                        let journal = try await opened.journal(run: "j\(worker)-\(round / 5)")
                        _ = try await journal.step("step") { round }
                        if round % 5 == 4 {
                            _ = try await journal.finish(.succeeded)
                            _ = try await opened.sweepMemo(now: clock.now + 10_000,
                                                           retention: MemoRetention(.seconds(1)))
                        }
                    }
                    return 0
                }
            }
            group.addTask {
                var count = 0
                let store = try #require(opened.logStore)
                for index in 0..<max(4, rounds / 3) {
                    clock.advance(1)
                    // Every other one moves its values a few at a time.
                    try await store.compact(nowMilliseconds: clock.now,
                                            relocationChunk: index % 2 == 0 ? 3 : LogStore.relocationChunk,
                                            beforeReadingReceipt: nil)
                    count += 1
                }
                return count
            }
            var total = 0
            for try await part in group { total += part }
            return total
        }
        #expect(compactions >= 4)

        func check(_ ledger: Ledger) async throws -> BackgroundCompactionTests.StressSeen {
            for (key, receipt) in answers.entries.withLock({ $0 }) {
                #expect(try await ledger.entry(key)?.receipt == receipt, "\(key)")
            }
            for (key, value) in answers.memo.withLock({ $0 }) {
                let parts = key.split(separator: "/").map(String.init)
                let memo = try await ledger.memo(run: parts[0], step: "s")
                #expect(try await memo.bytes(parts[1]) == value, "\(key)")
            }
            return StressSeen(entries: try await ledger.entries(), runs: try await ledger.runs())
        }
        let before = try await check(ledger)
        try ledger.close()
        ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments,
                                 clock: clock.function)
        #expect(try await check(ledger) == before)
        // A compaction now lets the `.whileInFlight` keys go (retention) and keeps the rest.
        try await ledger.compact()
        var compacted = before
        compacted.entries.removeAll { $0.key.hasPrefix("brief-") }
        #expect(try await check(ledger) == compacted)
        try ledger.close()
        ledger = try Ledger.open(directory: directory, configuration: ValuesOnDiskTests.smallSegments,
                                 clock: clock.function)
        #expect(try await check(ledger) == compacted)
        try ledger.close()
    }

    final class Answers: Sendable {
        let entries = Mutex<[String: [UInt8]]>([:])
        let memo = Mutex<[String: [UInt8]]>([:])
    }

    struct StressSeen: Equatable {
        var entries: [EntryInfo]
        var runs: [RunInfo]
    }
}

// Proves that an open's load on two threads (`LoadPipeline`: the scanning thread
// decodes each record and copies it into a batch, a second thread applies full batches)
// builds the very table that applying each record in turn builds, whatever the batch size;
// that a caller reading the table mid-load (a snapshot's items) sees every record queued
// before it; that a record that does not decode throws on the scanning thread before
// anything of it is applied, with the thread stopped; and that a file ledger of memo values,
// journals, ended and swept runs and `once` entries (done, forgotten, run again, corrected),
// whose records the same thread applies, opens alike with any batch size.
// How: a seeded workload of encoded memo records (puts and overwrites in several runs and
// generations, journal positions with and without gaps, run ends, sweeps) applied both ways
// and compared through every reader of the table; then real ledgers opened with batches of
// 1, 3 and the default.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing

@Suite struct LoadPipelineTests {
    struct Record {
        var kind: RecordKind
        var body: [UInt8]
        var location: ValueLocation?
    }

    /// A seeded workload of memo records and the keys it wrote.
    static func workload(seed: UInt64, count: Int) -> (records: [Record], keys: Set<MemoKey>) {
        var random = MemoTableTests.Random(state: seed)
        let runs = (0..<12).map { MemoRun(namespace: $0 % 3 == 0 ? "ns" : "", run: "run-\($0)") }
        var current = Array(1...UInt64(runs.count))
        var nextGeneration = UInt64(runs.count) + 1
        var nextPosition = [UInt64](repeating: 0, count: runs.count)
        var records: [Record] = []
        var keys: Set<MemoKey> = []
        var offset: UInt64 = 64
        func add(_ body: RecordBody, located: Bool) {
            let encoded = body.encode()
            let location = located ? ValueLocation.segment(1, offset: offset, bodyBytes: UInt32(encoded.count)) : nil
            offset += UInt64(RecordFrame.frameBytes(bodyBytes: encoded.count))
            records.append(Record(kind: body.kind, body: encoded, location: location))
        }
        for step in 1...count {
            let index = random.next(runs.count)
            let run = runs[index]
            let generation = current[index]
            switch random.next(100) {
            case 0..<45:
                // A journal position: usually the next one, sometimes one further (a gap makes
                // it, and what follows, a generic entry) or an earlier one (replaced).
                let choice = random.next(20)
                let position = choice == 0 ? nextPosition[index] + 1
                    : choice == 1 && nextPosition[index] > 0 ? UInt64(random.next(Int(nextPosition[index]))) : nextPosition[index]
                if position == nextPosition[index] { nextPosition[index] += 1 }
                let name = String(decoding: JournalPositions.name(position), as: UTF8.self)
                keys.insert(MemoKey(run: run, generation: generation, step: "", name: name))
                add(.memoEntry(.init(namespace: run.namespace, run: run.run, generation: generation, step: "", name: name,
                                     inputDigest: random.next(2) == 0 ? RecordBody.noInputDigest
                                         : (0..<32).map { _ in UInt8(random.next(256)) },
                                     timeMilliseconds: UInt64(step), value: Array("\"out-\(step)\"".utf8))),
                    located: true)
            case 0..<85:
                // A put in a named step: new names and overwrites, in memory (no location).
                let name = "name-\(random.next(40))"
                keys.insert(MemoKey(run: run, generation: generation, step: "step-\(step % 3)", name: name))
                add(.memoEntry(.init(namespace: run.namespace, run: run.run, generation: generation,
                                     step: "step-\(step % 3)", name: name, inputDigest: RecordBody.noInputDigest,
                                     timeMilliseconds: UInt64(step), value: (0..<random.next(30)).map { _ in UInt8(random.next(256)) })),
                    located: false)
            case 0..<99:
                add(.runEnd(.init(namespace: run.namespace, run: run.run, generation: generation,
                                  status: random.next(2) == 0 ? .succeeded : .failed, timeMilliseconds: UInt64(step))),
                    located: false)
            default:
                add(.memoSweep(.init(namespace: run.namespace, run: run.run, generation: generation,
                                     timeMilliseconds: UInt64(step))), located: false)
                current[index] = nextGeneration
                nextGeneration += 1
                nextPosition[index] = 0
            }
        }
        return (records, keys)
    }

    /// Applies `record` to `direct` and queues it on `pipeline`.
    static func feed(_ record: Record, _ direct: inout MemoTable, _ pipeline: LoadPipeline) throws {
        try record.body.withUnsafeBytes {
            try direct.apply(kind: record.kind, body: $0, location: record.location)
            try pipeline.add(kind: record.kind, body: $0, location: record.location)
        }
    }

    /// Expects `a` and `b` to answer every reader alike for `keys`.
    static func expectSame(_ a: borrowing MemoTable, _ b: borrowing MemoTable, keys: Set<MemoKey>,
                           _ comment: Comment) throws {
        #expect(a.count == b.count, comment)
        #expect(a.denseJournalPositions == b.denseJournalPositions, comment)
        #expect(a.highestGeneration == b.highestGeneration, comment)
        #expect(a.infos(RunQuery()) == b.infos(RunQuery()), comment)
        for key in keys {
            let (slotA, slotB) = (a.slot(key), b.slot(key))
            #expect(slotA?.inputDigest == slotB?.inputDigest && slotA?.timeMilliseconds == slotB?.timeMilliseconds,
                    "\(key): \(comment)")
            // Values in memory read back; a journal position's value is on disk (no reader here).
            if key.step != "", slotA != nil {
                #expect(try a.read(key)?.finish(key) == b.read(key)?.finish(key), "\(key): \(comment)")
            }
        }
    }

    @Test(arguments: [1, 2, 7, 500, LoadPipeline.defaultBatchRecords])
    func aPipelinedLoadBuildsTheTableAOneThreadLoadBuilds(batch: Int) throws {
        let (records, keys) = Self.workload(seed: 17, count: 3_000)
        var direct = MemoTable()
        for record in records {
            try record.body.withUnsafeBytes { try direct.apply(kind: record.kind, body: $0, location: record.location) }
        }
        #expect(direct.denseJournalPositions > 100 && direct.count > 500,
                "the workload fills journals and steps: \(direct.denseJournalPositions) positions of \(direct.count)")

        let pipeline = LoadPipeline(table: MemoTable(), batchRecords: batch)
        for record in records {
            try record.body.withUnsafeBytes { try pipeline.add(kind: record.kind, body: $0, location: record.location) }
        }
        #expect(pipeline.startedThread == (batch < records.count), "batch \(batch)")
        pipeline.finish()
        let loaded = pipeline.takeTable()
        try Self.expectSame(direct, loaded, keys: keys, "batch \(batch)")
    }

    @Test func theTableReadMidLoadHoldsEveryRecordQueuedBeforeTheRead() throws {
        let (records, keys) = Self.workload(seed: 5, count: 1_000)
        var direct = MemoTable()
        let pipeline = LoadPipeline(table: MemoTable(), batchRecords: 3)
        for (index, record) in records.enumerated() {
            try Self.feed(record, &direct, pipeline)
            // Now and then, as a snapshot item would: the table as of every record so far.
            if index % 97 == 0 {
                pipeline.withTable { table in
                    #expect(table.count == direct.count && table.infos(RunQuery()) == direct.infos(RunQuery()),
                            "after record \(index)")
                }
            }
        }
        #expect(pipeline.startedThread)
        pipeline.finish()
        let loaded = pipeline.takeTable()
        try Self.expectSame(direct, loaded, keys: keys, "after the last record")
    }

    @Test func aRecordThatDoesNotDecodeThrowsBeforeAnythingOfItIsApplied() throws {
        let (records, _) = Self.workload(seed: 9, count: 200)
        var direct = MemoTable()
        let pipeline = LoadPipeline(table: MemoTable(), batchRecords: 4)
        for record in records { try Self.feed(record, &direct, pipeline) }
        // A memo entry and an entry's intent, each cut short (checksummed on disk, so only a
        // writer's bug makes one).
        var cut = records.first { $0.kind == .memoEntry }!
        cut.body.removeLast()
        var intent = RecordBody.intent(.init(key: "k", fingerprint: [UInt8](repeating: 1, count: 32), attempt: 1,
                                             generation: 0, timeMilliseconds: 1)).encode()
        intent.removeLast()
        for (kind, body) in [(cut.kind, cut.body), (RecordKind.intent, intent)] {
            #expect {
                try body.withUnsafeBytes { try pipeline.add(kind: kind, body: $0, location: nil) }
            } throws: { error in
                (error as? LedgerError)?.code == .malformedBody
            }
        }
        #expect(pipeline.startedThread)
        // `finish` stops the thread (an open that threw calls it too) and returns the table of
        // the records before.
        pipeline.finish()
        let loaded = pipeline.takeTable()
        #expect(loaded.count == direct.count && loaded.infos(RunQuery()) == direct.infos(RunQuery()))
    }

    @Test func aFileLedgerOpensAlikeWithAnyBatchSize() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-memo-load-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func open(batch: Int?) throws -> Ledger {
            Ledger(store: try LogStore(log: FileRecordLog(directory: directory, configuration: LogConfiguration()),
                                       loadBatchRecords: batch))
        }
        let ledger = try open(batch: nil)
        // Journals, memo values, ended runs, a reused run id, `once` entries; half of it in a
        // snapshot, half in the segments after it.
        for half in 0..<2 {
            for run in 0..<8 {
                let journal = try await ledger.journal(run: "j\(half)-\(run)")
                for step in 0..<(20 + run) { _ = try await journal.step("s\(step % 3)") { "out-\(half)-\(run)-\(step)" } }
                if run % 2 == 0 { _ = try await journal.finish(.succeeded) }
                let memo = try await ledger.memo(run: "m\(run)", step: "step-\(half)")
                for name in 0..<10 { try await memo.put("n\(name)", "v\(half)-\(run)-\(name)") }
                if run % 3 == 0 { _ = try await ledger.finishRun("m\(run)", status: .failed) }
                _ = try await ledger.once(IdempotencyKey("k\(half)-\(run)"), as: String.self) { _ in "r" }
            }
            // Entries that changed after they were done: forgotten (and run again), corrected.
            try await ledger.forgetDoneEntryAllowingRerun("k\(half)-1", reason: "test")
            if half == 1 {
                try await ledger.forgetDoneEntryAllowingRerun("k0-3", reason: "test")
                _ = try await ledger.once(IdempotencyKey("k0-3"), as: String.self) { _ in "again" }
            }
            try await ledger.correctReceipt(IdempotencyKey("k\(half)-2"), to: "corrected", reason: "test")
            if half == 0 { try await ledger.compact() }
        }
        try ledger.close()

        struct Observed: Equatable {
            var runs: [RunInfo]
            var journals: [[JournalRecord]]
            var values: [String?]
            var entries: [EntryInfo]
        }
        func observe(batch: Int?) async throws -> Observed {
            let ledger = try open(batch: batch)
            defer { try? ledger.close() }
            var journals: [[JournalRecord]] = []
            for half in 0..<2 {
                for run in 0..<8 { journals.append(try await ledger.journalRecords(run: "j\(half)-\(run)")) }
            }
            var values: [String?] = []
            for run in 0..<8 {
                // (A run that ended reads nothing: its memo is a new generation's. Nothing is written.)
                let memo = try await ledger.memo(run: "m\(run)", step: "step-1")
                for name in 0..<10 { values.append(try await memo.get("n\(name)", as: String.self)) }
            }
            return Observed(runs: try await ledger.runs(), journals: journals, values: values,
                            entries: try await ledger.entries().sorted { $0.key < $1.key })
        }
        let oneThread = try await observe(batch: Int.max)
        #expect(oneThread.journals.allSatisfy { $0.count >= 20 })
        // k0-1, forgotten before the compaction, is gone with it; k1-1, forgotten after, is absent.
        #expect(oneThread.entries.count == 15)
        #expect(oneThread.entries.filter { $0.status == .done }.count == 14)
        let again = try #require(oneThread.entries.first { $0.key == "k0-3" })
        let once = try #require(oneThread.entries.first { $0.key == "k0-4" })
        #expect(again.status == .done && again.generation == once.generation + 1, "k0-3 was forgotten and ran again")
        for batch in [1, 3, nil] as [Int?] {
            #expect(try await observe(batch: batch) == oneThread, "batch \(String(describing: batch))")
        }
    }

    @Test func anOpenThatFailsMidLoadStopsThePipelineAndThrowsTheScansError() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-memo-load-fail-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func open(batch: Int?) throws -> Ledger {
            Ledger(store: try LogStore(log: FileRecordLog(directory: directory, configuration: LogConfiguration()),
                                       loadBatchRecords: batch))
        }
        let ledger = try open(batch: nil)
        let journal = try await ledger.journal(run: "r")
        for step in 0..<60 { _ = try await journal.step("s") { "out-\(step)" } }
        try ledger.close()
        // A byte of the tenth record or so flipped: later records say it was durable.
        let segment = directory + "/" + (try FileManager.default.contentsOfDirectory(atPath: directory)
            .first { $0.hasSuffix(".seg") })!
        let handle = try #require(FileHandle(forUpdatingAtPath: segment))
        try handle.seek(toOffset: 64 + 1_200)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: 64 + 1_200)
        try handle.write(contentsOf: [byte ^ 0x40])
        try handle.close()
        for batch in [1, nil] as [Int?] {
            // Records before the damage went to the pipeline's thread (batch 1); the open still
            // throws the scan's error, and returns (the thread stopped).
            #expect {
                _ = try open(batch: batch)
            } throws: { error in
                (error as? LedgerError)?.code == .corruptRecord
            }
        }
    }

    @Test func largeValuesAreHandedOverByBytesNotHeldFourThousandAtATime() throws {
        // Twelve 64 KiB values: far under a batch's record count, over its bytes after two.
        var direct = MemoTable()
        let pipeline = LoadPipeline(table: MemoTable(), batchBytes: 128 << 10)
        var keys: Set<MemoKey> = []
        for index in 0..<12 {
            let body = RecordBody.memoEntry(.init(
                namespace: "", run: "r", generation: 1, step: "s", name: "v\(index)",
                inputDigest: RecordBody.noInputDigest, timeMilliseconds: 1,
                value: [UInt8](repeating: UInt8(index), count: 64 << 10))).encode()
            keys.insert(MemoKey(run: MemoRun(run: "r"), generation: 1, step: "s", name: "v\(index)"))
            try Self.feed(Record(kind: .memoEntry, body: body, location: nil), &direct, pipeline)
        }
        #expect(pipeline.startedThread, "the bytes, not the record count, handed batches over")
        pipeline.finish()
        let loaded = pipeline.takeTable()
        try Self.expectSame(direct, loaded, keys: keys, "64 KiB values")
    }
}

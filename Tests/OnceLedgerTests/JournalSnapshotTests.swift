// Proves that journal positions survive compaction in their compact form (`MemoTable`'s
// per-generation position arrays, the version 4 snapshot's journal-positions hints, FORMAT §5.21,
// §6.7): a compacted ledger of journaled runs writes a version 4 snapshot with one hint per run
// generation, reopens from it with every position held densely and every position's bytes,
// digest and time intact; replay, truncation and sweep work unchanged on it; memo entries of the
// journal step that do not fit the dense form (a hole, a name that is not ten digits, one that
// sorts between two positions) take the generic path and keep their bytes through compaction and
// reopen; and a damaged journal-positions hint is a typed error (the snapshot refused at open,
// or the position's read `corrupt-record`), never a wrong value. Real files in a temporary
// directory; a manual clock; nothing sleeps.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerStoreContract
import Testing

@Suite struct JournalSnapshotTests {
    private struct Prompt: Codable, Sendable {
        var text: String
    }

    /// Runs `steps` journaled steps of run `run` (a step with an input, one without, and
    /// the journal's helpers), returning the outputs; `bodies` counts the bodies that ran.
    private static func workflow(_ journal: Journal, steps: Int, bodies: Counter) async throws -> [String] {
        var outputs: [String] = []
        for index in 0..<steps {
            switch index % 3 {
            case 0:
                outputs.append(try await journal.step("llm.call", input: Prompt(text: "prompt \(index)")) {
                    bodies.increment()
                    return String(repeating: "output \(index) ", count: 1 + index % 5)
                })
            case 1:
                outputs.append(String(try await journal.random()))
            default:
                outputs.append(try await journal.step("tool") {
                    bodies.increment()
                    return "tool \(index)"
                })
            }
        }
        return outputs
    }

    private static func snapshotPath(_ directory: String) throws -> String {
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".snap") }.sorted().last)
        return directory + "/" + name
    }

    /// The snapshot's version and its hints' kinds, grouped as the open path reads them.
    private static func hintKinds(_ path: String) throws -> (version: UInt16, kinds: [RecordKind]) {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let values = Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        guard case .snapshot(let snapshot) = SnapshotFile.decodeHints(
            header: Array(bytes[0..<64]), hints: Array(bytes[(64 + values)..<(bytes.count - 16)]),
            trailer: Array(bytes[(bytes.count - 16)...]), fileBytes: UInt64(bytes.count))
        else {
            Issue.record("the snapshot's hints do not decode")
            return (0, [])
        }
        var kinds: [RecordKind] = []
        snapshot.forEachHint(groupingJournalPositions: true) { kind, _, _ in kinds.append(kind) }
        return (snapshot.formatVersion, kinds)
    }

    private static func densePositions(_ ledger: Ledger) -> Int {
        ledger.logStore?.memo.withLock { $0.denseJournalPositions } ?? -1
    }

    @Test func aCompactedJournalReopensFromPositionHintsWithEveryPositionIntact() async throws {
        let harness = Harness(.file)
        var ledger = try harness.open()
        let bodies = Counter()
        var outputs: [String: [String]] = [:]
        var records: [String: [JournalRecord]] = [:]
        for run in 0..<6 {
            let journal = try await ledger.journal(run: "run-\(run)", namespace: run % 2 == 0 ? "" : "ns")
            outputs["run-\(run)"] = try await Self.workflow(journal, steps: 4 + run * 3, bodies: bodies)
            harness.clock.advance(1)
            if run < 2 { try await journal.finish(.succeeded) }
        }
        for run in 0..<6 {
            records["run-\(run)"] = try await ledger.journalRecords(run: "run-\(run)", namespace: run % 2 == 0 ? "" : "ns")
        }
        let positions = records.values.map(\.count).reduce(0, +)
        #expect(Self.densePositions(ledger) == positions, "positions recorded in order are held densely")
        let bodiesBefore = bodies.count

        try await ledger.compact()
        let (version, kinds) = try Self.hintKinds(try Self.snapshotPath(harness.directory))
        #expect(version == 4, "a snapshot holding journal positions is version 4")
        #expect(kinds.filter { $0 == .journalPositions }.count == 6, "one hint per run generation: \(kinds)")
        #expect(!kinds.contains(.memoEntry), "no position stands alone: \(kinds)")

        ledger = try harness.reopen(ledger)
        #expect(Self.densePositions(ledger) == positions, "reopened from the hints, every position held densely")
        for run in 0..<6 {
            let reread = try await ledger.journalRecords(run: "run-\(run)", namespace: run % 2 == 0 ? "" : "ns")
            #expect(reread == records["run-\(run)"], "run-\(run): every position's entry, digest and time intact")
        }
        // Replay of the running ones returns every output without running a body.
        for run in 2..<6 {
            let journal = try await ledger.journal(run: "run-\(run)", namespace: run % 2 == 0 ? "" : "ns")
            #expect(try await Self.workflow(journal, steps: 4 + run * 3, bodies: bodies) == outputs["run-\(run)"])
        }
        #expect(bodies.count == bodiesBefore, "no body ran again")

        // Truncation on the reopened compacted ledger: positions 2… of run-5 are freed and
        // recorded anew by changed code.
        let truncation = try await ledger.truncateJournal(run: "run-5", namespace: "ns", from: 2, actor: "ops", reason: "changed")
        #expect(truncation.positions.first == 2)
        let changed = try await ledger.journal(run: "run-5", namespace: "ns")
        _ = try await changed.step("llm.call", input: Prompt(text: "prompt 0")) { "never" }
        _ = try await changed.random()
        #expect(try await changed.step("new step") { "new" } == "new")
        // A sweep of the finished ones, then a second compaction and reopen.
        harness.clock.advance(10_000)
        let swept = try await ledger.sweepMemo(retention: MemoRetention(.seconds(1)))
        #expect(swept.runs.count == 2)
        #expect(try await ledger.journalRecords(run: "run-0").isEmpty)
        try await ledger.compact()
        ledger = try harness.reopen(ledger)
        #expect(try await ledger.journalRecords(run: "run-1", namespace: "ns").isEmpty)
        #expect(try await ledger.journalRecords(run: "run-4") == records["run-4"])
        let rerecorded = try await ledger.journalRecords(run: "run-5", namespace: "ns")
        // Positions 2 … 19 were freed (19: the one after the last); 2 was recorded anew.
        #expect(rerecorded.count == records["run-5", default: []].count + 1)
        #expect(rerecorded.count > 3 && rerecorded[2].entry.nameText == "new step" && rerecorded[3].entry.kind == .truncated)
        #expect(Array(rerecorded[0..<2]) == Array(records["run-5", default: []][0..<2]))
        try ledger.close()
    }

    @Test func journalStepEntriesThatDoNotFitTakeTheGenericPathAndKeepTheirBytes() async throws {
        let harness = Harness(.file)
        var ledger = try harness.open()
        let store = try #require(ledger.logStore)
        let run = MemoRun(namespace: "ns", run: "odd")
        let generation = try await store.memoGeneration(of: run)
        // Positions 0 and 1 in order, then a hole (3), a name of eleven digits (sorts between
        // positions 0 and 1), a name that is not digits, and position 0 again (a replacement).
        let names = ["0000000000", "0000000001", "0000000003", "00000000000", "abc", "0000000000"]
        var expected: [String: [UInt8]] = [:]
        for (index, name) in names.enumerated() {
            let value = Array("value \(index) of \(name)".utf8)
            try await store.memoPut(MemoPutRequest(
                key: MemoKey(run: run, generation: generation, step: "", name: name), value: value,
                inputDigest: index % 2 == 0 ? SHA256.hash(value) : nil, timeMilliseconds: UInt64(100 + index)))
            expected[name] = value
        }
        func check(_ ledger: Ledger, _ moment: String) async throws {
            let store = try #require(ledger.logStore)
            for (name, value) in expected {
                let read = try await store.memoGet(MemoKey(run: run, generation: generation, step: "", name: name))
                #expect(read?.bytes == value, "\(moment): \(name)")
            }
            #expect(try await store.memoGet(MemoKey(run: run, generation: generation, step: "", name: "0000000002")) == nil)
            let many = try await store.memoGetMany(["0000000000", "0000000001", "0000000002", "0000000003"].map {
                MemoKey(run: run, generation: generation, step: "", name: $0)
            })
            #expect(many.map { $0?.bytes } == [expected["0000000000"], expected["0000000001"], nil, expected["0000000003"]],
                    "\(moment)")
            #expect(try await ledger.runs(run: "odd").first?.entryCount == 5, "\(moment)")
        }
        #expect(Self.densePositions(ledger) == 2, "0 and 1 are dense; the rest generic")
        try await check(ledger, "live")
        try await ledger.compact()
        try await check(ledger, "compacted")
        let (_, kinds) = try Self.hintKinds(try Self.snapshotPath(harness.directory))
        #expect(kinds.contains(.journalPositions) && kinds.contains(.memoEntry), "\(kinds)")
        ledger = try harness.reopen(ledger)
        try await check(ledger, "reopened")
        // Compacted again from the reopened state, and reopened: the same.
        try await ledger.compact()
        ledger = try harness.reopen(ledger)
        try await check(ledger, "compacted twice")
        try ledger.close()
    }

    /// The offset of the first journal-positions hint's first position (its value length
    /// field) in the snapshot at `path`, and the hint section's bounds.
    private static func firstPositionField(_ bytes: [UInt8]) throws -> (field: Int, hints: Range<Int>) {
        let values = Int(ByteReader.getInteger(bytes, at: 48, as: UInt64.self))
        var offset = 64 + values
        let end = bytes.count - 16
        while offset < end {
            let bodyBytes = Int(ByteReader.getInteger(bytes, at: offset, as: UInt32.self))
            let kind = ByteReader.getInteger(bytes, at: offset + 4, as: UInt16.self)
            let body = offset + 24
            if kind == RecordKind.journalPositions.rawValue {
                let namespace = Int(ByteReader.getInteger(bytes, at: body, as: UInt16.self))
                let run = Int(ByteReader.getInteger(bytes, at: body + 2 + namespace, as: UInt16.self))
                return (body + 2 + namespace + 2 + run + 8 + 8 + 4, (64 + values)..<end)
            }
            offset = body + (bodyBytes + 7) / 8 * 8
        }
        throw TestFailure("no journal-positions hint")
    }

    /// Rewrites `bytes`' hints checksum and header checksum, as a damage that passes them.
    private static func refreshChecksums(_ bytes: inout [UInt8], hints: Range<Int>) {
        func store(_ value: UInt32, at offset: Int) {
            for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        }
        store(CRC32.checksum(Array(bytes[hints])), at: 44)
        store(CRC32.checksum(Array(bytes[0..<60])), at: 60)
    }

    @Test func aDamagedPositionHintIsATypedErrorNeverAWrongValue() async throws {
        let harness = Harness(.file)
        var ledger = try harness.open()
        let journal = try await ledger.journal(run: "r")
        _ = try await journal.step("a") { "short" }
        _ = try await journal.step("b") { String(repeating: "a longer output ", count: 8) }
        _ = try await journal.step("c") { "third" }
        let records = try await ledger.journalRecords(run: "r")
        try await ledger.compact()
        try ledger.close()
        let path = try Self.snapshotPath(harness.directory)
        let intact = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let (field, hints) = try Self.firstPositionField(intact)
        let first = ByteReader.getInteger(intact, at: field, as: UInt32.self)
        let second = ByteReader.getInteger(intact, at: field + 13, as: UInt32.self)
        #expect(first != second)

        // A length off by 8 bytes, checksums made to match: every later value moves and the
        // values no longer fill the values section, so the snapshot is refused at open.
        var damaged = intact
        damaged[field] ^= 8
        Self.refreshChecksums(&damaged, hints: hints)
        try Data(damaged).write(to: URL(fileURLWithPath: path))
        do {
            let opened = try harness.open()
            try opened.close()
            Issue.record("a snapshot whose position hint misplaces its values opened")
        } catch let error as LedgerError {
            #expect(error.isCorruption, "\(error)")
        }

        // Damage the open cannot see — a length off by one byte (the value keeps its padded
        // size), or two lengths swapped (the values still fill the section): it opens, and
        // reading the positions gives `corrupt-record`, not bytes of another position.
        for damage in ["one byte", "swapped"] {
            damaged = intact
            if damage == "one byte" {
                damaged[field] ^= 1
            } else {
                for index in 0..<4 { damaged.swapAt(field + index, field + 13 + index) }
            }
            Self.refreshChecksums(&damaged, hints: hints)
            try Data(damaged).write(to: URL(fileURLWithPath: path))
            ledger = try harness.open()
            do {
                let reread = try await ledger.journalRecords(run: "r")
                Issue.record("\(damage): positions read through a damaged hint: \(reread.map(\.entry.nameText))")
            } catch let error as LedgerError {
                #expect(error.code == .corruptRecord, "\(damage): \(error)")
            }
            try ledger.close()
        }

        // Intact again: every position as recorded.
        try Data(intact).write(to: URL(fileURLWithPath: path))
        ledger = try harness.open()
        #expect(try await ledger.journalRecords(run: "r") == records)
        try ledger.close()
    }
}

// Proves that the dense memo table (`MemoTable`: entries in one flat buffer, names in one arena,
// digests apart, one open-addressing hash table over the whole key with backward-shift deletion,
// free lists for swept entries) always equals a plain dictionary model of the memo records
// applied: every value, digest and time readable under its key, nothing else; per generation the
// right entry count and value bytes; and its snapshot items, applied to a fresh table, give the
// same table. How: seeded random puts, overwrites, run ends and sweeps (enough to grow the hash
// table, reuse swept entries and rewrite the name arena) applied as encoded record bodies, checked
// against the model every few hundred operations; `ONCELEDGER_MEMO_TABLE_OPS` sets the count.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing

@Suite struct MemoTableTests {
    static let operations = ProcessInfo.processInfo.environment["ONCELEDGER_MEMO_TABLE_OPS"].flatMap(Int.init) ?? 12_000

    struct Random {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
    }

    struct Stored: Equatable {
        var digest: [UInt8]
        var time: UInt64
        var value: [UInt8]
    }

    static func apply(_ table: inout MemoTable, _ body: RecordBody) throws {
        let encoded = body.encode()
        try encoded.withUnsafeBytes { try table.apply(kind: body.kind, body: $0) }
    }

    /// Checks `table` against the model: every stored key reads back; a sample of removed
    /// keys reads nothing; the counts per generation match.
    static func check(_ table: borrowing MemoTable, _ model: [MemoKey: Stored], removed: [MemoKey],
                      ended: [MemoTable.GenerationKey: Bool], step: Int) throws {
        #expect(table.count == model.count, "after \(step) operations")
        for (key, stored) in model {
            let slot = table.slot(key)
            #expect(slot?.inputDigest == stored.digest && slot?.timeMilliseconds == stored.time, "\(key) after \(step)")
            let bytes = try table.read(key)?.finish(key)
            #expect(bytes == stored.value, "\(key) after \(step)")
        }
        for key in removed.suffix(200) where model[key] == nil {
            #expect(table.slot(key) == nil, "\(key) was swept but reads after \(step)")
        }
        var counts: [MemoTable.GenerationKey: (Int, Int)] = [:]
        for (key, stored) in model {
            let generation = MemoTable.generationKey(key)
            counts[generation, default: (0, 0)].0 += 1
            counts[generation, default: (0, 0)].1 += stored.value.count
        }
        for info in table.infos(RunQuery()) {
            let key = MemoTable.GenerationKey(run: MemoTable.runKey(info.run), generation: info.generation)
            let (entries, bytes) = counts[key] ?? (0, 0)
            #expect(info.entryCount == entries && info.valueBytes == bytes, "\(info.run) \(info.generation) after \(step)")
            #expect((info.status != nil) == (ended[key] ?? false))
        }
    }

    @Test func theDenseTableEqualsADictionaryModelThroughPutsEndsSweepsAndASnapshot() throws {
        var random = Random(state: 16)
        var table = MemoTable()
        var model: [MemoKey: Stored] = [:]
        var removed: [MemoKey] = []
        var ended: [MemoTable.GenerationKey: Bool] = [:]
        // 24 runs in two namespaces; each run's current generation (numbers never reused).
        let runs = (0..<24).map { MemoRun(namespace: $0 % 2 == 0 ? "" : "ns-\($0 % 3)", run: "run-\($0)") }
        var current = Array(1...UInt64(runs.count))
        var nextGeneration = UInt64(runs.count) + 1
        var sweeps = 0
        for step in 1...Self.operations {
            let runIndex = random.next(runs.count)
            let run = runs[runIndex]
            let generation = current[runIndex]
            let generationKey = MemoTable.GenerationKey(run: MemoTable.runKey(run), generation: generation)
            switch random.next(100) {
            case 0..<88 where ended[generationKey] == nil:
                // A put: new names and overwrites, names of several lengths, with or without input.
                let name = "name-" + String(repeating: "x", count: random.next(20)) + "\(random.next(150))"
                let key = MemoKey(run: run, generation: generation, step: "step-\(random.next(3))", name: name)
                let digest = random.next(3) == 0 ? RecordBody.noInputDigest : (0..<32).map { _ in UInt8(random.next(256)) }
                let stored = Stored(digest: digest, time: UInt64(step), value: (0..<random.next(40)).map { _ in UInt8(random.next(256)) })
                try Self.apply(&table, .memoEntry(.init(
                    namespace: run.namespace, run: run.run, generation: generation, step: key.step, name: name,
                    inputDigest: digest, timeMilliseconds: stored.time, value: stored.value)))
                model[key] = stored
            case 0..<94:
                if ended[generationKey] == nil {
                    try Self.apply(&table, .runEnd(.init(namespace: run.namespace, run: run.run, generation: generation,
                                                         status: .succeeded, timeMilliseconds: UInt64(step))))
                    ended[generationKey] = true
                }
            default:
                // A sweep of the generation (ended or not: the table removes what a sweep record names).
                try Self.apply(&table, .memoSweep(.init(namespace: run.namespace, run: run.run, generation: generation,
                                                        timeMilliseconds: UInt64(step))))
                for key in model.keys where MemoTable.generationKey(key) == generationKey {
                    model[key] = nil
                    removed.append(key)
                }
                ended[generationKey] = nil
                current[runIndex] = nextGeneration
                nextGeneration += 1
                sweeps += 1
            }
            if step % 500 == 0 { try Self.check(table, model, removed: removed, ended: ended, step: step) }
        }
        #expect(sweeps > 50, "the run swept generations")
        try Self.check(table, model, removed: removed, ended: ended, step: Self.operations)

        // Its snapshot items, applied to a fresh table, make the same table.
        var items: [SnapshotFile.StreamItem] = []
        _ = try table.snapshotSource(into: &items)
        var reopened = MemoTable()
        for item in items {
            guard case .whole(let kind, let body) = item else {
                Issue.record("an in-memory value became a value on disk")
                continue
            }
            try body.withUnsafeBytes { try reopened.apply(kind: kind, body: $0) }
        }
        try Self.check(reopened, model, removed: removed, ended: ended, step: Self.operations)
        #expect(reopened.highestGeneration == table.highestGeneration)
    }

    @Test func aSweptGenerationsEntriesAndNameBytesAreReused() throws {
        var table = MemoTable()
        let run = MemoRun(run: "r")
        // Many generations of one run, each filled with long names and swept: the table's
        // memory holds only the live one's (entry indices reused, the name arena rewritten).
        for generation in UInt64(1)...40 {
            for index in 0..<500 {
                try Self.apply(&table, .memoEntry(.init(
                    namespace: "", run: "r", generation: generation, step: "s",
                    name: String(repeating: "n", count: 200) + "\(index)", timeMilliseconds: 1, value: [UInt8(index & 0xff)])))
            }
            try Self.apply(&table, .runEnd(.init(namespace: "", run: "r", generation: generation, status: .failed,
                                                 timeMilliseconds: 1)))
            if generation < 40 {
                try Self.apply(&table, .memoSweep(.init(namespace: "", run: "r", generation: generation, timeMilliseconds: 2)))
            }
        }
        #expect(table.count == 500)
        #expect(table.entryCapacity <= 1_000, "swept entries are reused, not appended")
        #expect(table.nameArenaBytes <= 2 * 500 * 203, "the name arena is rewritten once half of it is garbage")
        for index in 0..<500 {
            let key = MemoKey(run: run, generation: 40, step: "s", name: String(repeating: "n", count: 200) + "\(index)")
            #expect(try table.read(key)?.finish(key) == [UInt8(index & 0xff)])
            #expect(table.slot(MemoKey(run: run, generation: 39, step: "s", name: key.name)) == nil)
        }
    }
}

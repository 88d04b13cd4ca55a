// Proves the memo table's bookkeeping of puts in flight, which the store's put path takes with
// one call (`MemoTable.beginPut`: accept and count, or refuse and count nothing) and ends with
// one lookup (`endPut`): a put is refused for an ended, ending or superseded generation and then
// counts nothing; a put in flight keeps its ended generation from being swept until it ends; a
// put that ended without a record (its append failed) leaves no generation behind; and run keys
// whose bytes run together the same way ("a" + "bc", "ab" + "c") stay apart. How: the table is
// driven directly (record bodies applied as the store applies them, and the store's calls), and
// the sweep's choice and the listed runs are compared with what the rules say.
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct MemoPutBookkeepingTests {
    static let retention = MemoRetention(.milliseconds(10))

    static func end(_ table: inout MemoTable, run: String, generation: UInt64, at time: UInt64) throws {
        let body = RecordBody.runEnd(.init(namespace: "", run: run, generation: generation, status: .succeeded,
                                           timeMilliseconds: time))
        try body.encode().withUnsafeBytes { try table.apply(kind: body.kind, body: $0) }
    }

    static func put(_ table: inout MemoTable, run: String, generation: UInt64) throws {
        let body = RecordBody.memoEntry(.init(namespace: "", run: run, generation: generation, step: "s", name: "n",
                                              timeMilliseconds: 1, value: [1, 2, 3]))
        try body.encode().withUnsafeBytes { try table.apply(kind: body.kind, body: $0) }
    }

    @Test func aPutInFlightHoldsOffTheSweepOfItsEndedGenerationUntilItEnds() throws {
        var table = MemoTable()
        let run = MemoTable.runKey(MemoRun(run: "r"))
        let generation = try table.currentGeneration(run)
        let key = MemoTable.GenerationKey(run: run, generation: generation)
        let accepted = table.beginPut(key)
        #expect(accepted)
        try Self.put(&table, run: "r", generation: generation)
        // The run ends while the put is still in flight (its record applied, the call not returned).
        try Self.end(&table, run: "r", generation: generation, at: 100)
        let held = table.beginSweep(now: 1_000, retention: Self.retention)
        #expect(held.isEmpty, "a put in flight holds the sweep off")
        table.endPut(key)
        let due = table.beginSweep(now: 1_000, retention: Self.retention)
        #expect(due.map(\.key) == [key])
        #expect(due.first?.entries == 1)
    }

    @Test func aRefusedPutCountsNothing() throws {
        var table = MemoTable()
        let run = MemoTable.runKey(MemoRun(run: "r"))
        let generation = try table.currentGeneration(run)
        let key = MemoTable.GenerationKey(run: run, generation: generation)
        try Self.put(&table, run: "r", generation: generation)
        try Self.end(&table, run: "r", generation: generation, at: 100)
        let afterEnd = table.beginPut(key)
        #expect(!afterEnd, "an ended generation takes no put")
        // Not counted: the sweep takes the generation at once.
        let due = table.beginSweep(now: 1_000, retention: Self.retention)
        #expect(due.map(\.key) == [key])

        // Ending (its run-end record being written) refuses as well, and so does a generation
        // that is no longer its run's latest.
        let next = try table.currentGeneration(run)
        #expect(next > generation)
        let nextKey = MemoTable.GenerationKey(run: run, generation: next)
        table.setEnding(nextKey, true)
        let whileEnding = table.beginPut(nextKey)
        #expect(!whileEnding, "a generation being ended takes no put")
        table.setEnding(nextKey, false)
        let running = table.beginPut(nextKey)
        #expect(running)
        table.endPut(nextKey)
        let superseded = table.beginPut(MemoTable.GenerationKey(run: run, generation: next + 1))
        #expect(!superseded, "only the run's latest generation takes puts")
    }

    @Test func aPutThatEndsWithoutARecordLeavesNoGenerationBehind() throws {
        var table = MemoTable()
        let run = MemoTable.runKey(MemoRun(run: "r"))
        let key = MemoTable.GenerationKey(run: run, generation: try table.currentGeneration(run))
        let first = table.beginPut(key)
        let second = table.beginPut(key)
        #expect(first && second)
        table.endPut(key)
        let held = table.generation(key)
        #expect(held != nil, "one put is still in flight")
        table.endPut(key)
        let dropped = table.generation(key)
        let listed = table.infos(RunQuery())
        #expect(dropped == nil)
        #expect(listed.isEmpty)
        // The generation stays the run's current one: a retried put goes to it.
        let current = try table.currentGeneration(run)
        #expect(current == key.generation)
    }

    @Test func runKeysThatRunTogetherStayApart() throws {
        var table = MemoTable()
        let first = MemoTable.RunKey(namespace: Array("a".utf8), run: Array("bc".utf8))
        let second = MemoTable.RunKey(namespace: Array("ab".utf8), run: Array("c".utf8))
        #expect(first != second)
        let one = try table.currentGeneration(first)
        let two = try table.currentGeneration(second)
        #expect(one != two)
        let again = (try table.currentGeneration(first), try table.currentGeneration(second))
        #expect(again.0 == one && again.1 == two)
        var set: Set<MemoTable.BucketKey> = []
        set.insert(.init(generation: .init(run: first, generation: 1), step: Array("s".utf8)))
        set.insert(.init(generation: .init(run: second, generation: 1), step: Array("s".utf8)))
        set.insert(.init(generation: .init(run: first, generation: 1), step: Array("s".utf8)))
        #expect(set.count == 2)
    }
}

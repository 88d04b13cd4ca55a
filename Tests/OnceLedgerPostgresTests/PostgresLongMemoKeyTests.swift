// Proves that memo keys up to the file store's limits work on PostgreSQL (Spec/POSTGRES.md §3.5,
// schema version 4): a namespace of 256 bytes, a run id, a step and a name of 1,024 bytes each,
// not compressible, are stored, overwritten, read one by one and many at once (the journal's
// reads), counted when the run ends and listed, and swept. Before version 4 the primary key of
// `memo_values` held namespace, run, step and name in one btree entry of at most about 2,700
// bytes, and the server refused such a put (SQLSTATE 54000, `limit-exceeded`). Two names that
// differ only in their last byte are two values (the full names are compared, not only their
// digest).
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import OnceLedgerStoreContract
import Testing

@Suite struct PostgresLongMemoKeyTests {
    private func noise(_ count: Int) -> String {
        var random = SystemRandomNumberGenerator()
        let letters = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return String((0..<count).map { _ in letters.randomElement(using: &random)! })
    }

    @Test func memoKeysAtTheFileStoresLimitsAreStoredReadEndedAndSwept() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let run = MemoRun(namespace: noise(FormatLimits.namespaceBytesMax), run: noise(FormatLimits.runBytesMax))
        let generation = try await store.memoGeneration(of: run)
        let step = noise(FormatLimits.stepBytesMax)
        let name = noise(FormatLimits.memoNameBytesMax - 1)
        let key = MemoKey(run: run, generation: generation, step: step, name: name + "a")
        let sibling = MemoKey(run: run, generation: generation, step: step, name: name + "b")
        let missing = MemoKey(run: run, generation: generation, step: step, name: name + "c")
        try await store.memoPut(MemoPutRequest(key: key, value: [1], inputDigest: nil, timeMilliseconds: 1_000))
        try await store.memoPut(MemoPutRequest(key: sibling, value: [2], inputDigest: [UInt8](repeating: 7, count: 32),
                                               timeMilliseconds: 1_000))
        try await store.memoPut(MemoPutRequest(key: key, value: [3], inputDigest: nil, timeMilliseconds: 1_001))
        #expect(try await store.memoGet(key)?.bytes == [3], "the later put of the same key wins")
        let read = try await store.memoGet(sibling)
        #expect(read?.bytes == [2] && read?.inputDigest == [UInt8](repeating: 7, count: 32))
        #expect(try await store.memoGet(missing) == nil)
        #expect(try await store.memoGetMany([missing, sibling, key]).map { $0?.bytes } == [nil, [2], [3]])

        let ended = try await store.finishRun(run, status: .succeeded, timeMilliseconds: 2_000)
        #expect(ended.entryCount == 2 && ended.valueBytes == 2)
        let listed = try await store.runs(RunQuery(namespace: run.namespace))
        #expect(listed.map(\.run) == [run] && listed.first?.entryCount == 2)

        let swept = try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: 10_000, retention: MemoRetention(.seconds(1))))
        #expect(swept.runs[run] == [generation] && swept.entries == 2)
        #expect(try await store.memoGetMany([key, sibling]).map { $0?.bytes } == [nil, nil])
        #expect(try await store.runs(RunQuery(namespace: run.namespace)).isEmpty)
    }

    /// The replay journal on such keys: a step recorded under a long run id and step name is
    /// replayed, not run again.
    @Test func aJournalStepWithLongNamesIsReplayed() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let run = MemoRun(namespace: noise(FormatLimits.namespaceBytesMax), run: noise(FormatLimits.runBytesMax))
        let generation = try await store.memoGeneration(of: run)
        let keys = (0..<3).map { _ in MemoKey(run: run, generation: generation, step: noise(FormatLimits.stepBytesMax),
                                         name: noise(FormatLimits.memoNameBytesMax)) }
        // Concurrent puts go in one batch (group commit), as concurrent journal steps do.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, key) in keys.enumerated() {
                group.addTask {
                    try await store.memoPut(MemoPutRequest(key: key, value: [UInt8(index)], inputDigest: nil,
                                                           timeMilliseconds: 1_000))
                }
            }
            try await group.waitForAll()
        }
        #expect(try await store.memoGetMany(keys).map { $0?.bytes } == [[0], [1], [2]])
    }
}

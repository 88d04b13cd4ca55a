// Proves that a batch sent straight to the committing procedures (as group commit sends it,
// Spec/POSTGRES.md §3.1, §3.2, §4) gives every request the answer the per-request rules give it:
// a batch of fresh keys (a fence each, in request order), a batch with a key twice or a key that
// has a row, a batch one of whose keys another transaction inserts while the batch runs (a held
// insert orders that race), and a settle batch mixing accepted acts, a refused fence and a key
// without a row.
@testable import OnceLedgerPostgres
import OnceLedger
import OnceLedgerFormat
import PostgresNIO
import Testing
import Logging
import OnceLedgerStoreContract
import Synchronization

@Suite struct PostgresBatchTests {
    private func call(_ key: String, retry: Bool = false, time: Int64 = 1_000) -> PostgresStore.ClaimCall {
        PostgresStore.ClaimCall(key: Array(key.utf8), fingerprint: IdempotencyKey(key).fingerprint, scope: 0, window: 0,
                                retry: retry, time: time)
    }

    private func claims(_ store: PostgresStore, _ calls: [PostgresStore.ClaimCall]) async throws -> [PostgresStore.ClaimRow] {
        try await store.pool.withConnection(.writing("test")) { connection in
            try await PostgresStore.runClaims(calls, connection: connection, schema: store.schema, prepared: true,
                                              owner: "test", leaseMilliseconds: 30_000, logger: store.logger)
        }
    }

    private func settles(_ store: PostgresStore, _ calls: [PostgresStore.SettleCall]) async throws -> [PostgresStore.SettleRow] {
        try await store.pool.withConnection(.writing("test")) { connection in
            try await PostgresStore.runSettles(calls, connection: connection, schema: store.schema, prepared: true,
                                               logger: store.logger)
        }
    }

    private func count(_ store: PostgresStore, _ sql: String) async throws -> Int64 {
        try await store.pool.withConnection(.reading("test")) { connection in
            var found: Int64 = -1
            for try await (value) in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: store.logger)
                .decode(Int64.self) {
                found = value
            }
            return found
        }
    }

    @Test func aBatchOfFreshKeysIsGrantedWithAFenceEach() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let keys = ["m", "c", "x", "a", "q"]
        let rows = try await claims(store, keys.map { call($0) })
        #expect(rows.map(\.outcome) == [0, 0, 0, 0, 0])
        #expect(rows.allSatisfy { $0.row.status == 1 && $0.row.attempt == 1 && $0.row.generation == 0 })
        let fences = rows.compactMap(\.fence)
        #expect(Set(fences).count == keys.count, "each request has a fence of its own: \(fences)")
        // Each request's fence is its own key's lease (the answer is in request order).
        for (key, fence) in zip(keys, fences) {
            #expect(try await count(store, "SELECT lease_id FROM \(store.quotedSchema).entries WHERE key = '\\x\(Array(key.utf8).map { String($0, radix: 16) }.joined())'") == fence)
        }
    }

    @Test func aKeyTwiceOrAKeyWithARowTakesThePerRequestRules() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let done = try granted(try await store.claim(claimRequest("done")))
        _ = try await store.complete(done, receipt: [9], timeMilliseconds: 1_500)

        let twice = try await claims(store, [call("b"), call("b"), call("c")])
        #expect(twice.map(\.outcome) == [0, 4, 0], "the second request of a key finds the first one's live lease")
        #expect(twice[1].fence == nil && twice[1].row.status == 1)

        let withRow = try await claims(store, [call("d"), call("done"), call("e")])
        #expect(withRow.map(\.outcome) == [0, 1, 0])
        #expect(withRow[1].row.receipt == [9] && withRow[1].row.status == 2)
    }

    @Test func aKeyInsertedConcurrentlyIsDecidedByTheRulesAndTheOthersGranted() async throws {
        let store = try await PostgresHarness().open(connections: 4)
        defer { try? store.close() }
        let s = store.quotedSchema
        let rows: [PostgresStore.ClaimRow] = try await store.pool.withConnection(.writing("test")) { other in
            // Another process's claim of "race", not yet committed: the batch's check sees no row,
            // and its INSERT waits for this one and then finds the key taken.
            try await other.query("BEGIN", logger: store.logger)
            try await other.query(PostgresQuery(unsafeSQL: """
                INSERT INTO \(s).entries (key, status, attempt, generation, fingerprint, scope, window_ms, time_ms, receipt,
                                          lease_id, lease_owner, lease_expires)
                VALUES ('\\x72616365', 1, 1, 0, decode(repeat('00', 32), 'hex'), 0, 0, 1000, '\\x', nextval('\(s).lease_ids'),
                        'other', clock_timestamp() + interval '1 hour')
                """), logger: store.logger)
            let batch = Task { try await self.claims(store, [self.call("zeta"), self.call("race"), self.call("alpha")]) }
            try await waitUntil("the batch waits for the other insert") {
                try await self.count(store, "SELECT count(*)::bigint FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted") > 0
            }
            try await other.query("COMMIT", logger: store.logger)
            return try await batch.value
        }
        #expect(rows.map(\.outcome) == [0, 4, 0], "race is running under the other owner's lease")
        #expect(rows[0].fence != nil && rows[2].fence != nil && rows[1].fence == nil)
        #expect(try await count(store, "SELECT count(*)::bigint FROM \(s).entries WHERE lease_owner = 'test'") == 2)
    }

    @Test func aSettleBatchAnswersEachActOnItsOwn() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let granted = try await claims(store, [call("ok"), call("fenced"), call("rel"), call("aband")])
        let fences = granted.compactMap(\.fence)
        try #require(fences.count == 4)
        func settle(_ act: Int16, _ key: String, fence: Int64, receipt: [UInt8] = []) -> PostgresStore.SettleCall {
            PostgresStore.SettleCall(act: act, key: Array(key.utf8), attempt: 1, fence: fence, receipt: receipt, time: 2_000,
                                     reason: "test")
        }
        let rows = try await settles(store, [
            settle(1, "ok", fence: fences[0], receipt: [1, 2]),
            settle(1, "fenced", fence: fences[1] + 1_000, receipt: [3]),
            settle(2, "rel", fence: fences[2]),
            settle(3, "aband", fence: fences[3]),
            settle(1, "no-row", fence: 5),
        ])
        #expect(rows.map(\.ok) == [true, false, true, true, false])
        #expect(rows[0].row?.status == 2 && rows[0].row?.receipt == [1, 2] && rows[0].row?.time == 2_000)
        #expect(rows[1].row?.status == 1 && rows[1].row?.receipt == [], "a refused act answers the row as it is")
        #expect(rows[2].row?.status == 0 && rows[2].row?.fingerprint == [UInt8](repeating: 0, count: 32))
        #expect(rows[3].row?.status == 1, "abandon only clears the lease")
        #expect(rows[4].row == nil)
        let s = store.quotedSchema
        #expect(try await count(store, "SELECT count(*)::bigint FROM \(s).audit WHERE act = 'release' AND reason = 'test'") == 1)
        #expect(try await count(store, "SELECT count(*)::bigint FROM \(s).entries WHERE lease_id IS NOT NULL") == 1,
                "only the refused key keeps its lease")
        // The refused claim still holds its key: its own fence settles it.
        let late = try await settles(store, [settle(1, "fenced", fence: fences[1], receipt: [4])])
        #expect(late.map(\.ok) == [true])
    }
}

/// Memo puts go through group commit too (Spec/POSTGRES.md §3.5, §4): puts arriving while a batch
/// is on the wire go together in one `memo_put_batch_commit`, each answered on its own — a put
/// for an ended generation in the same batch is refused without refusing the others — and a
/// batch carries at most `memoBatchBytes` of values.
@Suite struct PostgresMemoBatchTests {
    @Test func concurrentPutsShareBatchesAndEachGetsItsOwnAnswer() async throws {
        let store = try await PostgresHarness().open(connections: 4)
        defer { try? store.close() }
        let live = MemoRun(run: "live")
        let ended = MemoRun(run: "ended")
        let liveGeneration = try await store.memoGeneration(of: live)
        let endedGeneration = try await store.memoGeneration(of: ended)
        _ = try await store.finishRun(ended, status: .succeeded, timeMilliseconds: 1_000)
        let results = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for index in 0..<40 {
                group.addTask {
                    let run = index == 17 ? ended : live
                    let key = MemoKey(run: run, generation: index == 17 ? endedGeneration : liveGeneration,
                                      step: "step", name: "value-\(index)")
                    do {
                        try await store.memoPut(MemoPutRequest(key: key, value: [UInt8(index)], inputDigest: nil,
                                                               timeMilliseconds: 2_000))
                        return (index, true)
                    } catch let error as LedgerError where error.code == .runEnded {
                        return (index, false)
                    }
                }
            }
            var all: [Int: Bool] = [:]
            for try await (index, accepted) in group { all[index] = accepted }
            return all
        }
        #expect(results.count == 40)
        #expect(results.filter { !$0.value }.map(\.key) == [17], "only the put of the ended run is refused")
        for index in 0..<40 where index != 17 {
            let read = try await store.memoGet(MemoKey(run: live, generation: liveGeneration, step: "step", name: "value-\(index)"))
            #expect(read?.bytes == [UInt8(index)])
        }
    }

    @Test func putsWorkAsTextToo() async throws {
        let store = try await PostgresHarness().open(preparedStatements: false)
        defer { try? store.close() }
        let run = MemoRun(namespace: "text", run: "r")
        let key = MemoKey(run: run, generation: try await store.memoGeneration(of: run), step: "s", name: "n")
        try await store.memoPut(MemoPutRequest(key: key, value: [5, 6], inputDigest: [UInt8](repeating: 1, count: 32),
                                               timeMilliseconds: 3_000))
        let read = try await store.memoGet(key)
        #expect(read?.bytes == [5, 6] && read?.inputDigest == [UInt8](repeating: 1, count: 32) && read?.timeMilliseconds == 3_000)
    }

    @Test func aBatchOfPutsCarriesAtMostItsValueBytes() async throws {
        let gate = OnceLedgerStoreContract.Gate()
        let sizes = Mutex<[Int]>([])
        let commit = GroupCommit<Int, Int>(lanes: 1, batchMax: 64, weightMax: 10, weight: { $0 }) { requests in
            sizes.withLock { $0.append(requests.count) }
            if requests == [1] { await gate.wait() }
            return requests
        }
        let first = Task { try await commit.submit(1) }
        try await waitUntil("the first batch is on the wire") { sizes.withLock { $0.count } == 1 }
        // Queued behind it, in this order: 4 + 4 fit in 10 and go together; the third 4 does
        // not fit with them; 30 goes alone, over the cap.
        var queued: [Task<Int, any Error>] = []
        for (count, weight) in [4, 4, 4, 30].enumerated() {
            queued.append(Task { try await commit.submit(weight) })
            try await waitUntil("request \(count + 1) queues") { commit.queuedCount == count + 1 }
        }
        gate.open()
        #expect(try await first.value == 1)
        var answers: [Int] = []
        for task in queued { answers.append(try await task.value) }
        #expect(answers == [4, 4, 4, 30])
        #expect(sizes.withLock { $0 } == [1, 2, 1, 1])
    }
}

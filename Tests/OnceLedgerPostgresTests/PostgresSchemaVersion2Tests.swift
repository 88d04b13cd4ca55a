// Proves what schema versions 2 and 3 (Spec/POSTGRES.md §3, §5) bring: they are what a new store
// creates and what an existing version-1 or version-2 schema is migrated to, keeping its rows and
// memo values; the claim procedure
// commits inside itself (it refuses to run inside a transaction block, which is what makes its
// answer arrive only after the commit); a claim batch waits for a compaction holding the
// generation floor and reads the raised floor; and a settle signals a key only when somebody
// waits for it (`waits`), so a completion nobody waits for wakes no listener.
@testable import OnceLedgerPostgres
import OnceLedger
import OnceLedgerFormat
import PostgresNIO
import Testing
import Logging
import OnceLedgerStoreContract

@Suite struct PostgresMigrationTests {
    private func version(_ store: PostgresStore) async throws -> Int32 {
        try await store.pool.withConnection(.reading("test")) { connection in
            var version: Int32 = 0
            for try await (found) in try await connection.query(
                "SELECT schema_version FROM \(unescaped: store.quotedSchema).meta", logger: store.logger).decode(Int32.self) {
                version = found
            }
            return version
        }
    }

    private func procedures(_ store: PostgresStore) async throws -> [String] {
        let schema = store.schema
        return try await store.pool.withConnection(.reading("test")) { connection in
            var names: [String] = []
            for try await (name) in try await connection.query("""
                SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = \(schema) AND p.prokind = 'p' ORDER BY p.proname
                """, logger: store.logger).decode(String.self) {
                names.append(name)
            }
            return names
        }
    }

    /// `memo_values` as versions 1 to 3 have it: keyed by its columns, without `key_digest`.
    static func undoVersion4MemoKey(_ connection: PostgresConnection, _ store: PostgresStore) async throws {
        try await connection.query(PostgresQuery(unsafeSQL: "ALTER TABLE \(store.quotedSchema).memo_values DROP COLUMN key_digest"),
                                   logger: store.logger)
        try await connection.query(PostgresQuery(unsafeSQL: """
            ALTER TABLE \(store.quotedSchema).memo_values ADD PRIMARY KEY (namespace, run, generation, step, name)
            """), logger: store.logger)
    }

    @Test func aNewStoreIsTheCurrentVersionWithTheCommittingProcedures() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        #expect(try await version(store) == Int32(PostgresSchema.version))
        #expect(try await procedures(store) == ["claim_commit", "memo_put_batch_commit", "memo_put_commit", "settle_commit"])
    }

    /// Version 3 (Spec/POSTGRES.md §5): a version-2 schema gets the batch memo put procedure,
    /// keeping its memo values; a put after the migration goes through it.
    @Test func aVersion2SchemaIsMigratedToVersion3AndKeepsItsMemo() async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open()
        let run = MemoRun(run: "order-7")
        let generation = try await store.memoGeneration(of: run)
        let kept = MemoKey(run: run, generation: generation, step: "s", name: "kept")
        try await store.memoPut(MemoPutRequest(key: kept, value: [1, 2], inputDigest: nil, timeMilliseconds: 1_000))
        // Back to version 2: what a build of version 2 left behind.
        try await store.pool.withConnection(.writing("test")) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "DROP PROCEDURE \(store.quotedSchema).memo_put_batch_commit"),
                                       logger: store.logger)
            try await Self.undoVersion4MemoKey(connection, store)
            try await connection.query("UPDATE \(unescaped: store.quotedSchema).meta SET schema_version = 2",
                                       logger: store.logger)
            return 0
        }
        try store.close()

        let migrated = try await harness.open()
        defer { try? migrated.close() }
        #expect(try await version(migrated) == Int32(PostgresSchema.version))
        #expect(try await procedures(migrated).contains("memo_put_batch_commit"))
        #expect(try await migrated.memoGet(kept)?.bytes == [1, 2])
        let next = MemoKey(run: run, generation: generation, step: "s", name: "next")
        try await migrated.memoPut(MemoPutRequest(key: next, value: [3], inputDigest: [UInt8](repeating: 9, count: 32),
                                                  timeMilliseconds: 2_000))
        let read = try await migrated.memoGet(next)
        #expect(read?.bytes == [3] && read?.inputDigest == [UInt8](repeating: 9, count: 32))
    }

    @Test func aVersion1SchemaIsMigratedAndKeepsItsEntries() async throws {
        let harness = try PostgresHarness()
        let store = try await harness.open()
        let claim = try granted(try await store.claim(claimRequest("kept")))
        _ = try await store.complete(claim, receipt: Array("r".utf8), timeMilliseconds: 2_000)
        // Back to version 1: what a build of version 1 left behind.
        try await store.pool.withConnection(.writing("test")) { connection in
            for name in ["claim_commit", "settle_commit", "memo_put_commit", "memo_put_batch_commit"] {
                try await connection.query(PostgresQuery(unsafeSQL: "DROP PROCEDURE \(store.quotedSchema).\(name)"),
                                           logger: store.logger)
            }
            try await connection.query(PostgresQuery(unsafeSQL: "DROP TABLE \(store.quotedSchema).waits"), logger: store.logger)
            try await Self.undoVersion4MemoKey(connection, store)
            try await connection.query("UPDATE \(unescaped: store.quotedSchema).meta SET schema_version = 1",
                                       logger: store.logger)
            return 0
        }
        #expect(try await procedures(store).isEmpty)
        try store.close()

        let migrated = try await harness.open()
        defer { try? migrated.close() }
        #expect(try await version(migrated) == Int32(PostgresSchema.version))
        #expect(try await procedures(migrated) == ["claim_commit", "memo_put_batch_commit", "memo_put_commit", "settle_commit"])
        let kept = try await migrated.entry("kept")
        #expect(kept?.status == .done && kept?.receipt == Array("r".utf8))
        let next = try granted(try await migrated.claim(claimRequest("new")))
        _ = try await migrated.complete(next, receipt: [], timeMilliseconds: 3_000)
        #expect(try await migrated.entry("new")?.status == .done)
    }

    @Test func theClaimProcedureCommitsInsideItself() async throws {
        let store = try await PostgresHarness().open()
        defer { try? store.close() }
        let refusal: String = try await store.pool.withConnection(.writing("test")) { connection in
            try await connection.query("BEGIN", logger: store.logger)
            var message = ""
            do {
                // The error arrives with the rows: read them.
                for try await _ in try await connection.query("""
                    CALL \(unescaped: store.quotedSchema).claim_commit(ARRAY['\\x6b'::bytea], ARRAY[decode(repeat('00', 32), 'hex')],
                        ARRAY[0::smallint], ARRAY[0::bigint], ARRAY[false], ARRAY[1::bigint], 'test', 1000)
                    """, logger: store.logger) {}
            } catch let error as PSQLError {
                message = error.serverInfo?[.message] ?? "\(error)"
            }
            try await connection.query("ROLLBACK", logger: store.logger)
            return message
        }
        #expect(refusal.contains("invalid transaction termination"), "\(refusal)")
        #expect(try await store.entry("k") == nil)
    }
}

/// The generation floor under concurrency (Spec/POSTGRES.md §3.6): a claim batch that starts while
/// a compaction holds the floor waits for it and reads the raised floor, so a key the compaction
/// dropped can never be granted an old generation (a reused token).
@Suite struct PostgresFloorLockTests {
    @Test func aClaimWaitsForACompactionAndReadsTheRaisedFloor() async throws {
        let store = try await PostgresHarness().open(connections: 4)
        defer { try? store.close() }
        let key = PostgresSchema.floorLockKey(store.schema)
        let generation: UInt32 = try await store.pool.withConnection(.writing("test")) { compaction in
            // This connection plays a compaction in progress: it holds the floor and raises it.
            try await compaction.query("BEGIN", logger: store.logger)
            for try await _ in try await compaction.query(PostgresQuery(unsafeSQL: "SELECT pg_advisory_xact_lock(\(key))"),
                                                           logger: store.logger) {}
            try await compaction.query("UPDATE \(unescaped: store.quotedSchema).meta SET generation_floor = 7",
                                       logger: store.logger)
            let claim = Task { try await store.claim(claimRequest("fresh")) }
            // Wait until the claim batch waits for the floor (a condition, polled; no timing).
            try await waitUntil("the claim batch waits for the compaction's floor lock") {
                try await store.pool.withConnection(.reading("test")) { probe in
                    var count = 0
                    for try await (found) in try await probe.query(
                        "SELECT count(*)::bigint FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                        logger: store.logger).decode(Int64.self) {
                        count = Int(found)
                    }
                    return count > 0
                }
            }
            try await compaction.query("COMMIT", logger: store.logger)
            return try granted(try await claim.value).generation
        }
        #expect(generation == 7, "the claim read the floor the compaction raised")
    }
}

@Suite struct PostgresWaitSignalTests {
    /// A completion nobody waits for sends no notification; one of a key another store's caller
    /// waits for does, and wakes it. Notifications arrive in commit order on the listener, so
    /// once the second one is counted, a first one would have been counted before it.
    @Test func onlyAWaitedKeyIsSignalled() async throws {
        let harness = try PostgresHarness()
        let owner = try await harness.open()
        let other = try await harness.open()
        defer {
            try? owner.close()
            try? other.close()
        }
        let quiet = try granted(try await owner.claim(claimRequest("nobody-waits")))
        _ = try await owner.complete(quiet, receipt: [1], timeMilliseconds: 1_001)

        let claim = try granted(try await owner.claim(claimRequest("waited")))
        guard case .running(let entry) = try await other.claim(claimRequest("waited")) else {
            Issue.record("the key is live")
            return
        }
        let waiter = Task { try await other.waitForChange(of: entry) }
        try await waitUntil("the other store waits") { other.waiterCount("waited") == 1 }
        // The wait is listed before the waiter first checks the key, so the row is there once
        // it suspends; settle then signals.
        _ = try await owner.complete(claim, receipt: [2], timeMilliseconds: 1_002)
        try await waiter.value
        try await waitUntil("the signal reached the listeners") { owner.notificationCount >= 1 && other.notificationCount >= 1 }
        #expect(owner.notificationCount == 1, "the completion nobody waited for sent no notification")
        #expect(other.notificationCount == 1)
    }
}

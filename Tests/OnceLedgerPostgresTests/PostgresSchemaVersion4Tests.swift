// Proves what schema version 4 (Spec/POSTGRES.md §5) brings to an existing ledger: a version-3
// schema, built by the statements a version-3 build runs and filled by its own functions (keys
// released, pending-unknown, live, done forever and in a window, forgotten, resolved; memo values
// of an open run and an ended one; audit rows), is migrated to version 4 keeping every row, its
// ledger id, floor and sequences, reads back the same through the store and goes on from there
// (a retry of the pending key takes the same token, a forgotten key the next generation); and a
// new schema is the same as a migrated one: functions, columns, constraints, indexes, sequences.
import Logging
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import OnceLedgerStoreContract
import PostgresNIO
import Testing

/// A connection of its own to the test server (not a store's pool).
private func withConnection<T: Sendable>(_ harness: PostgresHarness,
                                         _ body: (PostgresConnection, Logger) async throws -> T) async throws -> T {
    var logger = Logger(label: "test.version4")
    logger.logLevel = .critical
    let connection = try await ConnectionPool.connect(url: try PostgresURL(harness.server.url), id: 98, logger: logger)
    do {
        let result = try await body(connection, logger)
        try await connection.close()
        return result
    } catch {
        try? await connection.close()
        throw error
    }
}

private func strings(_ connection: PostgresConnection, _ logger: Logger, _ sql: String) async throws -> [String] {
    var found: [String] = []
    do {
        for try await (value) in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(String.self) {
            found.append(value)
        }
    } catch let error as PSQLError {
        Issue.record("\(sql): \(error.serverInfo?[.message] ?? String(reflecting: error))")
        throw error
    }
    return found
}

/// What a build of schema version 3 creates: version 1 whole, then steps 2 and 3.
private func createVersion3(_ connection: PostgresConnection, _ logger: Logger, schema: String) async throws {
    try await connection.query("BEGIN", logger: logger)
    try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \"\(schema)\""), logger: logger)
    for statement in PostgresSchema.createVersion1(schema) {
        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
    }
    try await connection.query(PostgresQuery(unsafeSQL: """
        INSERT INTO "\(schema)".meta (schema_version, ledger_id) VALUES (1, decode(md5(random()::text), 'hex'))
        """), logger: logger)
    for statement in PostgresSchema.createVersion2(schema) + PostgresSchema.createVersion3(schema) {
        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
    }
    try await connection.query(PostgresQuery(unsafeSQL: "UPDATE \"\(schema)\".meta SET schema_version = 3"), logger: logger)
    try await connection.query("COMMIT", logger: logger)
}

/// Rows written by version 3's own functions, as a version-3 store writes them.
private func fillVersion3(_ connection: PostgresConnection, _ logger: Logger, schema: String) async throws {
    let s = "\"\(schema)\""
    func k(_ key: String) -> String { "convert_to('\(key)', 'UTF8')" }
    func fence(_ key: String) -> String { "(SELECT lease_id FROM \(s).entries WHERE key = \(k(key)))" }
    let keys = ["released", "pending", "live", "done", "window", "forgotten", "resolved"]
    let fingerprint = "decode(repeat('00', 32), 'hex')"  // a key without params
    let settled = ["released", "pending", "done", "window", "forgotten", "resolved"]
    let statements = [
        """
        SELECT count(*)::text FROM \(s).claim(ARRAY[\(keys.map(k).joined(separator: ", "))],
            ARRAY[\(Array(repeating: fingerprint, count: keys.count).joined(separator: ", "))],
            ARRAY[0, 0, 0, 0, 2, 0, 0]::smallint[], ARRAY[0, 0, 0, 0, 500, 0, 0]::bigint[],
            ARRAY[false, false, false, false, false, false, false], ARRAY[1000, 1000, 1000, 1000, 1000, 1000, 1000]::bigint[],
            'a version-3 process', 3600000)
        """,
        """
        SELECT count(*)::text FROM \(s).settle(ARRAY[2, 3, 1, 1, 1, 3]::smallint[], ARRAY[\(settled.map(k).joined(separator: ", "))],
            ARRAY[1, 1, 1, 1, 1, 1]::bigint[], ARRAY[\(settled.map(fence).joined(separator: ", "))],
            ARRAY['\\x'::bytea, '\\x', convert_to('"d"', 'UTF8'), convert_to('"w"', 'UTF8'), convert_to('"f"', 'UTF8'), '\\x'],
            ARRAY[1001, 1001, 1001, 1001, 1001, 1001]::bigint[], ARRAY['did not happen', '', '', '', '', ''])
        """,
        "SELECT code::text FROM \(s).operate(\(k("forgotten")), true, 2::smallint, NULL, false, '\\x', 1002, 'op', 'a re-run')",
        "SELECT code::text FROM \(s).operate(\(k("resolved")), false, 1::smallint, NULL, true, convert_to('\"r\"', 'UTF8'), 1002, 'op', 'checked')",
        """
        SELECT \(s).memo_put(''::bytea, \(k("run-a")), \(s).memo_generation(''::bytea, \(k("run-a"))), \(k("s")), \(k("n")),
                             NULL, 1000, '\\x0102')::text
        """,
        """
        SELECT \(s).memo_put(''::bytea, \(k("run-b")), \(s).memo_generation(''::bytea, \(k("run-b"))), \(k("s")), \(k("n")),
                             decode(repeat('09', 32), 'hex'), 1000, '\\x03')::text
        """,
        "SELECT generation::text FROM \(s).finish_run(''::bytea, \(k("run-b")), 1::smallint, 1500)",
    ]
    for statement in statements {
        let answers = try await strings(connection, logger, statement)
        #expect(!answers.isEmpty && !answers.contains("false"), "\(statement): \(answers)")
    }
}

/// Every row of every table (meta without its version) and the sequences, as text.
private func contents(_ connection: PostgresConnection, _ logger: Logger, schema: String) async throws -> [String] {
    let s = "\"\(schema)\""
    var found: [String] = []
    for table in ["entries", "audit", "memo_runs", "memo_generations", "waits"] {
        found += try await strings(connection, logger,
                                   "SELECT '\(table) ' || row(t.*)::text FROM \(s).\(table) t ORDER BY row(t.*)::text")
    }
    // The columns version 3 has (version 4 adds `key_digest`, computed from them).
    found += try await strings(connection, logger, """
        SELECT 'memo_values ' || row(namespace, run, generation, step, name, input_digest, time_ms, value)::text
          FROM \(s).memo_values ORDER BY 1
        """)
    found += try await strings(connection, logger, "SELECT 'meta ' || row(ledger_id, generation_floor, created)::text FROM \(s).meta")
    for sequence in ["lease_ids", "memo_generation_numbers"] {
        found += try await strings(connection, logger, "SELECT '\(sequence) ' || row(last_value, is_called)::text FROM \(s).\(sequence)")
    }
    return found
}

/// The schema's definition: every function and procedure, column, constraint, index and
/// sequence, with the schema's name replaced so two schemas compare.
private func definition(_ connection: PostgresConnection, _ logger: Logger, schema: String) async throws -> [String] {
    let queries = [
        """
        SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || pg_get_functiondef(p.oid)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = '\(schema)'
        """,
        """
        SELECT c.table_name || '.' || c.column_name || ' ' || c.ordinal_position || ' ' || c.data_type || ' '
               || c.is_nullable || ' ' || coalesce(c.column_default, '')
          FROM information_schema.columns c WHERE c.table_schema = '\(schema)'
        """,
        """
        SELECT cl.relname || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
          FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid JOIN pg_namespace n ON n.oid = co.connamespace
         WHERE n.nspname = '\(schema)'
        """,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = '\(schema)'",
        """
        SELECT sequencename || ' ' || data_type::text || ' ' || start_value || ' ' || increment_by || ' ' || max_value
          FROM pg_sequences WHERE schemaname = '\(schema)'
        """,
        "SELECT c.relname || ' ' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '\(schema)'",
    ]
    var found: [String] = []
    for query in queries {
        found += try await strings(connection, logger, query).map { $0.replacingOccurrences(of: schema, with: "<schema>") }
    }
    return found.sorted()
}

@Suite struct PostgresSchemaVersion4Tests {
    @Test func aVersion3SchemaWithDataIsMigratedTo4AndReadsBackTheSame() async throws {
        let harness = try PostgresHarness()
        let before = try await withConnection(harness) { connection, logger in
            try await createVersion3(connection, logger, schema: harness.schema)
            try await fillVersion3(connection, logger, schema: harness.schema)
            return try await contents(connection, logger, schema: harness.schema)
        }
        #expect(before.count > 15, "\(before)")

        let store = try await harness.open()
        defer { try? store.close() }
        let (after, version) = try await withConnection(harness) { connection, logger in
            (try await contents(connection, logger, schema: harness.schema),
             try await strings(connection, logger, "SELECT schema_version::text FROM \"\(harness.schema)\".meta"))
        }
        #expect(version == ["\(PostgresSchema.version)"])
        #expect(after == before, "every row, the ledger id, the floor and the sequences kept")

        // Read back through the store.
        let entries = try await store.entries(EntryQuery())
        let byKey = Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0) })
        #expect(entries.count == 7)
        #expect(byKey["released"]?.status == .absent && byKey["released"]?.attempt == 1)
        #expect(byKey["pending"]?.status == .pendingUnknown && byKey["pending"]?.attempt == 1)
        #expect(byKey["live"]?.status == .pendingUnknown)
        #expect(byKey["done"]?.status == .done && byKey["done"]?.receipt == Array("\"d\"".utf8))
        #expect(byKey["window"]?.status == .done && byKey["window"]?.receipt == Array("\"w\"".utf8))
        #expect(byKey["forgotten"]?.status == .absent && byKey["forgotten"]?.generation == 1)
        #expect(byKey["resolved"]?.status == .done && byKey["resolved"]?.receipt == Array("\"r\"".utf8))
        let runs = try await store.runs(RunQuery())
        #expect(runs.count == 2)
        let open = try #require(runs.first { $0.run.run == "run-a" })
        let ended = try #require(runs.first { $0.run.run == "run-b" })
        #expect(open.status == nil && ended.status == .succeeded && ended.endTimeMilliseconds == 1_500)
        let value = try await store.memoGet(MemoKey(run: open.run, generation: open.generation, step: "s", name: "n"))
        #expect(value?.bytes == [1, 2] && value?.inputDigest == nil)
        let endedValue = try await store.memoGet(MemoKey(run: ended.run, generation: ended.generation, step: "s", name: "n"))
        #expect(endedValue?.bytes == [3] && endedValue?.inputDigest == [UInt8](repeating: 9, count: 32))

        // And goes on from there under the version-4 functions.
        let key = { (name: String) in IdempotencyKey(name) }
        guard case .running = try await store.claim(claimRequest(key("live"), at: 2_000)) else {
            Issue.record("the live lease of the version-3 process still holds its key")
            return
        }
        guard case .done(let done) = try await store.claim(claimRequest(key("done"), at: 2_000)) else {
            Issue.record("a done key stays done")
            return
        }
        #expect(done.receipt == Array("\"d\"".utf8))
        let retry = try granted(try await store.claim(claimRequest(key("pending"), whenPending: .retry, at: 2_000)))
        #expect(retry.attempt == 2 && retry.generation == 0, "a retry takes the same token")
        _ = try await store.complete(retry, receipt: [7], timeMilliseconds: 2_001)
        let rerun = try granted(try await store.claim(claimRequest(key("forgotten"), at: 2_000)))
        #expect(rerun.attempt == 2 && rerun.generation == 1, "a forgotten key runs at the next generation")
    }

    /// A schema a version-4 build creates (version 1, then every step) and a version-3 schema it
    /// migrated are the same, object for object.
    @Test func aNewSchemaIsTheSameAsAMigratedOne() async throws {
        let fresh = try PostgresHarness()
        let migrated = try PostgresHarness()
        try await withConnection(migrated) { connection, logger in
            try await createVersion3(connection, logger, schema: migrated.schema)
        }
        let new = try await fresh.open()
        defer { try? new.close() }
        let old = try await migrated.open()
        defer { try? old.close() }
        let (freshDefinition, migratedDefinition) = try await withConnection(fresh) { connection, logger in
            (try await definition(connection, logger, schema: fresh.schema),
             try await definition(connection, logger, schema: migrated.schema))
        }
        #expect(freshDefinition.count > 30, "\(freshDefinition)")
        #expect(freshDefinition == migratedDefinition)
        // Version 4's functions, in both.
        #expect(freshDefinition.contains { $0.hasPrefix("claim(") && $0.contains("outcome := 6") })
        #expect(freshDefinition.contains { $0.hasPrefix("operate(") && $0.contains("code := 5") })
    }
}

import Logging
import OnceLedgerFormat
import PostgresNIO

/// Creates the schema or brings it to `PostgresSchema.version`, in one transaction under an
/// advisory lock (so processes starting together migrate once), and reads the ledger id
/// (`Spec/POSTGRES.md` §6).
enum PostgresMigration {
    /// Migrations from version N-1 to N, for N = 2, 3, … (version 1 is created whole, then
    /// brought up step by step, so a new schema and a migrated one are the same).
    static func steps(_ schema: String) -> [Int: [String]] { [
            2: PostgresSchema.createVersion2(schema),
            3: PostgresSchema.createVersion3(schema),
            4: PostgresSchema.createVersion4(schema),
        ] }

    static func migrate(pool: ConnectionPool, schema: String) async throws -> LedgerID {
        let quoted = "\"\(schema)\""
        let logger = pool.logger
        return try await pool.withConnection(.writing("creating or migrating schema \"\(schema)\"")) { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                let id = try await migrate(connection, schema: schema, quoted: quoted, logger: logger)
                try await connection.query("COMMIT", logger: logger)
                return id
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    private static func migrate(_ connection: PostgresConnection, schema: String, quoted: String,
                                logger: Logger) async throws -> LedgerID {
        let lockName = "onceledger.migrate.\(schema)"
        try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(lockName)))", logger: logger)
        let metaName = "\(quoted).meta"
        var exists = false
        for try await (found) in try await connection.query("SELECT to_regclass(\(metaName)) IS NOT NULL",
                                                            logger: logger).decode(Bool.self) {
            exists = found
        }
        var version = 0
        if exists {
            for try await (found) in try await connection.query(
                "SELECT schema_version FROM \(unescaped: quoted).meta", logger: logger).decode(Int32.self) {
                version = Int(found)
            }
            // A meta table without its row, or with a version no build writes, was emptied or
            // altered by hand: migrating it would run steps over tables that exist (or make a
            // new ledger id, changing every token); refused, nothing changed.
            if version < 1 {
                throw LedgerError(
                    .corruptRecord,
                    "schema \"\(schema)\" has a meta table without a valid row (schema version \(version)); OnceLedger never leaves it so, it was changed by hand. Nothing was changed: restore the row (schema_version, ledger_id) from a backup, or use another schema")
            }
            if version > PostgresSchema.version {
                throw LedgerError(
                    .unsupportedVersion,
                    "schema \"\(schema)\" was written by a newer OnceLedger (schema version \(version); this build knows up to \(PostgresSchema.version)); nothing was changed. Upgrade OnceLedger in this process, or use another schema")
            }
        } else {
            var schemaExists = false
            for try await (found) in try await connection.query(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = \(schema))", logger: logger).decode(Bool.self) {
                schemaExists = found
            }
            if !schemaExists {
                try await connection.query("CREATE SCHEMA \(unescaped: quoted)", logger: logger)
            }
            for statement in PostgresSchema.createVersion1(schema) {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            let id = ByteBuffer(bytes: LedgerID.random().bytes)
            try await connection.query("""
                INSERT INTO \(unescaped: quoted).meta (schema_version, ledger_id) VALUES (1, \(id))
                """, logger: logger)
            version = 1
        }
        if version < PostgresSchema.version {
            let steps = steps(schema)
            for next in (version + 1)...PostgresSchema.version {
                for statement in steps[next] ?? [] {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
            }
            let target = Int32(PostgresSchema.version)
            try await connection.query("UPDATE \(unescaped: quoted).meta SET schema_version = \(target)", logger: logger)
        }
        var idBytes: [UInt8] = []
        for try await (found) in try await connection.query(
            "SELECT ledger_id FROM \(unescaped: quoted).meta", logger: logger).decode(ByteBuffer.self) {
            idBytes = Array(buffer: found)
        }
        guard let id = LedgerID(bytes: idBytes) else {
            throw LedgerError(.corruptRecord,
                              "schema \"\(schema)\"'s meta row holds a ledger id of \(idBytes.count) bytes, not 16; it was not written by OnceLedger")
        }
        return id
    }
}

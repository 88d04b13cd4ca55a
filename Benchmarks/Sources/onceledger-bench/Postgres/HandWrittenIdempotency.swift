import Logging
import PostgresNIO

/// The pattern users write by hand for exactly-once on PostgreSQL, the baseline of the
/// `--postgres` rows (`Benchmarks/README.md`, P1 and P2): an idempotency table, and per call
///
/// 1. `INSERT INTO … VALUES (key, 'started') ON CONFLICT DO NOTHING RETURNING key`, its own
///    transaction (autocommit): a returned row means this caller runs the effect;
/// 2. the effect (a no-op here, as in every `once` row of the bench);
/// 3. `UPDATE … SET status = 'done', receipt = … WHERE key = … AND status = 'started'`, its
///    own transaction.
///
/// Each caller holds one connection for its whole call (`withConnection`); `connections`
/// bounds the pool, so 64 callers over 8 connections queue for them, as a web service with a
/// pool of 8 does.
final class HandWrittenIdempotency: Sendable {
    let client: PostgresClient
    let table: String
    let receipt: [UInt8]
    private let runTask: Task<Void, Never>

    /// Connects to the server of `configuration` with a pool of `connections` and creates
    /// the table `table` (dropped first, so every run starts empty).
    static func prepare(configuration: PostgresClient.Configuration, connections: Int, table: String,
                        receipt: [UInt8]) async throws -> HandWrittenIdempotency
    {
        var configuration = configuration
        configuration.options.maximumConnections = connections
        configuration.options.minimumConnections = 0
        let client = PostgresClient(configuration: configuration, backgroundLogger: PostgresBench.logger)
        let runTask = Task { await client.run() }
        let bench = HandWrittenIdempotency(client: client, table: table, receipt: receipt, runTask: runTask)
        do {
            try await client.withConnection { connection in
                _ = try await connection.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(table)"), logger: bench.logger)
                _ = try await connection.query(PostgresQuery(unsafeSQL: """
                    CREATE TABLE \(table) (
                        key text PRIMARY KEY,
                        status text NOT NULL,
                        receipt bytea,
                        created_at timestamptz NOT NULL DEFAULT now(),
                        completed_at timestamptz
                    )
                    """), logger: bench.logger)
            }
        } catch {
            bench.shutdown()
            throw error
        }
        return bench
    }

    private init(client: PostgresClient, table: String, receipt: [UInt8], runTask: Task<Void, Never>) {
        self.client = client
        self.table = table
        self.receipt = receipt
        self.runTask = runTask
    }

    var logger: Logger { PostgresBench.logger }

    /// One call: the intent transaction, the (no-op) effect, the completion transaction.
    /// Throws if the key was not fresh (the bench uses a fresh key per call).
    func once(_ key: String) async throws {
        let insert = PostgresQuery(unsafeSQL: "INSERT INTO \(table) (key, status) VALUES ($1, 'started') ON CONFLICT DO NOTHING RETURNING key",
                                   binds: Self.binds(key))
        var completionBinds = Self.binds(key)
        completionBinds.append(ByteBuffer(bytes: receipt))
        let update = PostgresQuery(unsafeSQL: "UPDATE \(table) SET status = 'done', receipt = $2, completed_at = now() WHERE key = $1 AND status = 'started'",
                                   binds: completionBinds)
        let logger = self.logger
        try await client.withConnection { connection in
            let claimed = try await connection.query(insert, logger: logger)
            var rows = 0
            for try await _ in claimed { rows += 1 }
            guard rows == 1 else { throw BenchError("hand-written pattern: \(key) was not fresh") }
            // The effect would run here.
            _ = try await connection.query(update, logger: logger)
        }
    }

    private static func binds(_ key: String) -> PostgresBindings {
        var binds = PostgresBindings()
        binds.append(key)
        return binds
    }

    /// The number of rows marked done (a check that every counted call completed).
    func doneCount() async throws -> Int {
        let rows = try await client.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table) WHERE status = 'done'"),
                                          logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    func drop() async throws {
        _ = try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(table)"), logger: logger)
    }

    func shutdown() { runTask.cancel() }
}

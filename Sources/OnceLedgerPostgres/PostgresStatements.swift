import Logging
import PostgresNIO

/// The statements of the hot path, prepared once per connection (postgres-nio parses and
/// plans them on a connection's first use and binds only the values afterwards: about a
/// fifth less server work per call than sending the text each time). They name the
/// procedures unqualified: every connection of a store's pool searches the store's schema
/// (`search_path`, set at connection startup by `ConnectionPool`).

/// `CALL claim_commit(…)`: a batch of claims, committed before its answer (`Spec/POSTGRES.md` §3.1).
struct ClaimCommitStatement: CommitStatement {
    static let name = "onceledger_claim_commit_v2"
    static let sql = "CALL claim_commit($1, $2, $3, $4, $5, $6, $7, $8)"
    typealias Row = ([Int64], [Int16], [Int16], [Int64], [Int64], [ByteBuffer], [Int64], [ByteBuffer], [Int64])

    var keys: [ByteBuffer]
    var fingerprints: [ByteBuffer]
    var scopes: [Int16]
    var windows: [Int64]
    var retries: [Bool]
    var times: [Int64]
    var owner: String
    var leaseMilliseconds: Int64

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 8)
        bindings.append(keys)
        bindings.append(fingerprints)
        bindings.append(scopes)
        bindings.append(windows)
        bindings.append(retries)
        bindings.append(times)
        bindings.append(owner)
        bindings.append(leaseMilliseconds)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }

    func text(schema: String) -> PostgresQuery {
        "CALL \(unescaped: "\"\(schema)\"").claim_commit(\(keys), \(fingerprints), \(scopes), \(windows), \(retries), \(times), \(owner), \(leaseMilliseconds))"
    }
}

/// `CALL settle_commit(…)`: a batch of completions, releases and abandons, committed before
/// its answer (`Spec/POSTGRES.md` §3.2).
struct SettleCommitStatement: CommitStatement {
    static let name = "onceledger_settle_commit_v2"
    static let sql = "CALL settle_commit($1, $2, $3, $4, $5, $6, $7)"
    typealias Row = ([Int64], [Bool], [Int16], [Int64], [Int64], [ByteBuffer], [Int64], [ByteBuffer])

    var acts: [Int16]
    var keys: [ByteBuffer]
    var attempts: [Int64]
    var fences: [Int64]
    var receipts: [ByteBuffer]
    var times: [Int64]
    var reasons: [String]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 7)
        bindings.append(acts)
        bindings.append(keys)
        bindings.append(attempts)
        bindings.append(fences)
        bindings.append(receipts)
        bindings.append(times)
        bindings.append(reasons)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }

    func text(schema: String) -> PostgresQuery {
        "CALL \(unescaped: "\"\(schema)\"").settle_commit(\(acts), \(keys), \(attempts), \(fences), \(receipts), \(times), \(reasons))"
    }
}

/// `CALL memo_put_batch_commit(…)`: a batch of memo puts (journal steps among them),
/// committed before its answer (`Spec/POSTGRES.md` §3.5).
struct MemoPutBatchStatement: CommitStatement {
    static let name = "onceledger_memo_put_batch_commit_v3"
    static let sql = "CALL memo_put_batch_commit($1, $2, $3, $4, $5, $6, $7, $8)"
    typealias Row = [Bool]

    var namespaces: [ByteBuffer]
    var runs: [ByteBuffer]
    var generations: [Int64]
    var steps: [ByteBuffer]
    var names: [ByteBuffer]
    /// Empty: the put has no input digest.
    var digests: [ByteBuffer]
    var times: [Int64]
    var values: [ByteBuffer]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 8)
        bindings.append(namespaces)
        bindings.append(runs)
        bindings.append(generations)
        bindings.append(steps)
        bindings.append(names)
        bindings.append(digests)
        bindings.append(times)
        bindings.append(values)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }

    func text(schema: String) -> PostgresQuery {
        "CALL \(unescaped: "\"\(schema)\"").memo_put_batch_commit(\(namespaces), \(runs), \(generations), \(steps), \(names), \(digests), \(times), \(values))"
    }
}

/// A hot-path statement that can also be sent as text naming the schema
/// (`Configuration.preparedStatements` off).
protocol CommitStatement: PostgresPreparedStatement {
    func text(schema: String) -> PostgresQuery
}

extension CommitStatement {
    /// The statement's rows: prepared on `connection`, or sent as text naming `schema`;
    /// decoded the same way (`decodeRow`) either way.
    func rows(on connection: PostgresConnection, prepared: Bool, schema: String, logger: Logger) async throws -> [Row] {
        if prepared { return try await connection.execute(self, logger: logger).all() }
        var rows: [Row] = []
        for try await row in try await connection.query(text(schema: schema), logger: logger) {
            rows.append(try decodeRow(row))
        }
        return rows
    }
}

extension AsyncSequence {
    /// Every element, in order (the rows of a statement; an error the server sends with
    /// them is thrown here).
    func all() async throws -> [Element] {
        var elements: [Element] = []
        for try await element in self { elements.append(element) }
        return elements
    }
}

import OnceLedger
import OnceLedgerPostgres

/// `Ledger.once` calls per second on a `PostgresStore` (the T19/T20 rows): `callers`
/// concurrent tasks, each calling `once` with a fresh key and a no-op effect that returns a
/// tiny receipt. Every call is a claim (its intent durable before the effect) and a
/// completion (durable before `once` returns); the store batches concurrent callers' claims
/// and completions (group commit). The store keeps its own schema, dropped at the end.
final class PostgresOnce: Sendable {
    let ledger: Ledger
    let store: PostgresStore
    let receipt: [UInt8]

    private init(ledger: Ledger, store: PostgresStore, receipt: [UInt8]) {
        self.ledger = ledger
        self.store = store
        self.receipt = receipt
    }

    /// A store on schema `schema` (dropped first if it exists, so the run starts empty)
    /// with a pool of `connections`.
    static func open(url: String, schema: String, connections: Int, receipt: [UInt8]) async throws -> PostgresOnce {
        try await PostgresBench.dropSchema(url: url, schema: schema)
        let store = try await PostgresStore.connect(url: url, schema: schema, connections: connections)
        return PostgresOnce(ledger: Ledger(store: store), store: store, receipt: receipt)
    }

    func run(callers: Int, seconds: Double, keyPrefix: String) async throws -> BenchResults.Rate {
        let ledger = self.ledger
        let receipt = self.receipt
        return try await CallRate.measure(callers: callers, seconds: seconds) { caller, serial in
            let key = PostgresBench.key(keyPrefix, caller, serial)
            let outcome = try await ledger.once(IdempotencyKey(key), as: [UInt8].self) { _ in receipt }
            guard outcome.wasPerformed else { throw BenchError("once(\"\(key)\") on PostgreSQL was not performed: the key was not fresh") }
        }
    }

    /// Closes the store and drops its schema.
    func closeAndDrop() async throws {
        try ledger.close()
        try await PostgresBench.dropSchema(url: store.configuration.url, schema: store.configuration.schema)
    }
}

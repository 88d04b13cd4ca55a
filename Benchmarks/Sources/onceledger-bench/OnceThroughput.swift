import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// Durable `Ledger.once` calls per second on the file store: `callers`
/// concurrent tasks, each calling `once` with a fresh key and a no-op effect that
/// returns a tiny receipt, in a loop until the deadline. Every call writes an
/// intent (durable before the effect) and a completion (durable before `once`
/// returns): two commit batches. The ledger stays open across rounds, so its
/// state grows by the keys of every round (a few hundred thousand at most).
final class OnceThroughput: Sendable {
    let ledger: Ledger
    let store: FileStore
    let receipt: [UInt8]

    private init(ledger: Ledger, store: FileStore, receipt: [UInt8]) {
        self.ledger = ledger
        self.store = store
        self.receipt = receipt
    }

    /// `Ledger.open(directory:configuration:)`, spelled out so the bench can read
    /// the engine's batch statistics.
    static func open(directory: String, configuration: LogConfiguration, receipt: [UInt8]) async throws
        -> OnceThroughput
    {
        try await BlockingThread.run {
            let store = try FileStore(directory: directory, configuration: configuration)
            return OnceThroughput(ledger: Ledger(store: store), store: store, receipt: receipt)
        }
    }

    func close() async throws {
        let ledger = self.ledger
        try await BlockingThread.run { try ledger.close() }
    }

    /// Keys are `<keyPrefix>c<caller>-<n>` (warm-up: `<keyPrefix>c<caller>w`), so a
    /// distinct `keyPrefix` per round keeps every key fresh.
    /// With `onLedgerExecutor`, the callers' tasks run on `ledger.executor` (a
    /// diagnostic: no thread wake-up per commit).
    func run(callers: Int, seconds: Double, keyPrefix: String, onLedgerExecutor: Bool = false) async throws
        -> BenchResults.EngineRate
    {
        let ledger = self.ledger
        let receipt = self.receipt
        guard let engine = store.engine else { throw BenchError("the bench ledger is not open") }
        @Sendable func once(_ key: String) async throws {
            let outcome = try await ledger.once(IdempotencyKey(key), as: [UInt8].self) { _ in receipt }
            guard outcome.wasPerformed else { throw BenchError("once(\"\(key)\") was not performed: the key was not fresh") }
        }
        return try await EngineThroughput.measure(
            engine: engine, callers: callers, seconds: seconds, on: onLedgerExecutor ? ledger.executor : nil
        ) { caller, serial in
            try await once(serial.map { "\(keyPrefix)c\(caller)-\($0)" } ?? "\(keyPrefix)c\(caller)w")
        }
    }
}

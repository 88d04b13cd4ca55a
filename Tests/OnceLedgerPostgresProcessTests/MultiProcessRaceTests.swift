// Proves that several OS processes on one PostgreSQL ledger run each effect exactly once
// overall: N worker processes (`onceledger-postgres-worker`, each its own `PostgresStore` and
// `Ledger`, several tasks each) call `once` on the same keys at once; every execution is
// appended and fsync'd to a shared file before the effect returns. Afterwards each key was
// executed exactly once, every worker got a result for every key (the performer its own,
// the others "already done" with the performer's receipt), and the store holds that receipt.
// Workers: ONCELEDGER_MP_WORKERS (default 4); keys: ONCELEDGER_MP_KEYS (default 60).
import Foundation
import OnceLedger
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport
import Testing

@Suite(.serialized, .enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct MultiProcessRaceTests {
    static let environment = ProcessInfo.processInfo.environment
    static let workers = max(2, Int(environment["ONCELEDGER_MP_WORKERS"] ?? "") ?? 4)
    static let keyCount = max(1, Int(environment["ONCELEDGER_MP_KEYS"] ?? "") ?? 60)

    @Test func processesRacingOnTheSameKeysRunEachEffectOnce() async throws {
        let server = try ProcessTestSupport.server()
        let schema = ProcessTestSupport.schema("race")
        let scratch = try ScratchDirectory("race")
        defer { scratch.remove() }
        // The schema exists before the workers start, so they race on claims, not on creating it.
        try await ProcessTestSupport.store(server.url, schema: schema).close()

        let keys = (0..<Self.keyCount).map { "order-\($0)" }
        // Each worker walks the keys from a different starting point, so pairs of workers
        // meet on keys at every stage of a call (claiming, running, completing).
        let workers = try (0..<Self.workers).map { index in
            let shift = index * Self.keyCount / Self.workers
            let order = Array(keys[shift...] + keys[..<shift])
            return try WorkerProcess(name: "w\(index)", ProcessTestSupport.workerArguments(
                url: server.url, schema: schema, effects: scratch.effects, keys: order) + ["--concurrency", "4"])
        }
        defer { for worker in workers { worker.terminate() } }
        for worker in workers {
            let output = worker.waitForExit()
            #expect(output.status == 0 && output.signal == nil && output.lines.last == "finished", "\(worker.transcript)")
            // No call failed (a failure's line says which key, which code and why).
            let failures = output.lines.filter { $0.hasPrefix("error ") }
            #expect(failures.isEmpty, "\(worker.name): \(failures.prefix(5))")
        }

        // Each effect ran once overall.
        let executions = EffectExecution.read(scratch.effects)
        let byKey = Dictionary(grouping: executions, by: \.key)
        for key in keys {
            #expect(byKey[key]?.count == 1, "\(key) ran \(byKey[key]?.count ?? 0) times: \(byKey[key] ?? [])")
        }
        #expect(executions.count == keys.count)

        // Every worker got the outcome of every key: the performer's receipt.
        let store = try await ProcessTestSupport.store(server.url, schema: schema)
        for key in keys {
            guard let performer = byKey[key]?.first?.worker else { continue }
            for worker in workers {
                let outcome = worker.outcomes[key]
                #expect(outcome?.receipt == performer, "\(worker.name) got \(String(describing: outcome)) for \(key), performed by \(performer)")
                #expect(outcome?.performed == (worker.name == performer), "\(worker.name), \(key)")
            }
            let entry = try await store.entry(key)
            #expect(entry?.status == .done && entry?.receipt == ProcessTestSupport.receipt(performer), "\(key): \(String(describing: entry))")
        }
        for worker in workers {
            #expect(worker.errors.isEmpty, "\(worker.name) got errors: \(worker.errors)")
        }
        try store.close()
        await ProcessTestSupport.dropSchema(server.url, schema: schema)
    }
}

import Foundation
import OnceLedger
import OnceLedgerPostgres
import OnceLedgerPostgresTestSupport

/// `--postgres-memo`: memo puts on `PostgresStore` with `callers` concurrent runs (each caller
/// its own run, a fresh name per put, a 100-byte value), group-committed as the store does by
/// default (`memo_put_batch_commit`, one batch on the wire at a time), against the same store
/// sending one put per statement with `connections − 1` statements on the wire at once (the
/// shape memo puts had before schema version 3: a transaction per put). No target: it shows
/// what batching memo puts and journal steps buys. The rows alternate in rounds; the ratio is
/// the median of the per-round ratios.
enum PostgresMemoBench {
    struct Result: Sendable {
        var server = ""
        var settings = PostgresBench.Settings()
        var callers = 0
        var connections = 0
        var batched: [Double] = []
        var single: [Double] = []
    }

    static func run(url: String?, rounds: Int, seconds: Double, callers: Int, connections: Int,
                    progress: Progress) async throws -> Result {
        var result = Result()
        result.callers = callers
        result.connections = connections
        let (server, serverURL, description) = try await PostgresBench.server(url: url, progress: progress)
        result.server = description
        defer { server?.stop() }
        result.settings = try await PostgresBench.settings(try PostgresURL(serverURL))
        let tag = "bench_\(getpid())"
        func open(_ schema: String, single: Bool) async throws -> Ledger {
            try await PostgresBench.dropSchema(url: serverURL, schema: schema)
            var configuration = PostgresStore.Configuration(url: try PostgresURL(serverURL), schema: schema,
                                                            connections: connections)
            if single {
                configuration.batchMax = 1
                configuration.batchesInFlight = connections - 1
            }
            return Ledger(store: try await PostgresStore.connect(configuration: configuration))
        }
        let batched = try await open("\(tag)_memo_batched", single: false)
        let single = try await open("\(tag)_memo_single", single: true)
        let value = [UInt8](repeating: 0x5a, count: 100)
        func rate(_ ledger: Ledger, round: Int, slot: Double) async throws -> Double {
            var memos: [Memo] = []
            for caller in 0..<callers { memos.append(try await ledger.memo(run: "r\(round)-c\(caller)", step: "s")) }
            let bound = memos
            return try await CallRate.measure(callers: callers, seconds: slot) { caller, serial in
                try await bound[caller].put(serial.map { "n\($0)" } ?? "warm", bytes: value)
            }.perSecond
        }
        let slot = seconds / Double(rounds)
        var failure: (any Error)?
        do {
            for round in 1...rounds {
                for row in round % 2 == 0 ? [0, 1] : [1, 0] {
                    progress.say("postgres memo round \(round)/\(rounds): \(row == 0 ? "batched" : "one put per statement")")
                    if row == 0 {
                        result.batched.append(try await rate(batched, round: round, slot: slot))
                    } else {
                        result.single.append(try await rate(single, round: round, slot: slot))
                    }
                }
            }
        } catch {
            failure = error
        }
        for (ledger, schema) in [(batched, "\(tag)_memo_batched"), (single, "\(tag)_memo_single")] {
            try? ledger.close()
            try? await PostgresBench.dropSchema(url: serverURL, schema: schema)
        }
        if let failure { throw failure }
        return result
    }

    static func render(_ result: Result) -> String {
        let ratio = PostgresBench.median(zip(result.batched, result.single).map { $0 / $1 })
        let many = "\(result.callers) runs over \(result.connections) connections"
        var table = TextTable(["PostgreSQL memo put (no target)", "median puts/s", "median ratio"])
        table.add(["one put per statement, \(result.connections - 1) on the wire, \(many)",
                   Format.rate(PostgresBench.median(result.single)), "1.00"])
        table.add(["group-committed (the store's default), \(many)", Format.rate(PostgresBench.median(result.batched)),
                   Format.fixed(ratio, 2)])
        var perRound = TextTable(["round", "one per statement/s", "batched/s"])
        for index in result.batched.indices where index < result.single.count {
            perRound.add(["\(index + 1)", Format.rate(result.single[index]), Format.rate(result.batched[index])])
        }
        return """
            server: PostgreSQL \(result.settings.version), \(result.server)
            settings: \(result.settings.summary)
            \(table.render())
            \(perRound.render())
            (a put: Memo.put of a 100-byte value under a fresh name, each caller in a run of its own)
            """
    }
}

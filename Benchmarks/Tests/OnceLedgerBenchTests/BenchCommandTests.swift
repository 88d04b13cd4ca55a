// Proves `onceledger-bench` runs end to end on a tiny workload and reports every part:
// the rate rows with their per-commit breakdown (and the diagnostic rows: a raw O_DIRECT
// loop, the engine through appendAndWait and on a SpinningExecutor), the exactly-once rows, recovery and open
// times, and the target table (text), and the same numbers as JSON; the PostgreSQL rows
// (`--postgres`, on a throw-away cluster) with the server's settings. Nothing here looks at
// how fast anything was (CI machines are shared); only that each part was measured (the memo and
// journal sections too).
import Foundation
import OnceLedgerPostgresTestSupport
import Testing
@testable import onceledger_bench

@Suite struct BenchCommandTests {
    static let tiny = ["--seconds", "0.5", "--rounds", "1", "--records", "2000", "--open-records", "2000",
                       "--ledger-entries", "2000", "--appenders", "4"]

    static func scratch(_ name: String = #function) throws -> String {
        let path = FileManager.default.temporaryDirectory.path + "/onceledger-bench-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func tableHasEverySection() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try Bench.run(["--dir", directory] + Self.tiny)
        #expect(result.exitCode == 0, "stderr: \(result.stderr)")
        for heading in ["durable writes", "one caller, per commit (µs)", "exactly once (no-op effect, fresh key)",
                        "memory per done entry", "open 2.0 k done entries", "recovery", "target", "total "] {
            #expect(result.stdout.contains(heading), "missing \"\(heading)\"")
        }
        for row in ["raw pwrite+fdatasync loop", "raw O_DIRECT pwritev2(4 KiB, RWF_DSYNC) (diagnostic)",
                    "engine, async append", "Ledger.once (2 commits per once)",
                    "engine, 1 appender (on a SpinningExecutor, diagnostic)", "engine, on a SpinningExecutor",
                    "Ledger.once, 1 caller on ledger.executor (diagnostic)", "Ledger.once on ledger.executor",
                    "engine, 1 appender ÷ raw O_DIRECT loop", "once, 1 caller ÷ (raw loop ÷ 2)",
                    "open from snapshot ÷ from segments, cold", "time and cpu: the median of 3 opens each"] {
            #expect(result.stdout.contains(row), "missing row \"\(row)\"")
        }
        // The scratch directory is removed unless --keep.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    @Test func jsonCarriesTheBatchTimings() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try Bench.run(["--dir", directory, "--json", "--skip-ledger"] + Self.tiny)
        #expect(result.exitCode == 0, "stderr: \(result.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let root = try #require(object)
        let engine1 = try #require(root["engine1"] as? [String: Any])
        let timings = try #require(engine1["timings"] as? [String: Any])
        let batches = try #require(timings["batches"] as? Int)
        #expect(batches > 0, "one appender commits one batch per append")
        #expect((timings["commitNanoseconds"] as? Int ?? 0) > 0)
        // Timings are published when the I/O thread looks for its next batch, so at either
        // end of the window they may trail the statistics by one batch.
        let counted = try #require(engine1["batches"] as? Int)
        #expect(abs(counted - batches) <= 1, "the timings cover the same batches as the statistics")
        // The diagnostic rows: the raw loop with O_DIRECT, the engine on a SpinningExecutor.
        let rawDirect = try #require(root["rawDirectLoop"] as? [String: Any])
        #expect((rawDirect["operations"] as? Int ?? 0) > 0)
        let ratios = try #require(root["ratios"] as? [String: Any])
        #expect((ratios["engine1VersusRawDirect"] as? Double ?? 0) > 0)
        let onExecutor = try #require(root["engine1Executor"] as? [String: Any])
        #expect((onExecutor["batches"] as? Int ?? 0) > 0)
        #expect((ratios["engine1ExecutorVersusRaw"] as? Double ?? 0) > 0)
        let targets = try #require(root["targets"] as? [[String: Any]])
        #expect(!targets.isEmpty)
        #expect(targets.allSatisfy { $0["met"] is Bool })
        #expect(root["exactlyOnce"] == nil || root["exactlyOnce"] is NSNull, "--skip-ledger leaves out the ledger part")
    }

    /// The rate rows' order per round is balanced: within one period of rounds every row
    /// runs once in every position and right after every other row equally often
    /// (a rotation would keep who follows whom).
    @Test(arguments: [1, 2, 3, 5, 8, 9, 12, 13, 14])
    func roundOrderIsBalanced(count: Int) {
        let period = count % 2 == 0 ? count : 2 * count
        var follows: [[Int]: Int] = [:]
        var positions = Set<[Int]>()
        for round in 1...period {
            let order = BenchCommand.roundOrder(round: round, count: count)
            #expect(order.sorted() == Array(0..<count), "round \(round) is not a permutation: \(order)")
            for (position, measurement) in order.enumerated() { positions.insert([position, measurement]) }
            for (before, after) in zip(order, order.dropFirst()) { follows[[before, after], default: 0] += 1 }
        }
        #expect(positions.count == count * count, "every row in every position")
        #expect(follows.count == count * (count - 1), "every ordered pair adjacent")
        #expect(Set(follows.values) == (count == 1 ? [] : [period / count]))
        // The period repeats.
        #expect(BenchCommand.roundOrder(round: period + 1, count: count) == BenchCommand.roundOrder(round: 1, count: count))
    }

    /// The one median the bench's ratios use.
    @Test func medianOfOddEvenAndNone() {
        #expect(BenchResults.median([]) == nil)
        #expect(BenchResults.median([0.9]) == 0.9)
        #expect(BenchResults.median([3, 1, 2]) == 2)
        #expect(BenchResults.median([4, 1, 3, 2]) == 2.5)
    }
}

@Suite struct MemoBenchTests {
    /// `--memo` on a tiny workload prints every memo row (T14–T18) and removes its scratch directory.
    @Test func memoSectionHasEveryRow() throws {
        let directory = try BenchCommandTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try Bench.run(["--dir", directory, "--memo", "--seconds", "0.3", "--memo-rounds", "1",
                                    "--memo-entries", "1500", "--memo-runs", "100", "--appenders", "4"])
        #expect(result.exitCode == 0, "stderr: \(result.stderr)")
        for row in ["Memo (T14–T18)", "raw pwrite+fdatasync loop", "T14 put 100 B, 1 caller", "T15 put 100 B, 4 callers",
                    "T16 get 4 KiB, 1 task, warm", "segments, warm", "snapshot, warm",
                    "T18 sweep of 100 ended runs (100 values)", "CPU µs/put", "records/batch"] {
            #expect(result.stdout.contains(row), "missing \"\(row)\"")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    /// `--memo-rows hit --memo-hits N` runs only T16, both paths, a fixed count of gets each.
    @Test func memoRowsPickRowsAndMemoHitsFixesTheCount() throws {
        let directory = try BenchCommandTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try Bench.run(["--dir", directory, "--memo", "--memo-rows", "hit", "--memo-hits", "300"])
        #expect(result.exitCode == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("T16 get 4 KiB, 1 task, warm"))
        #expect(result.stdout.contains("T16 get 4 KiB Codable, 1 task, warm"))
        #expect(result.stdout.contains("(T16 gets: 300 bytes, 300 Codable)"))
        for row in ["raw pwrite+fdatasync loop", "T14 put", "segments, warm", "T18 sweep"] {
            #expect(!result.stdout.contains(row), "\(row) was not asked for")
        }
        let bad = try Bench.run(["--dir", directory, "--memo", "--memo-rows", "hits"])
        #expect(bad.exitCode != 0)
    }
}

@Suite(.enabled(if: PostgresTestServer.shouldRun, Comment(rawValue: PostgresTestServer.skipReason)))
struct PostgresBenchTests {
    /// `--postgres` on a tiny workload (a throw-away cluster, or the server of
    /// ONCELEDGER_POSTGRES_URL) prints the server's settings and every row of T19–T20, each
    /// measured (a rate above zero).
    @Test func postgresSectionHasEveryRowAndTheServerSettings() throws {
        var arguments = ["--postgres", "--seconds", "0.4", "--postgres-rounds", "1", "--appenders", "4",
                         "--postgres-connections", "2"]
        if let url = ProcessInfo.processInfo.environment["ONCELEDGER_POSTGRES_URL"], !url.isEmpty {
            arguments += ["--postgres-url", url]
        }
        let result = try Bench.run(arguments)
        #expect(result.exitCode == 0, "stderr: \(result.stderr)")
        for text in ["PostgreSQL (T19–T20)", "server: PostgreSQL ", "fsync=", "synchronous_commit=", "wal_sync_method=",
                     "shared_buffers=", "commit_delay="] {
            #expect(result.stdout.contains(text), "missing \"\(text)\"")
        }
        for row in ["hand-written idempotency table, 1 caller", "T19 Ledger.once on PostgresStore, 1 caller",
                    "hand-written idempotency table, 4 callers over 2 connections",
                    "T20 Ledger.once on PostgresStore, 4 callers over 2 connections"] {
            let line = result.stdout.split(separator: "\n").first { $0.hasPrefix(row) }
            #expect(line != nil, "missing row \"\(row)\"")
            // The rate column: a number above zero (every row was measured).
            let rate = line.flatMap { $0.dropFirst(row.count).split(separator: " ").first }
                .flatMap { Int($0.replacingOccurrences(of: ",", with: "")) }
            #expect((rate ?? 0) > 0, "row \"\(row)\" has no rate: \(line ?? "")")
        }
    }
}

@Suite struct JournalBenchTests {
    /// `--journal` on a tiny workload prints every journal row (J1–J4) and removes its scratch directory.
    @Test func journalSectionHasEveryRow() throws {
        let directory = try BenchCommandTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try Bench.run(["--dir", directory, "--journal", "--seconds", "0.3", "--memo-rounds", "1",
                                    "--journal-replay-steps", "300", "--journal-runs", "3", "--appenders", "4"])
        #expect(result.exitCode == 0, "stderr: \(result.stderr)")
        for row in ["Journal (J1–J4)", "raw pwrite+fdatasync loop", "J1 record a step, 1 run",
                    "J2 record a step, 4 runs at once", "J3 replay 300 steps, warm", "segments, warm", "snapshot, warm",
                    "CPU µs/step", "records/batch"] {
            #expect(result.stdout.contains(row), "missing \"\(row)\"")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }
}

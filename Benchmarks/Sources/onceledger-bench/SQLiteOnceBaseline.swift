import Glibc
import CSQLite

/// What a user would build on SQLite instead of `Ledger.once`: WAL mode,
/// `PRAGMA synchronous=FULL`, and per effect TWO transactions, like the ledger's
/// two syncs: INSERT the intent row (the primary key refuses a duplicate), COMMIT;
/// run the effect (a no-op here); UPDATE the row to done with its receipt, COMMIT.
/// Connections, threads and the busy handler are `SQLiteBaseline`'s.
enum SQLiteOnceBaseline {
    static let description =
        "INSERT intent row, COMMIT; UPDATE to done with receipt, COMMIT (autocommit, TEXT PRIMARY KEY)"

    /// Creates the database (WAL mode is persistent) and returns its path.
    static func prepare(directory: String) async throws -> String {
        let path = directory + "/once.sqlite"
        try await BlockingThread.run {
            let db = try SQLiteBaseline.Connection(path: path)
            try db.execute("PRAGMA journal_mode=WAL")
            try db.execute("""
                CREATE TABLE IF NOT EXISTS once_entries(
                    key TEXT PRIMARY KEY, status INTEGER NOT NULL, attempt INTEGER NOT NULL,
                    time INTEGER NOT NULL, receipt BLOB)
                """)
        }
        return path
    }

    /// Keys are `<keyPrefix>c<writer>-<n>`, as in `OnceThroughput`.
    static func run(path: String, writers: Int, receipt: [UInt8], keyPrefix: String, seconds: Double) async throws
        -> BenchResults.SQLiteRate
    {
        let start = MonotonicClock.deadline(afterSeconds: 0.1)
        let deadline = start + UInt64(seconds * 1e9)
        let counts = try await BlockingThread.runAll(count: writers, name: "sqlite-once") { writer in
            let db = try SQLiteBaseline.Connection(path: path, giveUpAfter: deadline)
            try db.execute("PRAGMA synchronous=FULL")
            let insert = try db.prepare("INSERT INTO once_entries(key, status, attempt, time) VALUES (?1, 1, 1, ?2)")
            defer { sqlite3_finalize(insert) }
            let update = try db.prepare(
                "UPDATE once_entries SET status = 2, time = ?2, receipt = ?3 WHERE key = ?1 AND status = 1")
            defer { sqlite3_finalize(update) }
            let prefix = "\(keyPrefix)c\(writer)-"
            while MonotonicClock.nanoseconds() < start { usleep(1000) }
            var done = 0
            var busy = 0
            var serial = 0
            /// Steps `statement` until it is done; false if the window closed first.
            func commit(_ statement: OpaquePointer, key: UnsafePointer<CChar>) throws -> Bool {
                while true {
                    let code = receipt.withUnsafeBytes { raw -> Int32 in
                        sqlite3_bind_text(statement, 1, key, -1, nil)
                        sqlite3_bind_int64(statement, 2, Int64(MonotonicClock.nanoseconds() / 1_000_000))
                        if statement == update {
                            sqlite3_bind_blob(statement, 3, raw.baseAddress, Int32(raw.count), nil)
                        }
                        let code = sqlite3_step(statement)
                        sqlite3_reset(statement)
                        sqlite3_clear_bindings(statement)
                        return code
                    }
                    if code == SQLITE_DONE { return true }
                    guard code == SQLITE_BUSY || code == SQLITE_LOCKED else {
                        throw BenchError("sqlite once failed: \(db.message)")
                    }
                    guard MonotonicClock.nanoseconds() < deadline else { return false }
                    busy += 1
                }
            }
            while MonotonicClock.nanoseconds() < deadline {
                let key = prefix + String(serial)
                serial += 1
                let finished = try key.withCString { key in
                    guard try commit(insert, key: key) else { return false }
                    guard try commit(update, key: key) else { return false }
                    guard sqlite3_changes(db.handle) == 1 else {
                        throw BenchError("sqlite once: the UPDATE to done changed \(sqlite3_changes(db.handle)) rows")
                    }
                    return true
                }
                if finished && MonotonicClock.nanoseconds() <= deadline { done += 1 }
            }
            return (done, busy)
        }
        return BenchResults.SQLiteRate(
            rate: .init(operations: counts.reduce(0) { $0 + $1.0 }, seconds: Double(deadline - start) / 1e9),
            writers: writers, busyRetries: counts.reduce(0) { $0 + $1.1 })
    }
}

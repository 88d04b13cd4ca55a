import Glibc
import CSQLite

/// The embedded store a user would otherwise pick: SQLite in WAL mode with
/// `PRAGMA synchronous=FULL`, one INSERT of a record-sized blob per transaction
/// (autocommit), so every acknowledged row is durable like an engine append.
///
/// Concurrent writers are `writers` OS threads, each with its own connection and
/// a busy timeout (the realistic setup; SQLite allows one writer at a time and
/// has no group commit, so they queue on its write lock). The busy handler is
/// SQLite's default schedule, re-implemented only so that it gives up when the
/// measurement window closes. Blocking: every connection runs on its own thread.
enum SQLiteBaseline {
    static let busyTimeoutMilliseconds: Int32 = 10_000
    static let writersDescription =
        "WAL, synchronous=FULL, autocommit INSERT; one connection per writer thread, SQLite's busy-timeout schedule (\(busyTimeoutMilliseconds / 1000) s)"

    /// Creates the database (WAL mode is persistent) and returns its path.
    static func prepare(directory: String) async throws -> String {
        let path = directory + "/baseline.sqlite"
        try await BlockingThread.run {
            let db = try Connection(path: path)
            try db.execute("PRAGMA journal_mode=WAL")
            try db.execute("CREATE TABLE IF NOT EXISTS entries(id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        }
        return path
    }

    static func run(path: String, writers: Int, body: [UInt8], seconds: Double) async throws
        -> BenchResults.SQLiteRate
    {
        // Every writer opens its connection first; the window starts a moment later
        // and only rows committed inside it count.
        let start = MonotonicClock.deadline(afterSeconds: 0.1)
        let deadline = start + UInt64(seconds * 1e9)
        let counts = try await BlockingThread.runAll(count: writers, name: "sqlite-writer") { _ in
            let db = try Connection(path: path, giveUpAfter: deadline)
            try db.execute("PRAGMA synchronous=FULL")
            let insert = try db.prepare("INSERT INTO entries(body) VALUES (?1)")
            defer { sqlite3_finalize(insert) }
            while MonotonicClock.nanoseconds() < start { usleep(1000) }
            var rows = 0
            var busy = 0
            while MonotonicClock.nanoseconds() < deadline {
                let code = body.withUnsafeBytes { raw -> Int32 in
                    sqlite3_bind_blob(insert, 1, raw.baseAddress, Int32(raw.count), nil)
                    let code = sqlite3_step(insert)
                    sqlite3_reset(insert)
                    return code
                }
                if code == SQLITE_DONE {
                    if MonotonicClock.nanoseconds() <= deadline { rows += 1 }
                } else if code == SQLITE_BUSY || code == SQLITE_LOCKED {
                    if MonotonicClock.nanoseconds() < deadline { busy += 1 }
                } else {
                    throw BenchError("sqlite insert failed: \(db.message)")
                }
            }
            return (rows, busy)
        }
        return BenchResults.SQLiteRate(
            rate: .init(operations: counts.reduce(0) { $0 + $1.0 }, seconds: Double(deadline - start) / 1e9),
            writers: writers, busyRetries: counts.reduce(0) { $0 + $1.1 })
    }

    /// SQLite's own busy handler (`sqlite3_busy_timeout`, sqliteDefaultBusyCallback:
    /// sleep 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, then 100 ms, up to the
    /// timeout), except that it gives up once the measurement window is over, so
    /// 64 writers asleep in it do not stretch the benchmark.
    static let busyHandler: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Int32 = { argument, count in
        let giveUpAfter = argument!.load(as: UInt64.self)
        if MonotonicClock.nanoseconds() >= giveUpAfter { return 0 }
        let delays: [Int32] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100]
        let index = Int(min(count, Int32(delays.count - 1)))
        var prior: Int32 = 0
        for step in 0..<index { prior += delays[step] }
        if count >= Int32(delays.count) { prior += (count - Int32(delays.count) + 1) * 100 }
        if prior >= SQLiteBaseline.busyTimeoutMilliseconds { return 0 }
        usleep(useconds_t(delays[index]) * 1000)
        return 1
    }

    /// One sqlite3 connection, used by one thread.
    final class Connection {
        let handle: OpaquePointer
        private let giveUpAfter: UnsafeMutablePointer<UInt64>

        /// With `giveUpAfter` (a `MonotonicClock.nanoseconds()` value), the busy
        /// handler stops waiting then; without it, plain `sqlite3_busy_timeout`.
        init(path: String, giveUpAfter: UInt64 = .max) throws {
            self.giveUpAfter = .allocate(capacity: 1)
            self.giveUpAfter.initialize(to: giveUpAfter)
            var handle: OpaquePointer?
            let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
            guard sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK, let handle else {
                let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
                sqlite3_close(handle)
                self.giveUpAfter.deallocate()
                throw BenchError("cannot open \(path): \(message)")
            }
            self.handle = handle
            if giveUpAfter == .max {
                sqlite3_busy_timeout(handle, SQLiteBaseline.busyTimeoutMilliseconds)
            } else {
                sqlite3_busy_handler(handle, SQLiteBaseline.busyHandler, UnsafeMutableRawPointer(self.giveUpAfter))
            }
        }

        deinit {
            sqlite3_close(handle)
            giveUpAfter.deallocate()
        }

        var message: String { String(cString: sqlite3_errmsg(handle)) }

        func execute(_ sql: String) throws {
            guard sqlite3_exec(handle, sql, nil, nil, nil) == SQLITE_OK else {
                throw BenchError("sqlite: \(sql): \(message)")
            }
        }

        func prepare(_ sql: String) throws -> OpaquePointer {
            var statement: OpaquePointer?
            guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
                throw BenchError("sqlite: \(sql): \(message)")
            }
            return statement
        }
    }
}

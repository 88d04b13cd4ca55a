import Logging
import OnceLedgerFormat
import PostgresNIO
import Synchronization

/// A few connections to one server, opened on demand, each used by one caller at a time.
/// A connection found closed is dropped and replaced by the next caller; a connection that
/// cannot be opened throws at once (mapped: unreachable, authentication, …), never waits.
final class ConnectionPool: Sendable {
    private struct State {
        var idle: [PostgresConnection] = []
        var open = 0
        var waiters: [CheckedContinuation<PostgresConnection?, any Error>] = []
        var closed = false
        var nextID = 0
    }

    let url: PostgresURL
    let maximum: Int
    let logger: Logger
    /// The schema every connection of the pool searches first (`search_path`, set at startup),
    /// so the prepared statements (`PostgresStatements.swift`) name its procedures unqualified.
    let schema: String?
    private let state = Mutex(State())

    init(url: PostgresURL, maximum: Int, logger: Logger, schema: String? = nil) {
        self.url = url
        self.maximum = max(1, maximum)
        self.logger = logger
        self.schema = schema
    }

    private static var closedError: LedgerError { LedgerError(.closed, "the PostgreSQL store is closed") }

    /// Runs `body` on a connection of its own; errors are mapped for `phase`.
    func withConnection<T: Sendable>(_ phase: PostgresErrors.Phase,
                                     _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await acquire()
        do {
            let result = try await body(connection)
            release(connection)
            return result
        } catch {
            release(connection)
            throw PostgresErrors.map(error, phase: phase, url: url)
        }
    }

    /// Runs `body` on a connection of its own inside `BEGIN … COMMIT`, and returns only after
    /// the server answered the `COMMIT`: the rows a single autocommit statement returns reach
    /// the client *before* its implicit commit (the extended protocol commits at `Sync`, after
    /// `CommandComplete`), so a connection lost in between looked like success for a write
    /// that never committed (`Spec/POSTGRES.md` §5). A body that throws is rolled back; a
    /// connection whose `ROLLBACK` fails is closed rather than reused.
    func withTransaction<T: Sendable>(_ phase: PostgresErrors.Phase,
                                      _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await acquire()
        do {
            try await connection.query("BEGIN", logger: logger)
        } catch {
            release(connection)
            throw PostgresErrors.map(error, phase: phase, url: url)
        }
        let result: T
        do {
            result = try await body(connection)
        } catch {
            do {
                try await connection.query("ROLLBACK", logger: logger)
            } catch {
                try? await connection.close()
            }
            release(connection)
            throw PostgresErrors.map(error, phase: phase, url: url)
        }
        do {
            try await connection.query("COMMIT", logger: logger)
        } catch {
            // The outcome is unknown to this client unless the server refused the commit.
            try? await connection.close()
            release(connection)
            throw PostgresErrors.map(error, phase: phase, url: url)
        }
        release(connection)
        return result
    }

    private enum Step { case use(PostgresConnection), connect(Int), wait }

    private func acquire() async throws -> PostgresConnection {
        while true {
            let step: Step = try state.withLock { state in
                if state.closed { throw Self.closedError }
                if let connection = state.idle.popLast() { return .use(connection) }
                if state.open < maximum {
                    state.open += 1
                    state.nextID += 1
                    return .connect(state.nextID)
                }
                return .wait
            }
            switch step {
            case .use(let connection):
                if connection.isClosed {
                    state.withLock { $0.open -= 1 }
                    continue
                }
                return connection
            case .connect(let id):
                do {
                    return try await Self.connect(url: url, id: id, logger: logger, schema: schema)
                } catch {
                    let waiter = state.withLock { state -> CheckedContinuation<PostgresConnection?, any Error>? in
                        state.open -= 1
                        return state.waiters.isEmpty ? nil : state.waiters.removeFirst()
                    }
                    waiter?.resume(returning: nil)
                    throw error
                }
            case .wait:
                let handed = try await withCheckedThrowingContinuation { continuation in
                    let ready: Result<PostgresConnection?, any Error>? = state.withLock { state in
                        if state.closed { return .failure(Self.closedError) }
                        if let connection = state.idle.popLast() { return .success(connection) }
                        if state.open < maximum { return .success(nil) }
                        state.waiters.append(continuation)
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
                if let handed {
                    if handed.isClosed {
                        state.withLock { $0.open -= 1 }
                        continue
                    }
                    return handed
                }
            }
        }
    }

    private func release(_ connection: PostgresConnection) {
        enum Next { case hand(CheckedContinuation<PostgresConnection?, any Error>), wake(CheckedContinuation<PostgresConnection?, any Error>), close, none }
        let next: Next = state.withLock { state in
            if state.closed {
                state.open -= 1
                return .close
            }
            if connection.isClosed {
                state.open -= 1
                // A waiter may open a new connection in its place.
                return state.waiters.isEmpty ? .none : .wake(state.waiters.removeFirst())
            }
            if !state.waiters.isEmpty { return .hand(state.waiters.removeFirst()) }
            state.idle.append(connection)
            return .none
        }
        switch next {
        case .hand(let waiter): waiter.resume(returning: connection)
        case .wake(let waiter): waiter.resume(returning: nil)
        case .close: Self.closeSoon(connection)
        case .none: break
        }
    }

    /// Opens a connection of its own (the listener's), errors mapped as connecting.
    static func connect(url: PostgresURL, id: Int, logger: Logger, schema: String? = nil) async throws -> PostgresConnection {
        do {
            var configuration = try url.connectionConfiguration()
            configuration.options.connectTimeout = .seconds(10)
            // A plain identifier (`PostgresStore.isPlainIdentifier`), so it needs no quoting.
            if let schema { configuration.options.additionalStartupParameters.append(("search_path", schema)) }
            return try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
        } catch {
            throw PostgresErrors.map(error, phase: .connecting, url: url)
        }
    }

    /// Starts closing `connection`, keeping it alive until it is closed (postgres-nio
    /// asserts a connection is closed before it is released).
    static func closeSoon(_ connection: PostgresConnection) {
        let closing: EventLoopFuture<Void> = connection.close()
        closing.whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// Closes every idle connection; connections in use close when they come back.
    func close() {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            let idle = state.idle
            state.open -= idle.count
            state.idle = []
            let waiters = state.waiters
            state.waiters = []
            return (idle, waiters)
        }
        for connection in idle { Self.closeSoon(connection) }
        for waiter in waiters { waiter.resume(throwing: Self.closedError) }
    }
}

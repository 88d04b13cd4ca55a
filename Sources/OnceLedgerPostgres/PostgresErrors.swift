import OnceLedgerFormat
import PostgresNIO

extension LedgerError.Code {
    /// The PostgreSQL server could not be reached (refused, no such host or socket, timed
    /// out): check that it runs and the URL's host, port or socket directory.
    public static let databaseUnreachable = LedgerError.Code("database-unreachable")
    /// The server refused the URL's user or password.
    public static let databaseAuthentication = LedgerError.Code("database-authentication")
    /// The URL's user lacks a permission the store needs (create the schema, write its tables).
    public static let databasePermission = LedgerError.Code("database-permission")
    /// The connection was lost while a change was being committed: its outcome is unknown
    /// to this process. Treat it like a crash: the key stays pending (pending-unknown once
    /// its lease expires), never reported done; reconcile or retry with the same token.
    public static let connectionLost = LedgerError.Code("connection-lost")
    /// Another error reported by the server (the SQLSTATE and its message are in the message).
    public static let databaseError = LedgerError.Code("database-error")
}

/// Turns what postgres-nio throws into `LedgerError`s that say what happened and what to do
/// (`Spec/POSTGRES.md` §7).
enum PostgresErrors {
    /// Where an error happened: connecting (nothing was sent), reading (nothing was
    /// written), or writing (a lost connection leaves the outcome unknown).
    enum Phase {
        case connecting
        case reading(String)
        case writing(String)
    }

    static func map(_ error: any Error, phase: Phase, url: PostgresURL) -> any Error {
        if error is LedgerError || error is CancellationError { return error }
        let target = url.redacted
        if let psql = error as? PSQLError {
            switch psql.code {
            case .server:
                return server(psql, phase: phase, url: url)
            case .authMechanismRequiresPassword:
                return LedgerError(.databaseAuthentication,
                                   "the server at \(target) asks user \"\(url.username)\" for a password and the URL has none: put it in the URL (postgres://USER:PASSWORD@HOST/DATABASE)",
                                   underlyingError: psql)
            case .unsupportedAuthMechanism, .saslError:
                return LedgerError(.databaseAuthentication,
                                   "the server at \(target) asks for an authentication method this client does not support (\(psql.code)); use password, md5 or scram-sha-256 in pg_hba.conf",
                                   underlyingError: psql)
            case .sslUnsupported:
                return LedgerError(.invalidArgument,
                                   "the server at \(target) does not offer TLS and the URL requires it: use sslmode=prefer or sslmode=disable, or enable TLS on the server",
                                   underlyingError: psql)
            case .connectionError, .serverClosedConnection, .uncleanShutdown, .clientClosedConnection,
                 .poolClosed, .queryCancelled:
                return lost(psql, phase: phase, url: url)
            default:
                return LedgerError(.databaseError, "PostgreSQL at \(target): \(psql.code) during \(describe(phase))",
                                   underlyingError: psql)
            }
        }
        // Anything else (swift-nio's connection errors: refused, no such file, timeouts).
        return lost(error, phase: phase, url: url)
    }

    /// Whether `error`, as `map` made it, is a statement the server refused with an error of
    /// its own (not a lost connection): its transaction wrote nothing, so
    /// the requests of a refused batch may be sent again one by one (`GroupCommit`).
    static func refusedByServer(_ error: any Error) -> Bool {
        guard let ledger = error as? LedgerError, ledger.code != .connectionLost,
              let psql = ledger.underlyingError as? PSQLError else { return false }
        return psql.code == .server
    }

    private static func describe(_ phase: Phase) -> String {
        switch phase {
        case .connecting: "connecting"
        case .reading(let what), .writing(let what): what
        }
    }

    private static func lost(_ error: any Error, phase: Phase, url: PostgresURL) -> LedgerError {
        let target = url.redacted
        let boxed: any Error & Sendable = error
        switch phase {
        case .connecting:
            let place = url.socketDirectory.map { "the Unix socket \($0)/.s.PGSQL.\(url.port)" }
                ?? "\(url.host ?? "localhost"):\(url.port)"
            return LedgerError(.databaseUnreachable,
                               "cannot reach the PostgreSQL server at \(place) (\(target)): \(error). Check that the server runs and that the URL's host, port or socket directory is right",
                               underlyingError: boxed)
        case .reading(let what):
            return LedgerError(.connectionLost,
                               "the connection to PostgreSQL at \(target) was lost while \(what); nothing was changed. Call again once the server is reachable",
                               underlyingError: boxed)
        case .writing(let what):
            return LedgerError(.connectionLost,
                               "the connection to PostgreSQL at \(target) was lost while \(what) was being committed: its outcome is unknown to this process. Treat it like a crash: it is never reported done; a claimed key stays pending-unknown once its lease expires, so reconcile it or retry with the same token",
                               underlyingError: boxed)
        }
    }

    private static func server(_ error: PSQLError, phase: Phase, url: PostgresURL) -> any Error {
        let state = error.serverInfo?[.sqlState] ?? ""
        let message = error.serverInfo?[.message] ?? "\(error)"
        let target = url.redacted
        switch state {
        case "28P01", "28000":
            return LedgerError(.databaseAuthentication,
                               "the server at \(target) refused user \"\(url.username)\" (SQLSTATE \(state): \(message)): check the user name and password in the URL, and the server's pg_hba.conf",
                               underlyingError: error)
        case "3D000":
            return LedgerError(.invalidArgument,
                               "the database \"\(url.database ?? url.username)\" does not exist on \(target) (SQLSTATE \(state)): create it (createdb) or name an existing one in the URL",
                               underlyingError: error)
        case "42501":
            return LedgerError(.databasePermission,
                               "user \"\(url.username)\" lacks a permission on \(target) while \(describe(phase)) (SQLSTATE 42501: \(message)): grant it (Spec/POSTGRES.md §6 lists what the store needs), or have an owner run the store once to create the schema",
                               underlyingError: error)
        case "57P01", "57P02", "57P03", "08000", "08003", "08006":
            return lost(error, phase: phase, url: url)
        case "54000":
            // A value too large for an index entry (a btree entry holds at most about a third
            // of a page). Until schema version 4 a memo key's columns together, whose limits the
            // file store allows, got there; version 4 keys a memo value's step and name by
            // their SHA-256, so no key within `FormatLimits` does.
            return LedgerError(.limitExceeded,
                               "PostgreSQL at \(target) cannot store what \(describe(phase)) carries (SQLSTATE 54000: \(message)); nothing was changed by this statement. A value is too large for one of the server's index entries (at most about 2,700 bytes): use shorter names or keys",
                               underlyingError: error)
        case "53300":
            return LedgerError(.databaseUnreachable,
                               "the server at \(target) has no free connection slot (SQLSTATE 53300: \(message)): lower the store's connection count or raise max_connections",
                               underlyingError: error)
        default:
            return LedgerError(.databaseError,
                               "PostgreSQL at \(target) failed while \(describe(phase)) (SQLSTATE \(state): \(message)); nothing was changed by this statement",
                               underlyingError: error)
        }
    }
}

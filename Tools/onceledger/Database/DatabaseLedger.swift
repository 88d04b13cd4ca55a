import ArgumentParser
import Foundation
import Logging
import OnceLedger
import OnceLedgerFormat
import OnceLedgerPostgres
import PostgresNIO

/// Where a command's ledger lives: the argument that names it is a directory (the file
/// store) or a PostgreSQL URL, `postgres://…` or `postgresql://…` (`PostgresStore`; a Unix
/// socket as `?host=/socket/dir`). `pending`, `entries`, `resolve`, `forget`, `runs` and
/// `sweep` take either.
enum LedgerLocation: Equatable {
    case directory(String)
    case database(url: String)

    init(_ argument: String) {
        self = Self.isDatabaseURL(argument) ? .database(url: argument) : .directory(argument)
    }

    static func isDatabaseURL(_ argument: String) -> Bool {
        argument.hasPrefix("postgres://") || argument.hasPrefix("postgresql://")
    }
}

/// The option the database form of a command adds: which schema holds the ledger.
struct DatabaseOptions: ParsableArguments {
    @Option(help: ArgumentHelp("With a PostgreSQL URL: the schema holding the ledger's tables.", valueName: "name"))
    var schema: String = "onceledger"

    /// " --schema NAME" when it is not the default, for the commands a hint suggests.
    var schemaArgument: String { schema == "onceledger" ? "" : " --schema \(schema)" }
}

/// A `Ledger` on the `PostgresStore` of a URL, for the commands that take one. Unlike a
/// library `PostgresStore.connect`, it refuses a database that holds no ledger in the schema
/// (instead of creating one): a mistyped URL or schema name is reported, not turned into an
/// empty ledger. Nothing is locked: other processes keep using the ledger, and every change
/// is decided by the database (fenced like any other client's).
struct DatabaseLedger {
    let ledger: Ledger
    let store: PostgresStore
    /// The URL without its password, for output.
    let display: String

    static func open(_ url: String, schema: String) async throws -> DatabaseLedger {
        let parsed: PostgresURL
        do {
            parsed = try PostgresURL(url)
        } catch let error as LedgerError {
            throw CommandFailure(ExitCodes.usage, CommandFailure.describe(error), code: error.code.rawValue)
        }
        if try await schemaExists(parsed, schema: schema) == false {
            throw CommandFailure(
                LedgerError(.notALedger,
                            "the database at \(parsed.redacted) has no OnceLedger ledger in schema \"\(schema)\": check the URL's database and --schema"),
                hint: "Nothing was created or changed.")
        }
        let store: PostgresStore
        do {
            store = try await PostgresStore.connect(url: url, schema: schema)
        } catch let error as LedgerError {
            throw CommandFailure(error, hint: "Nothing was changed.")
        }
        return DatabaseLedger(ledger: Ledger(store: store), store: store, display: Self.display(url, parsed))
    }

    /// The URL as the operator gave it, or without its password when it has one.
    static func display(_ url: String, _ parsed: PostgresURL) -> String {
        parsed.password == nil ? url : parsed.redacted
    }

    /// Whether `schema` holds a ledger in the URL's database; nil when that cannot be asked (the
    /// server is unreachable, the login fails, …): then `PostgresStore.connect` reports it,
    /// with its typed error.
    static func schemaExists(_ url: PostgresURL, schema: String) async throws -> Bool? {
        var logger = Logger(label: "onceledger.cli.postgres")
        logger.logLevel = .critical
        guard let connection = try? await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 1,
                                                                       logger: logger)
        else { return nil }
        var exists: Bool?
        do {
            // The store's `meta` table (`Spec/POSTGRES.md`) marks a schema holding a ledger.
            let table = "\"\(schema)\".meta"
            let rows = try await connection.query("SELECT to_regclass(\(table)) IS NOT NULL", logger: logger)
            for try await found in rows.decode(Bool.self) { exists = found }
        } catch {
            exists = nil
        }
        try? await connection.close()
        return exists
    }

    func close() {
        try? ledger.close()
    }
}

/// A ledger opened for a change by `resolve`, `forget` or `sweep`: a directory (through
/// `WritableLedger`, which takes the lock) or a database (`DatabaseLedger`, no lock: the
/// database decides each change atomically and fences it like any other client's).
struct OperatorLedger {
    let ledger: Ledger
    /// What opening changed (a directory's torn tail cut, …), for the output.
    let openNotes: [String]
    /// The ledger's argument as a hint repeats it (a URL without its password, plus a
    /// non-default --schema).
    let location: String
    private let file: WritableLedger?
    private let database: DatabaseLedger?

    static func open(_ argument: String, database options: DatabaseOptions) async throws -> OperatorLedger {
        switch LedgerLocation(argument) {
        case .directory(let directory):
            let opened = try WritableLedger.open(directory)
            return OperatorLedger(ledger: opened.ledger, openNotes: opened.openNotes, location: directory,
                                  file: opened, database: nil)
        case .database(let url):
            let opened = try await DatabaseLedger.open(url, schema: options.schema)
            return OperatorLedger(ledger: opened.ledger, openNotes: [], location: opened.display + options.schemaArgument,
                                  file: nil, database: opened)
        }
    }

    /// Where the last change was recorded, for "recorded … by ACTOR: REASON".
    var recordedWhere: String {
        if let file { return "in the log as sequence \(file.lastSequence.map(String.init) ?? "?")" }
        return "in the database"
    }

    func close() throws {
        if let file { try file.close() }
        database?.close()
    }
}

import OnceLedgerFormat
import OnceLedgerLog

// The read-only open: one small file, the only place that builds a `Ledger` over a
// directory without taking its lock, so it can be re-pointed at another store seam.

extension Ledger {
    /// Opens the ledger in `directory` for reading only: no lock is taken, nothing is
    /// repaired or deleted (a torn tail is left for the next writable open to cut, leftover
    /// temporary files stay), and every write (`once`, the operator calls, `compact`)
    /// throws `LedgerError` with code `.readOnly`. The state is exactly what `Ledger.open`
    /// would rebuild: every key done, pending-unknown or absent. Receipts stay on disk and
    /// are read on demand, as in a writable open.
    ///
    /// Safe while another process (or this one) has the ledger open for writing; the
    /// result is then a moment's view, which the writer may already have moved past.
    /// Throws what `Ledger.open` would for a ledger that refuses to open (corruption,
    /// unsupported version: nothing is changed), `.notALedger` for a directory that holds
    /// no ledger, `.io` when a file cannot be read.
    public static func openReadOnly(directory: String) throws -> Ledger {
        let inspection = try LedgerInspection.read(directory: directory, readingCoveredRecords: false)
        if let problem = inspection.problem { throw problem }
        guard let ledger = inspection.ledger else {
            throw LedgerError(.notALedger, "\(directory) holds no ledger state", path: directory)
        }
        return ledger
    }

    /// A ledger over the records `loader` feeds, refusing every write (`.readOnly`), and
    /// its store (read synchronously by the inspection).
    static func readOnly(directory: String, loader: @escaping ReadOnlyBackend.Loader) throws -> (Ledger, LogStore) {
        let store = try LogStore(log: ReadOnlyBackend(directory: directory, loader: loader))
        return (Ledger(store: store), store)
    }
}

/// A `RecordLog` that replays a ledger directory without opening it for writing:
/// no lock, no `.tmp` cleanup, no torn-tail cut. `LogStore(log:)` on it rebuilds the
/// exact state an open would. Appends and compactions throw `.readOnly`.
///
/// Values stay on disk as in the file log (`FileRecordLog.loadLocated`): each record
/// comes with where it is in its segment, a version 3 snapshot's done entries with where
/// their values are (its hints, the values not read), and receipts are read on demand
/// through `recordReader`. So a read-only look at a large ledger holds its keys, not
/// its receipts.
final class ReadOnlyBackend: RecordLog, @unchecked Sendable {
    /// What the scan found that the backend needs after it: the token scope, and the
    /// ledger id and the files with located values when values stay on disk.
    struct Loaded {
        var tokenScope: TokenScope?
        var ledgerID: LedgerID?
        /// Files (`ValueLocation.file`) a location points into: kept open, so a writer's
        /// compaction that removes them does not take the receipts of this view away.
        var locatedFiles: Set<UInt64> = []
    }

    /// `locate`: pass where each value is (records and a version 3 snapshot's hints) and
    /// keep the snapshot's values on disk; false: every item and record whole, no locations.
    typealias Loader = (
        _ locate: Bool,
        _ itemCount: (Int) -> Void,
        _ item: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void,
        _ record: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void
    ) throws -> Loaded

    let directory: String
    /// Called once by `load`: feeds the snapshot's items and the records after it, and
    /// returns the ledger's token scope. Released once it has run, so whatever it
    /// captured does not outlive the load.
    private var loader: Loader?

    init(directory: String, loader: @escaping Loader) {
        self.directory = directory
        self.loader = loader
    }

    private func takeLoader() throws -> Loader {
        guard let loader else {
            throw LedgerError(.invalidArgument, "this read-only ledger was loaded already", path: directory)
        }
        self.loader = nil
        return loader
    }

    func load(itemCount: (Int) -> Void,
              item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
              record: (RecordKind, UnsafeRawBufferPointer) throws -> Void) throws {
        let loaded = try takeLoader()(false, itemCount, { kind, body, _ in try item(kind, body) },
                                       { kind, body, _ in try record(kind, body) })
        tokenScope = loaded.tokenScope ?? .unscoped
    }

    /// Reads the receipts at the locations `loadLocated` reported (read-only handles).
    private(set) var recordReader: RecordReader?

    func loadLocated(itemCount: (Int) -> Void,
                     item: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void,
                     record: (RecordKind, UnsafeRawBufferPointer, ValueLocation?) throws -> Void) throws {
        let loaded = try takeLoader()(true, itemCount, item, record)
        tokenScope = loaded.tokenScope ?? .unscoped
        if let ledgerID = loaded.ledgerID {
            let reader = RecordReader(storage: PosixStorage(), directory: directory, ledgerID: ledgerID)
            // A file that does not open now is opened (or reported) when a value is read.
            for file in loaded.locatedFiles.sorted() { try? reader.pin(file) }
            recordReader = reader
        }
    }

    func append(_ records: [LogRecord], onDurable: @escaping @Sendable (UInt64) -> Void) async throws -> UInt64 {
        throw Self.refusal(directory)
    }

    func compact(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item]) async throws {
        throw Self.refusal(directory)
    }

    func close() throws {
        recordReader?.retireAll()
    }

    /// The scanned ledger's (`RecoveryReport.tokenScope`), as the loader returns it.
    private(set) var tokenScope: TokenScope = .unscoped

    static func refusal(_ directory: String) -> LedgerError {
        LedgerError(.readOnly,
                    "this ledger was opened read-only (Ledger.openReadOnly), so it refuses writes; open it with Ledger.open to write",
                    path: directory)
    }
}

@_spi(Benchmarks) import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// A `RecordLog` that replays a ledger directory without opening it for writing:
/// no lock, no `.tmp` cleanup, no torn-tail cut. `LogStore(log:)` on it rebuilds the
/// exact state an open would (every key done, pending-unknown or absent), so the
/// inspection commands report what the application would see. Appends and
/// compactions throw.
final class ReadOnlyBackend: RecordLog, @unchecked Sendable {
    typealias Loader = (
        _ itemCount: (Int) -> Void,
        _ item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
        _ record: (RecordKind, UnsafeRawBufferPointer) throws -> Void
    ) throws -> TokenScope?

    let directory: String
    /// Called once by `load`: feeds the snapshot's items and the records after it, and
    /// returns the ledger's token scope.
    /// Released once it has run, so whatever it captured does not outlive the load.
    private var loader: Loader?

    init(directory: String, loader: @escaping Loader) {
        self.directory = directory
        self.loader = loader
    }

    func load(itemCount: (Int) -> Void,
              item: (RecordKind, UnsafeRawBufferPointer) throws -> Void,
              record: (RecordKind, UnsafeRawBufferPointer) throws -> Void) throws {
        guard let loader else {
            throw LedgerError(.invalidArgument, "this read-only ledger was loaded already", path: directory)
        }
        self.loader = nil
        tokenScope = try loader(itemCount, item, record) ?? .unscoped
    }

    func append(_ records: [LogRecord], onDurable: @escaping @Sendable (UInt64) -> Void) async throws -> UInt64 {
        throw LedgerError(.invalidArgument, "this ledger was opened read-only for inspection", path: directory)
    }

    func compact(_ makeItems: @escaping @Sendable (UInt64) throws -> [SnapshotFile.Item]) async throws {
        throw LedgerError(.invalidArgument, "this ledger was opened read-only for inspection", path: directory)
    }

    func close() throws {}

    /// The scanned ledger's (`RecoveryReport.tokenScope`), as the loader returns it.
    private(set) var tokenScope: TokenScope = .unscoped
}

// Proves `LogConfiguration.newLedgerIdentity` (used by `onceledger salvage` to keep a ledger's
// effect tokens, Spec/FORMAT.md §9.3): a ledger created with a given identity carries its id and
// token flag in every segment and snapshot header, across a rollover, a compaction and a reopen;
// the option does nothing to an existing ledger (it keeps the identity its files carry); and a
// token scope naming another ledger's id is refused by `validate()` with `.invalidArgument`.
// How: `LogWriter.recover` on `SimulatedStorage`, headers decoded from the simulated files.
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct LedgerIdentityTests {
    static let directory = "/ledger"
    static let id = LedgerID(bytes: Array(0..<16))!
    static let other = LedgerID(bytes: Array(16..<32))!

    static func configuration(_ identity: LedgerIdentity?) -> LogConfiguration {
        var configuration = LogConfiguration(segmentBytes: 4096)
        configuration.initialSegmentBytes = 4096
        configuration.newLedgerIdentity = identity
        return configuration
    }

    /// (ledger id, token flag) of every segment and snapshot header in the directory.
    static func headers(_ storage: SimulatedStorage) -> [(name: String, id: LedgerID, scoped: Bool)] {
        storage.listFiles().compactMap { path in
            let name = String(path.split(separator: "/").last ?? "")
            guard let bytes = storage.fileBytes(path) else { return nil }
            if LedgerFileNames.parseSegment(name) != nil,
               case .header(let header) = SegmentHeader.decode(Array(bytes.prefix(FormatLimits.segmentHeaderBytes))) {
                return (name, header.ledgerID, header.ledgerScopedTokens)
            }
            if LedgerFileNames.parseSnapshot(name) != nil, case .snapshot(let snapshot) = SnapshotFile.decode(bytes) {
                return (name, snapshot.ledgerID, snapshot.ledgerScopedTokens)
            }
            return nil
        }
    }

    @Test(arguments: [true, false])
    func aLedgerCreatedWithAnIdentityKeepsItEverywhere(scoped: Bool) throws {
        let storage = SimulatedStorage(seed: scoped ? 1 : 2)
        let identity = LedgerIdentity(ledgerID: Self.id, ledgerScopedTokens: scoped)
        #expect(identity.tokenScope == (scoped ? .ledger(Self.id) : .unscoped))
        var (writer, lock, _) = try LogWriter.recover(
            directory: Self.directory, storage: storage, configuration: Self.configuration(identity))
        #expect(writer.ledgerID == Self.id)
        #expect(writer.tokenScope == identity.tokenScope)
        for index in 0..<12 {
            _ = try writer.commit([LogRecord(kind: .opaque, body: [UInt8](repeating: UInt8(index), count: 600))])
        }
        _ = try writer.compact(items: [], timeMilliseconds: 1)
        _ = try writer.commit([LogRecord(kind: .opaque, body: [1, 2, 3])])
        writer.close(timeMilliseconds: 2)
        lock.unlock()
        let headers = Self.headers(storage)
        #expect(headers.contains { LedgerFileNames.parseSnapshot($0.name) != nil }, "compacted")
        #expect(headers.filter { LedgerFileNames.parseSegment($0.name) != nil }.count >= 1)
        for header in headers {
            #expect(header.id == Self.id && header.scoped == scoped, "\(header.name)")
        }

        // Reopened with another identity configured: the existing ledger's own is kept.
        (writer, lock, _) = try LogWriter.recover(
            directory: Self.directory, storage: storage,
            configuration: Self.configuration(LedgerIdentity(ledgerID: Self.other, ledgerScopedTokens: !scoped)))
        #expect(writer.ledgerID == Self.id)
        #expect(writer.tokenScope == identity.tokenScope)
        writer.close(timeMilliseconds: 3)
        lock.unlock()
    }

    @Test func aScopeNamingAnotherLedgerIsRefused() throws {
        let storage = SimulatedStorage(seed: 3)
        let configuration = Self.configuration(LedgerIdentity(ledgerID: Self.id, tokenScope: .ledger(Self.other)))
        do {
            try configuration.validate()
            Issue.record("validate accepted a scope naming another ledger")
        } catch {
            #expect((error as? LedgerError)?.code == .invalidArgument)
        }
        #expect(throws: LedgerError.self) {
            _ = try LogWriter.recover(directory: Self.directory, storage: storage, configuration: configuration)
        }
        #expect(!storage.listFiles().contains { LedgerFileNames.parseSegment(String($0.split(separator: "/").last ?? "")) != nil },
                "nothing was created")
        try Self.configuration(LedgerIdentity(ledgerID: Self.id, tokenScope: .ledger(Self.id))).validate()
        try Self.configuration(LedgerIdentity(ledgerID: Self.id, tokenScope: .unscoped)).validate()
    }
}

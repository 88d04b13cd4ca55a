// Proves an embedder can check a ledger from code, without the CLI (a health endpoint):
// LedgerVerifier.verify reports a healthy ledger clean, a torn tail repairable (and records
// the device does not hold after a failed sync, `Spec/RECOVERY.md` §4.1), a damaged
// header damaged with its code and location (changing no file), and a ledger this process
// has open for writing as in use (naming this pid) while still reading its state; and
// Ledger.openReadOnly gives the state an open would, takes no lock (a writer opens
// meanwhile) and refuses every write with the code read-only; and Salvage.scan/plan/write
// copy a damaged ledger's readable records into a new ledger from code, reporting the
// damaged bytes and the proven-durable gap, changing no source file. Real files in a temp dir.
import Foundation
import OnceLedger
import OnceLedgerFormat
@testable import OnceLedgerLog
import Testing

@Suite struct LedgerHealthCheckTests {
    static func directory(_ name: String) -> String {
        FileManager.default.temporaryDirectory.path + "/ol-health-\(name)-\(UUID().uuidString.prefix(8))"
    }

    /// A closed ledger with `done` done keys and one pending-unknown key.
    static func makeLedger(_ directory: String, done: Int = 5) async throws {
        let ledger = try Ledger.open(directory: directory)
        for index in 0..<done {
            _ = try await ledger.once("order-\(index)", as: String.self) { _ in "receipt-\(index)" }
        }
        _ = try? await ledger.once("crashed", as: String.self) { _ in throw CancellationError() }
        try ledger.close()
    }

    static func files(_ directory: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            files[name] = FileManager.default.contents(atPath: directory + "/" + name)
        }
        return files
    }

    @Test func aHealthyLedgerIsClean() async throws {
        let directory = Self.directory("clean")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.makeLedger(directory)
        let report = try LedgerVerifier.verify(directory: directory)
        #expect(report.result == .clean)
        #expect(report.isHealthy)
        #expect(report.problems.isEmpty)
        #expect(report.lockHolder == nil)
        #expect(report.entries == LedgerInspection.EntryCounts(done: 5, pendingUnknown: 1, absent: 0))
        #expect(report.findings.map(\.code) == [.pendingEntries])
        #expect(report.findings.first?.count == 1)
        #expect(report.recordCount > 6 && report.segmentCount == 1)
    }

    @Test func aTornTailIsRepairableAndLeftAlone() async throws {
        let directory = Self.directory("torn")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.makeLedger(directory)
        let report = try LedgerVerifier.verify(directory: directory)
        let segment = directory + "/" + LedgerFileNames.segment(1)
        // Garbage where the next batch would have gone: a write the crash cut.
        let handle = try #require(FileHandle(forUpdatingAtPath: segment))
        try handle.seek(toOffset: report.inspection.report.segments[0].endOffset)
        try handle.write(contentsOf: Data(repeating: 0xa5, count: 40))
        try handle.close()
        let before = try Self.files(directory)
        let torn = try LedgerVerifier.verify(directory: directory)
        #expect(torn.result == .repairable && torn.isHealthy)
        #expect(torn.tornTail?.offset == report.inspection.report.segments[0].endOffset)
        let finding = try #require(torn.findings.first { $0.code == .tornTail })
        #expect(finding.segment == 1 && finding.offset == torn.tornTail?.offset)
        #expect(try Self.files(directory) == before, "verify changes nothing")
    }

    /// A real disk cannot be made to lose pages after a failed fsync (`CrashTests` model it on
    /// `SimulatedStorage`); a healthy ledger's verification finds none, and the verdict on a
    /// scan that found some (as the model's does) is `repairable` with its finding.
    @Test func recordsTheDeviceDoesNotHoldAreRepairable() async throws {
        let directory = Self.directory("unsynced")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.makeLedger(directory)
        let report = try LedgerVerifier.verify(directory: directory)
        #expect(report.unsyncedTail == nil, "the device holds what the page cache shows")
        var inspection = report.inspection
        let segment = directory + "/" + LedgerFileNames.segment(1)
        let end = inspection.report.segments[0].endOffset
        inspection.report.unsyncedTail = UnsyncedTail(segment: 1, path: segment, offset: end - 100, endOffset: 4096 * 2,
                                                      cachedEndOffset: end, repaired: false)
        let verdict = VerificationReport(inspection: inspection)
        #expect(verdict.result == .repairable && verdict.isHealthy)
        let finding = try #require(verdict.findings.first { $0.code == .unsyncedTail })
        #expect(finding.segment == 1 && finding.offset == end - 100 && finding.path == segment && finding.count == 100)
    }

    @Test func aDamagedLedgerIsReportedWithItsCodeAndLocation() async throws {
        let directory = Self.directory("damaged")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.makeLedger(directory)
        let segment = directory + "/" + LedgerFileNames.segment(1)
        var bytes = try #require(FileManager.default.contents(atPath: segment))
        bytes[20] ^= 0x40  // inside the ledger id: the header checksum fails
        try bytes.write(to: URL(fileURLWithPath: segment))
        let before = try Self.files(directory)
        let report = try LedgerVerifier.verify(directory: directory)
        #expect(report.result == .damaged && !report.isHealthy)
        #expect(report.entries == nil, "no key states from a ledger that refuses to open")
        let damage = try #require(report.findings.first)
        #expect(damage.code == .damage)
        #expect(damage.error?.code == .corruptSegmentHeader)
        #expect(damage.segment == 1 && damage.offset == 0 && damage.path == segment)
        #expect(report.problems.first?.code == .corruptSegmentHeader)
        #expect(try Self.files(directory) == before, "verify changes nothing")
        #expect(throws: LedgerError.self) { try Ledger.openReadOnly(directory: directory) }
    }

    @Test func aLedgerInUseIsReadAndNamesItsHolder() async throws {
        let directory = Self.directory("in-use")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.makeLedger(directory)
        let writer = try Ledger.open(directory: directory)
        defer { try? writer.close() }
        _ = try await writer.once("while-open", as: String.self) { _ in "yes" }
        let report = try LedgerVerifier.verify(directory: directory)
        #expect(report.lockHolder?.pid == ProcessInfo.processInfo.processIdentifier)
        #expect(report.findings.contains { $0.code == .inUse })
        #expect(report.isHealthy)
        #expect(report.entries?.done == 6, "the writer's durable records are read")
    }

    @Test func theReadOnlyOpenTakesNoLockAndRefusesWrites() async throws {
        let directory = Self.directory("read-only")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.makeLedger(directory)
        let readOnly = try Ledger.openReadOnly(directory: directory)
        defer { try? readOnly.close() }
        // A writer opens while the read-only ledger is open: no lock was taken.
        let writer = try Ledger.open(directory: directory)
        #expect(try await readOnly.entries().map(\.key).sorted() == writer.entries().map(\.key).sorted())
        #expect(try await readOnly.entry("order-3")?.status == .done)
        #expect(try await readOnly.entry("crashed")?.status == .pendingUnknown)
        try writer.close()
        await #expect {
            _ = try await readOnly.once("new-key", as: String.self) { _ in "never" }
        } throws: { ($0 as? LedgerError)?.code == .readOnly }
        await #expect {
            try await readOnly.compact()
        } throws: { ($0 as? LedgerError)?.code == .readOnly }
        #expect(try await readOnly.entry("new-key") == nil, "a refused claim leaves no trace")
    }

    @Test func salvageFromCodeCopiesWhatIsReadable() async throws {
        let directory = Self.directory("salvage")
        let target = directory + "-copy"
        defer {
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: target)
        }
        try await Self.makeLedger(directory)
        // The first record's body: a damaged record that later records prove was durable.
        let segment = directory + "/" + LedgerFileNames.segment(1)
        var bytes = try #require(FileManager.default.contents(atPath: segment))
        bytes[FormatLimits.segmentHeaderBytes + FormatLimits.recordHeaderBytes + 4] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: segment))
        let before = try Self.files(directory)
        #expect(try LedgerVerifier.verify(directory: directory).result == .damaged)

        let scan = try Salvage.scan(directory: directory)
        #expect(scan.damage.map(\.startOffset) == [UInt64(FormatLimits.segmentHeaderBytes)])
        #expect(scan.gaps.count == 1 && scan.gaps.first?.firstSequence == 1 && scan.gaps.first?.provenDurable == true)
        let plan = Salvage.plan(scan)
        #expect(plan.notCopied.isEmpty)
        let written = try await Salvage.write(plan, to: SalvageDestination(target: target))
        #expect(try Self.files(directory) == before, "salvage never changes the source")

        let copy = try Ledger.open(directory: target, createIfMissing: false)
        defer { try? copy.close() }
        #expect(try await copy.entries() == written.entries)
        for index in 1..<5 { #expect(try await copy.entry("order-\(index)")?.status == .done) }
        #expect(try await copy.entry("crashed")?.status == .pendingUnknown)
        #expect(try LedgerVerifier.verify(directory: target).problems.isEmpty)
    }
}

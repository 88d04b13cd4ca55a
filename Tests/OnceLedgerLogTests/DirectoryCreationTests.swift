// Proves, on real files, that a writer which creates its ledger's directory (and missing
// parents) makes each new directory durable in its parent before it writes anything in it
// (`Spec/FORMAT.md` §7.1): the parent is `fsync`ed right after the `mkdir`. Without it a
// power loss could take the whole new directory, acknowledged records and all, and the next
// open would create a new, empty ledger there (row R4), silently. How: a fault injected into
// the first `fsync` under the parent must land on the parent itself (not on the first
// segment's file, the next `fsync` there), fail the open with a typed `io` error naming the
// parent, and leave a ledger that the next open creates normally.
import Foundation
import Glibc
import OnceLedgerFormat
@_spi(Testing) import OnceLedgerLog
import Testing

@Suite struct DirectoryCreationTests {
    static func configuration() -> LogConfiguration {
        var configuration = LogConfiguration(segmentBytes: 64 << 10)
        configuration.initialSegmentBytes = 8 << 10
        return configuration
    }

    /// Opens a writer on `ledger` with the first `fsync` at or under `faultPrefix` (after
    /// `skipping` of them) failing with EIO, and returns the error it threw.
    static func openFailingFirstSync(_ ledger: String, under faultPrefix: String, skipping: Int = 0) -> LedgerError? {
        let token = FaultInjection.install(.init(pathPrefix: faultPrefix, call: .fsync, errno: EIO, after: skipping))
        defer { FaultInjection.remove(token) }
        do {
            let engine = try LogEngine.open(directory: ledger, configuration: configuration())
            try engine.close()
            return nil
        } catch let error as LedgerError {
            return error
        } catch {
            Issue.record("untyped error \(error)")
            return nil
        }
    }

    @Test func aNewLedgerDirectoryIsMadeDurableInItsParent() async throws {
        let parent = temporaryDirectory()
        defer { removeDirectory(parent) }
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let ledger = parent + "/ledger"
        let error = try #require(Self.openFailingFirstSync(ledger, under: parent),
                                 "no fsync under the parent failed: the open never synced anything there")
        #expect(error.code == .io, "\(error)")
        #expect(error.errno == EIO, "\(error)")
        #expect(error.path == parent,
                "the first fsync after creating \(ledger) must be its parent's, so the new directory is durable; it was \(error.path ?? "none")")

        // The failed open changed nothing that matters: the next one creates the ledger.
        let engine = try LogEngine.open(directory: ledger, configuration: Self.configuration())
        _ = try await engine.append(kind: .opaque, body: Array("one".utf8))
        try engine.close()
        let (reopened, records) = try readAll(ledger, configuration: Self.configuration())
        try reopened.close()
        #expect(records.filter { $0.header.kind == .opaque }.map(\.body) == [Array("one".utf8)])
    }

    /// Every missing level is made durable in its own parent, outermost first.
    @Test func eachMissingParentIsMadeDurableInItsParent() throws {
        // Faults are process-wide: keep them under a directory of this test's own.
        let base = temporaryDirectory()
        defer { removeDirectory(base) }
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let root = base + "/root"
        let ledger = root + "/a/b/ledger"
        let expected = [base, root, root + "/a", root + "/a/b"]
        for (skipping, directory) in expected.enumerated() {
            removeDirectory(root)
            let error = try #require(Self.openFailingFirstSync(ledger, under: base, skipping: skipping))
            #expect(error.code == .io && error.path == directory,
                    "sync \(skipping) after creating \(ledger): expected \(directory), got \(error)")
        }
    }
}

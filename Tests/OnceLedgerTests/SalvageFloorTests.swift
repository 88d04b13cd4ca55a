// Proves that salvage of a damaged snapshot read unverified (`--trust-damaged-snapshot`) never
// lets a key compaction dropped run again under a generation it had: the snapshot's last hint, the
// generation floor, is cut off, and the salvaged ledger still gives the dropped key a token no
// finished run had. Before, the floor was lost with the hint (0), and the key's next run was
// handed its first run's token, which a downstream system would de-duplicate away.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization
import Testing
import OnceLedgerStoreContract

@Suite struct SalvageFloorTests {
    /// Salvage of a damaged snapshot whose last hint — the generation floor — is lost: a key
    /// compaction dropped must not run again under a generation it had.
    @Test func salvageOfASnapshotThatLostItsFloorGivesNoOldToken() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("probe-salvage-floor")
        let target = directory + "-salvaged"
        defer {
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: target)
        }
        let ledger = try Ledger.open(directory: directory)
        var finished: Set<String> = []
        for round in 0..<3 {
            let outcome = try await ledger.onceBytes("gone") { _ in [UInt8(round)] }
            finished.insert(outcome.entry.token)
            try await ledger.forgetDoneEntryAllowingRerun("gone", reason: "round \(round)")
        }
        _ = try await ledger.onceBytes("kept") { _ in [9] }
        try await ledger.compact()
        #expect(ledger.logStore?.generationFloor == 4)
        try ledger.close()

        // Cut the snapshot just before its floor hint (its last): the file checksum fails.
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".snap") }.max())
        let path = directory + "/" + name
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let pattern: [UInt8] = [4, 0, 0, 0, 16, 0, 0, 0]
        let at = try #require((64...(bytes.count - pattern.count)).last { bytes[$0..<($0 + pattern.count)].elementsEqual(pattern) })
        bytes.removeSubrange(at...)
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let scan = try Salvage.scan(directory: directory, trustDamagedSnapshot: true)
        #expect(scan.snapshot?.verified == false)
        let plan = Salvage.plan(scan)
        #expect(plan.raisedGenerationFloor != nil)
        _ = try await Salvage.write(plan, to: SalvageDestination(target: target))
        let copy = try Ledger.open(directory: target, createIfMissing: false)
        #expect(try await copy.entry("kept")?.status == .done)
        let again = try await copy.onceBytes("gone") { _ in [7] }
        #expect(again.wasPerformed)
        #expect(!finished.contains(again.entry.token),
                "generation \(again.entry.generation) of a dropped key was a finished run's")
        try copy.close()
    }

    /// When more than the last hint is lost, entries were lost too: a lost done key that runs
    /// again is likelier to keep the token it had (a downstream de-duplicates it) under the
    /// parsed floor, so salvage does not raise it.
    @Test func aSnapshotThatLostMoreThanItsFloorKeepsTheParsedFloor() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("probe-salvage-floor-more")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        _ = try await ledger.onceBytes("gone") { _ in [1] }
        try await ledger.forgetDoneEntryAllowingRerun("gone", reason: "again")
        _ = try await ledger.onceBytes("kept") { _ in [9] }
        try await ledger.compact()
        try ledger.close()
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".snap") }.max())
        let path = directory + "/" + name
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // The hint of "kept" (its body starts with the key's length and bytes), then the floor's.
        let key: [UInt8] = [4, 0] + Array("kept".utf8)
        let at = try #require((64...(bytes.count - key.count)).last { bytes[$0..<($0 + key.count)].elementsEqual(key) })
        bytes.removeSubrange((at - SnapshotFile.hintHeaderBytes)...)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let scan = try Salvage.scan(directory: directory, trustDamagedSnapshot: true)
        #expect(scan.damagedSnapshot?.hintsUnread == 2)
        #expect(Salvage.plan(scan).raisedGenerationFloor == nil)
    }
}


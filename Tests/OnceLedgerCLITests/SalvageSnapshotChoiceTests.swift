// Proves that `onceledger salvage --trust-damaged-snapshot` reads a damaged snapshot only when it
// is this ledger's state and newer than every valid snapshot, judged by the (checksummed)
// headers, not the file names:
// - a damaged snapshot of another ledger (a file copied in, its name newer) is not read as this
//   ledger's state: before, its completed onces were written into the salvaged ledger (with this
//   ledger's id, so its tokens) and this ledger's own snapshot was left out as "older", so its
//   completed onces came out absent;
// - a damaged snapshot is not hidden by an older valid snapshot whose name is newer (a backup
//   copied back under another name, now used by its header): before, only a damaged snapshot
//   named before every valid one was read, so the older snapshot was used and every once
//   completed between the two, which the segments no longer hold, came out absent.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct SalvageSnapshotChoiceTests {
    static func covered(_ path: String) throws -> UInt64 {
        ByteReader.getInteger([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), at: 32, as: UInt64.self)
    }

    static func salvage(_ source: String) throws -> (entries: [String: EntryInfo], output: String) {
        let target = try KillTestDirectory("salvage-choice-new")
        defer { target.remove() }
        let result = try CLI.run(["salvage", source, "--to", target.path, "--trust-damaged-snapshot"])
        return (try SalvageDamagedSnapshotTests.entries(of: target.path), result.stdout + result.stderr)
    }

    @Test func aDamagedSnapshotOfAnotherLedgerIsNotRead() async throws {
        let other = try KillTestDirectory("salvage-choice-other")
        defer { other.remove() }
        _ = try await SalvageDamagedSnapshotTests.compactedLedger(other.path)
        let foreign = try SalvageDamagedSnapshotTests.snapshotPath(other.path)
        try SalvageDamagedSnapshotTests.flip(SalvageDamagedSnapshotTests.memoMarker, in: foreign)

        let source = try KillTestDirectory("salvage-choice-ours")
        defer { source.remove() }
        do {
            let ledger = try Ledger.open(directory: source.path)
            defer { try? ledger.close() }
            try await ledger.once("ours", as: String.self) { _ in "paid" }
            try await ledger.compact()
        }
        let ours = try SalvageDamagedSnapshotTests.snapshotPath(source.path)
        let newer = source.path + "/" + LedgerFileNames.snapshot(try Self.covered(ours) + 1000)
        try FileManager.default.copyItem(atPath: foreign, toPath: newer)

        let (entries, output) = try Self.salvage(source.path)
        #expect(entries["ours"]?.status == .done, "this ledger's completed once: \(output)")
        #expect(entries["charge-0"] == nil, "another ledger's once: \(output)")
    }

    @Test func aDamagedSnapshotIsNotHiddenByAnOlderOneRenamedNewer() async throws {
        let source = try KillTestDirectory("salvage-choice-renamed")
        defer { source.remove() }
        _ = try await SalvageDamagedSnapshotTests.compactedLedger(source.path)
        let older = try [UInt8](Data(contentsOf: URL(fileURLWithPath: SalvageDamagedSnapshotTests.snapshotPath(source.path))))
        do {
            let ledger = try Ledger.open(directory: source.path)
            defer { try? ledger.close() }
            try await ledger.once("late", as: String.self) { _ in "paid late" }
            try await ledger.compact()
        }
        let newest = try SalvageDamagedSnapshotTests.snapshotPath(source.path)
        try SalvageDamagedSnapshotTests.flip(SalvageDamagedSnapshotTests.memoMarker, in: newest)
        // The older snapshot back, under a name newer than the newest's.
        let renamed = source.path + "/" + LedgerFileNames.snapshot(try Self.covered(newest) + 1000)
        try Data(older).write(to: URL(fileURLWithPath: renamed))

        let (entries, output) = try Self.salvage(source.path)
        #expect(entries["late"]?.status == .done, "completed after the older snapshot: \(output)")
        #expect(entries["charge-0"]?.status == .done, "\(output)")
    }
}

// Proves that the tools show retention for `once` entries: on a real ledger (built through the
// `Ledger` API under a manual clock in a fresh temporary directory) where one key was forgotten
// and a compaction dropped it, `entries` no longer lists it, `stat` prints the generation floor
// (text and JSON), `dump` shows the floor and the entry-retention items of the snapshot, and
// `verify` accepts the snapshot (exit 0); on a ledger that never dropped an entry `stat` prints
// no floor line and JSON says 0.
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerTestSupport
import Testing

private enum RetentionFixture {
    /// A ledger with keys "kept" (forever) and "digest" (window of one day, not passed), and
    /// "gone" forgotten and dropped by a compaction (it was at generation 0, so the floor is 2).
    static func ledger(dropping: Bool = true) async throws -> String {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-retention-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        let path = parent.appendingPathComponent("ledger").path
        let clock = ManualClock(1_700_000_000_000)
        let ledger = try Ledger.open(directory: path, clock: clock.function)
        for key in ["kept", "gone"] { _ = try await ledger.onceBytes(IdempotencyKey(key)) { _ in [1] } }
        _ = try await ledger.onceBytes("digest", scope: .window(milliseconds: 86_400_000)) { _ in [2] }
        if dropping { try await ledger.forgetDoneEntryAllowingRerun("gone", reason: "rerun it") }
        try await ledger.compact()
        try ledger.close()
        try FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)
        return path
    }

    static func cleanUp(_ path: String) {
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }
}

private func run(_ arguments: [String], in directory: String) throws -> CLI.Result {
    var result = try CLI.run(arguments.map { $0.replacingOccurrences(of: "$DIR", with: directory) })
    result.stdout = result.stdout.replacingOccurrences(of: directory, with: "$DIR")
    result.stderr = result.stderr.replacingOccurrences(of: directory, with: "$DIR")
    return result
}

private func json(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

@Suite struct RetentionCommandTests {
    @Test func toolsShowTheDroppedEntryGoneAndTheFloor() async throws {
        let path = try await RetentionFixture.ledger()
        defer { RetentionFixture.cleanUp(path) }
        let entries = try run(["entries", "--json", "$DIR"], in: path)
        #expect(entries.exitCode == 0)
        let keys = entries.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["key"] as? String
        }
        #expect(keys == ["digest", "kept"])

        let stat = try run(["stat", "$DIR"], in: path)
        #expect(stat.exitCode == 0)
        #expect(stat.stdout.contains("entries         2 keys: 2 done, 0 pending-unknown, 0 absent\n"), "\(stat.stdout)")
        #expect(stat.stdout.contains(
            "gen. floor      2 (a key without an entry starts at this generation: compaction dropped entries below it)\n"),
                "\(stat.stdout)")
        #expect(try json(run(["stat", "--json", "$DIR"], in: path).stdout)["generationFloor"] as? Int == 2)

        let dump = try run(["dump", "$DIR"], in: path)
        #expect(dump.exitCode == 0)
        #expect(dump.stdout.contains("kind=generation-floor floor=2"), "\(dump.stdout)")
        #expect(dump.stdout.contains("kind=entry-retention key=\"digest\" scope=window windowMs=86400000"), "\(dump.stdout)")

        let verify = try run(["verify", "$DIR"], in: path)
        #expect(verify.exitCode == 0, "\(verify.stdout)")
    }

    @Test func aLedgerThatDroppedNothingShowsNoFloor() async throws {
        let path = try await RetentionFixture.ledger(dropping: false)
        defer { RetentionFixture.cleanUp(path) }
        let stat = try run(["stat", "$DIR"], in: path)
        #expect(stat.exitCode == 0)
        #expect(!stat.stdout.contains("floor"))
        #expect(try json(run(["stat", "--json", "$DIR"], in: path).stdout)["generationFloor"] as? Int == 0)
        #expect(!(try run(["dump", "$DIR"], in: path)).stdout.contains("generation-floor"))
    }
}

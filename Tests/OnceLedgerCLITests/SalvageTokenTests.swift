// Proves `onceledger salvage` keeps every entry's effect token (Spec/FORMAT.md §9.3): the new
// ledger keeps the source's ledger id and token scheme, so a key retried or re-run there presents
// the downstream the token it saw before. How: a ledger is written with the library (a done key, a
// pending-unknown key, a key forgotten and re-run, in 4 KiB segments so it rolls over), salvaged,
// and the new ledger's tokens compared key by key with the source's, for a ledger-scoped (v2)
// ledger and for a version-1 ledger (made as TokenScopeTests does: its only segment header
// stamped with version 1 and no flags); the pending key is then retried in the new ledger and
// must receive its old token. `verify` must call the new ledger clean (SalvageCommandTests.salvage
// checks it). Also: the new ledger shares the source's id, so a source segment copied into it is
// no longer foreign by id, and must be refused by the sequence and chain checks instead.
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization
import Testing

@Suite struct SalvageTokenTests {
    struct Failure: Error {}

    static let configuration = LogConfiguration(segmentBytes: 4096)

    /// Writes the keys of every test into `directory` (ending open, for more writes).
    static func writeKeys(_ ledger: Ledger, count: Int) async throws {
        for index in 0..<count {
            _ = try await ledger.once(IdempotencyKey("done-\(index)"), as: String.self) { _ in "ok" }
        }
        _ = try await ledger.once("rerun", as: String.self) { _ in "first" }
        try await ledger.forgetDoneEntryAllowingRerun("rerun", reason: "test: run it again")
        _ = try await ledger.once("rerun", as: String.self) { _ in "second" }
    }

    /// Leaves `pending` pending-unknown (its effect fails) and returns the token it received.
    static func failOnce(_ ledger: Ledger, _ key: String) async throws -> String {
        let seen = Mutex<String?>(nil)
        do {
            _ = try await ledger.once(IdempotencyKey(key), as: String.self) { context in
                seen.withLock { $0 = context.token }
                throw Failure()
            }
            Issue.record("the effect's failure was not reported")
        } catch {}
        return try #require(seen.withLock { $0 })
    }

    static func tokens(_ directory: String) throws -> (tokens: [String: String], scope: TokenScope) {
        let store = try FileStore(directory: directory, configuration: configuration, createIfMissing: false)
        defer { try? store.close() }
        var tokens: [String: String] = [:]
        for entry in try store.currentEntries() { tokens[entry.key] = entry.token }
        return (tokens, store.tokenScope)
    }

    /// Salvages `source` and checks every token, the scheme, and a retry of `pending`.
    static func salvageKeepsTokens(_ source: String, pending: String, pendingToken: String) async throws {
        let before = try tokens(source)
        #expect(before.tokens[pending] == pendingToken)
        #expect(before.tokens["rerun"] != EffectToken.derive(key: "rerun", generation: 0, scope: before.scope),
                "the re-run key is in its second generation")
        let run = try SalvageCommandTests.salvage(source)
        defer { run.target.remove() }
        #expect(run.exitCode == 0, "\(run.report)")
        #expect(run.report.contains("\n  the new ledger keeps the source's ledger id and token scheme (every entry keeps its effect token) and numbers its records afresh (sequence numbers differ from the source's)\n"))
        let after = try tokens(run.target.path)
        #expect(after.scope == before.scope)
        #expect(after.tokens == before.tokens, "every salvaged entry keeps its effect token")

        let ledger = try Ledger.open(directory: run.target.path, configuration: configuration, createIfMissing: false)
        defer { try? ledger.close() }
        #expect(try await ledger.entry(pending)?.status == .pendingUnknown)
        let retried = try await ledger.once(IdempotencyKey(pending), as: String.self, whenPending: .retry) { context in
            context.token
        }
        #expect(retried.receipt == pendingToken, "the downstream sees the token of the first attempt")
    }

    @Test func salvageOfALedgerScopedLedgerKeepsEveryToken() async throws {
        let source = try KillTestDirectory("salvage-token-v2")
        defer { source.remove() }
        let ledger = try Ledger.open(directory: source.path, configuration: Self.configuration)
        try await Self.writeKeys(ledger, count: 40)
        let pendingToken = try await Self.failOnce(ledger, "charge-7")
        try ledger.close()
        let segments = try FileManager.default.contentsOfDirectory(atPath: source.path).compactMap(LedgerFileNames.parseSegment)
        #expect(segments.count >= 2, "rolled over, so seals are in the source")
        #expect(try Self.tokens(source.path).scope.isLedgerScoped)
        try await Self.salvageKeepsTokens(source.path, pending: "charge-7", pendingToken: pendingToken)
    }

    @Test func salvageOfAVersionOneLedgerKeepsV1Tokens() async throws {
        let source = try KillTestDirectory("salvage-token-v1")
        defer { source.remove() }
        var ledger = try Ledger.open(directory: source.path, configuration: Self.configuration)
        _ = try await ledger.once("first", as: String.self) { _ in "ok" }
        try ledger.close()
        // Stamp the only segment as version 1 wrote it: the ledger now derives v1 tokens.
        let segment1 = source.path + "/" + LedgerFileNames.segment(1)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: segment1)))
        bytes[8] = 1
        bytes[9] = 0
        for index in 12..<16 { bytes[index] = 0 }
        let crc = CRC32.checksum(Array(bytes[0..<60]))
        withUnsafeBytes(of: crc.littleEndian) { for index in 0..<4 { bytes[60 + index] = $0[index] } }
        try Data(bytes).write(to: URL(fileURLWithPath: segment1))

        ledger = try Ledger.open(directory: source.path, configuration: Self.configuration)
        #expect(ledger.tokenScope == .unscoped)
        let pendingToken = try await Self.failOnce(ledger, "legacy")
        #expect(pendingToken == EffectToken.derive(key: "legacy", generation: 0, scope: .unscoped))
        try await Self.writeKeys(ledger, count: 40)
        try ledger.close()
        try await Self.salvageKeepsTokens(source.path, pending: "legacy", pendingToken: pendingToken)
    }

    @Test func aSourceSegmentCopiedIntoTheSalvagedLedgerIsRefused() throws {
        let source = try KillTestDirectory("salvage-copied-in")
        defer { source.remove() }
        let stress = try CLI.run(["stress", source.path, "--effects", "200", "--concurrency", "2", "--seed", "11",
                                  "--segment-bytes", "4096", "--fail-percent", "0"])
        #expect(stress.exitCode == 0, "\(stress.stderr)")
        let run = try SalvageCommandTests.salvage(source.path)
        defer { run.target.remove() }
        #expect(run.exitCode == 0, "\(run.report)")
        let target = run.target.path
        let sourceNumbers = try FileManager.default.contentsOfDirectory(atPath: source.path)
            .compactMap(LedgerFileNames.parseSegment).sorted()
        let targetNumbers = try FileManager.default.contentsOfDirectory(atPath: target)
            .compactMap(LedgerFileNames.parseSegment).sorted()
        try #require(targetNumbers.count >= 3 && sourceNumbers.contains(targetNumbers.last!),
                     "source \(sourceNumbers), salvaged \(targetNumbers)")
        let pristine = SalvageCommandTests.files(target)

        // The source's segment 2 in place of the new ledger's, and the source's segment of the
        // new ledger's last number in place of it: same ledger id and file names, but neither
        // continues the new ledger's records (their sequence numbers and chain values differ).
        for number in [2, targetNumbers.last!] {
            for (name, data) in pristine { try data.write(to: URL(fileURLWithPath: target + "/" + name)) }
            for name in try FileManager.default.contentsOfDirectory(atPath: target) where pristine[name] == nil {
                try FileManager.default.removeItem(atPath: target + "/" + name)
            }
            let name = LedgerFileNames.segment(number)
            try? FileManager.default.removeItem(atPath: target + "/" + name)
            try FileManager.default.copyItem(atPath: source.path + "/" + name, toPath: target + "/" + name)
            let verify = try CLI.run(["verify", target])
            #expect(verify.exitCode == 4, "segment \(number) copied in: \(verify.stdout)")
            #expect(throws: LedgerError.self, "segment \(number) copied in") {
                try Ledger.open(directory: target, configuration: Self.configuration, createIfMissing: false).close()
            }
        }
    }
}

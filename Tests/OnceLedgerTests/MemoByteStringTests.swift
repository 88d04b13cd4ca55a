// Proves that the memo's public key types compare as the store does, byte for byte: `MemoRun`
// and `MemoKey` with "café" spelled with U+00E9 and with "e" + U+0301 are two runs (two keys),
// although Swift's `==` on `String` calls the spellings equal. Before, a sweep of both runs
// answered one run with both generations (`MemoSweepResult.runs`), so `onceledger sweep`
// printed one run's name for the other's generation.
import Foundation
@testable import OnceLedger
import Testing
import OnceLedgerStoreContract

@Suite struct MemoByteStringTests {
    static let composed = "caf\u{e9}"
    static let decomposed = "cafe\u{301}"

    @Test func runsAndKeysCompareByteForByte() {
        #expect(MemoRun(run: Self.composed) != MemoRun(run: Self.decomposed))
        #expect(MemoRun(namespace: Self.composed, run: "r") != MemoRun(namespace: Self.decomposed, run: "r"))
        #expect(Set([MemoRun(run: Self.composed), MemoRun(run: Self.decomposed)]).count == 2)
        #expect(MemoRun(run: Self.composed) == MemoRun(run: "caf\u{e9}"))
        let run = MemoRun(run: "r")
        #expect(MemoKey(run: run, generation: 1, step: Self.composed, name: "n")
                != MemoKey(run: run, generation: 1, step: Self.decomposed, name: "n"))
        #expect(MemoKey(run: run, generation: 1, step: "s", name: Self.composed)
                != MemoKey(run: run, generation: 1, step: "s", name: Self.decomposed))
        #expect(Set([MemoKey(run: run, generation: 1, step: "s", name: Self.composed),
                     MemoKey(run: run, generation: 1, step: "s", name: Self.decomposed)]).count == 2)
        #expect(MemoKey(run: run, generation: 1, step: "s", name: "n") == MemoKey(run: run, generation: 1, step: "s", name: "n"))
    }

    @Test(arguments: BackendKind.allCases)
    func aSweepAnswersEachRunWithItsOwnGenerations(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        var generations: [String: UInt64] = [:]
        for (run, tag) in [(Self.composed, "c"), (Self.decomposed, "d")] {
            let memo = try await ledger.memo(run: run, step: "s")
            try await memo.put("v", bytes: [1])
            try await ledger.finishRun(run, status: .succeeded)
            generations[tag] = memo.generation
        }
        harness.clock.advance(1_000)
        let swept = try await ledger.sweepMemo(retention: MemoRetention(.seconds(1)))
        #expect(swept.generationCount == 2)
        #expect(swept.runs.count == 2)
        #expect(swept.runs[MemoRun(run: Self.composed)] == [generations["c"]!])
        #expect(swept.runs[MemoRun(run: Self.decomposed)] == [generations["d"]!])
        try ledger.close()
    }
}

// Proves that a ledger whose memo names run generation 2^64 − 1 (a record written by hand: every
// generation this build hands out is one more than the highest any record names) refuses a new
// run generation with `limit-exceeded` instead of trapping the process: `highestGeneration += 1`
// overflowed on the log's bytes, so `ledger.memo(run:)` or `finishRun` of any run without a
// running generation killed the process, every time the ledger was opened. The run that holds
// the last generation still reads and finishes.
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct MemoGenerationLimitTests {
    @Test(arguments: BackendKind.allCases)
    func aNewGenerationPastTheLastIsRefusedNotTrapped(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        try await harness.appendRaw([.memoEntry(.init(
            namespace: "", run: "old", generation: UInt64.max, step: "s", name: "n", timeMilliseconds: 1, value: Array("1".utf8)))])
        let ledger = try harness.open()
        defer { try? ledger.close() }
        for attempt in ["memo", "finishRun"] {
            do {
                if attempt == "memo" {
                    _ = try await ledger.memo(run: "new", step: "s")
                } else {
                    _ = try await ledger.finishRun("new", status: .succeeded)
                }
                Issue.record("\(attempt): a generation past 2^64 - 1 was handed out")
            } catch let error as LedgerError {
                #expect(error.code == .limitExceeded, "\(attempt): \(error)")
            }
        }
        let old = try await ledger.memo(run: "old", step: "s")
        #expect(old.generation == UInt64.max)
        #expect(try await old.get("n", as: Int.self) == 1)
        _ = try await ledger.finishRun("old", status: .succeeded)
    }
}

// Proves the README's "Memo: a retried step never re-pays" example works as printed: this file
// holds its code (the block between the markers below) and runs it on a real ledger in a temp
// directory with a fake paid LLM that counts its calls: the first attempt of the step pays, a
// retry after a restart finds the answer (no second call), a changed prompt is a typed mismatch,
// and the same run id resubmitted after the run ended pays again (a new generation). A second
// test checks that every Swift block of that README section appears verbatim here.
import Foundation
import OnceLedger
import Testing

/// Your LLM client (a paid API).
protocol LLMClient: Sendable {
    func complete(model: String, prompt: String) async throws -> String
}

// README example begins
struct Summary: Codable, Sendable { var text: String }
struct CompletionRequest: Encodable { var model: String; var prompt: String }

/// The worker's ledger: the memo of an ended run is kept an hour, a failed run's a day.
func openWorkerLedger(directory: String) throws -> Ledger {
    try Ledger.open(directory: directory,
                    memoRetention: MemoRetention(succeeded: .seconds(3_600), failed: .seconds(86_400),
                                                 cancelled: .seconds(3_600)))
}

/// One step of a workflow run. The runner retries steps; a retry finds the answer the
/// attempt before it paid for, instead of paying again.
func summarize(_ document: String, run: String, ledger: Ledger, llm: some LLMClient) async throws -> Summary {
    let request = CompletionRequest(model: "small-1", prompt: "Summarize:\n\(document)")
    let memo = try await ledger.memo(run: run, step: "summarize")
    let answer = try await memo.remember("completion", as: Summary.self, input: request) {
        Summary(text: try await llm.complete(model: request.model, prompt: request.prompt))
    }
    return answer.value   // answer.wasCached: nobody paid this time
}

/// When the run ends, however it ends: later puts for it are refused, and its memo is swept
/// once the retention window has passed.
func endRun(_ run: String, ledger: Ledger, succeeded: Bool) async throws {
    try await ledger.finishRun(run, status: succeeded ? .succeeded : .failed)
}
// README example ends

/// Answers and counts the calls it was paid for.
private actor FakeLLM: LLMClient {
    private(set) var calls = 0
    func complete(model: String, prompt: String) async throws -> String {
        calls += 1
        return "summary #\(calls) of \(prompt.count) characters"
    }
}

@Suite struct MemoExampleTests {
    @Test func aRetriedStepDoesNotPayAgain() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-readme-memo-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let llm = FakeLLM()
        var ledger = try openWorkerLedger(directory: directory)
        let first = try await summarize("The order shipped.", run: "run-7", ledger: ledger, llm: llm)
        #expect(await llm.calls == 1)

        // The worker dies after paying; the runner retries the step in a new process.
        try ledger.close()
        ledger = try openWorkerLedger(directory: directory)
        let retried = try await summarize("The order shipped.", run: "run-7", ledger: ledger, llm: llm)
        #expect(retried.text == first.text)
        #expect(await llm.calls == 1, "the retry found the answer")

        // Another document is another prompt: a typed mismatch, not the old answer.
        await #expect(throws: LedgerError.self) {
            _ = try await summarize("The order was cancelled.", run: "run-7", ledger: ledger, llm: llm)
        }
        #expect(await llm.calls == 1)

        // The run ends; the same run id resubmitted is a new run and pays again.
        try await endRun("run-7", ledger: ledger, succeeded: true)
        _ = try await summarize("The order shipped.", run: "run-7", ledger: ledger, llm: llm)
        #expect(await llm.calls == 2)
        try ledger.close()
    }

    @Test func theReadmeSectionIsInThisFile() throws {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let blocks = try #require(DocumentBlocks.swiftBlocks(in: try DocumentBlocks.text("README.md"),
                                                            section: "## Memo: a retried step never re-pays"))
        #expect(blocks.count == 1)
        for block in blocks {
            #expect(source.contains(block), "this README block is not in this file:\n\(block)")
        }
    }
}

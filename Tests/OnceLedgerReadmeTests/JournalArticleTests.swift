// Proves the DocC article "Replaying an agent loop after a crash" (OnceLedger.docc/ReplayJournal.md)
// and the README section "Replay journal" work as printed: this file holds their code (the blocks
// between the markers) and runs the article's story on a real ledger in a temp directory with a
// fake model and fake tools that count their calls: a process dies in the middle of the loop; the
// restarted worker replays the recorded turns (no model call, no tool run again) and goes on; the
// changed code (a new prompt) is stopped at the first recorded turn with the divergence the article
// prints; and the replay test of the article passes for the old code and fails for the changed one
// without calling anything. A second test checks that every Swift block of the article and of the
// README section appears verbatim here.
import Foundation
import OnceLedger
import Testing

// Article example begins
struct Message: Codable, Sendable { var role: String; var text: String }
struct Reply: Codable, Sendable { var text: String; var toolCall: String? }

/// Your model client (a paid API) and your tools (they change the world).
protocol ChatModel: Sendable { func reply(to conversation: [Message]) async throws -> Reply }
protocol AgentTools: Sendable { func run(_ call: String, idempotencyKey: String) async throws -> String }

/// The agent loop: ask the model, run the tool it asks for, until it answers. Every call
/// that is not deterministic goes through the journal.
func agentLoop(task: String, journal: Journal, model: some ChatModel, tools: some AgentTools) async throws -> String {
    var conversation = [Message(role: "user", text: task)]
    for _ in 0..<8 {
        let reply = try await journal.step("llm.reply", input: conversation) {
            try await model.reply(to: conversation)
        }
        guard let call = reply.toolCall else { return reply.text }
        let result = try await journal.effect("tool.run", input: call) { effect in
            try await tools.run(call, idempotencyKey: effect.token)
        }
        conversation += [Message(role: "assistant", text: reply.text), Message(role: "tool", text: result)]
    }
    return "gave up after 8 turns"
}

/// The worker: one journal per task id. Run again after a crash, it replays what was
/// recorded and goes on from there.
func handle(task: String, id: String, ledger: Ledger, model: some ChatModel, tools: some AgentTools) async throws -> String {
    let journal = try await ledger.journal(run: id)
    let answer = try await agentLoop(task: task, journal: journal, model: model, tools: tools)
    try await journal.finish(.succeeded)
    return answer
}
// Article example ends

// Article replay test begins
/// Yesterday's runs, exported with `onceledger journal-export DIR RUN`, replayed against
/// today's code: nothing is called, nothing is executed.
func replayYesterday(_ exportFile: String, model: some ChatModel, tools: some AgentTools) async throws -> String {
    let export = try JournalExport(jsonLinesBytes: Data(contentsOf: URL(fileURLWithPath: exportFile)))
    return try await JournalReplayer.replay(export) { journal in
        try await agentLoop(task: "Refund order 42", journal: journal, model: model, tools: tools)
    }
}
// Article replay test ends

/// The changed code of the article: a system prompt added in front of the conversation.
func changedAgentLoop(task: String, journal: Journal, model: some ChatModel, tools: some AgentTools) async throws -> String {
    var conversation = [Message(role: "system", text: "Be brief."), Message(role: "user", text: task)]
    let reply = try await journal.step("llm.reply", input: conversation) { try await model.reply(to: conversation) }
    conversation.append(Message(role: "assistant", text: reply.text))
    return reply.text
}

private struct SimulatedCrash: Error {}

/// Asks for one tool call, then answers; counts its calls; can "crash" on a given call.
private actor FakeModel: ChatModel {
    var calls = 0
    var crashOnCall: Int?
    func setCrash(_ call: Int?) { crashOnCall = call }
    func reply(to conversation: [Message]) async throws -> Reply {
        calls += 1
        if calls == crashOnCall { throw SimulatedCrash() }
        if conversation.contains(where: { $0.role == "tool" }) { return Reply(text: "Refunded: \(conversation.last!.text)") }
        return Reply(text: "Let me refund it.", toolCall: "refund(order: 42)")
    }
}

private actor FakeTools: AgentTools {
    var runs: [String] = []
    func run(_ call: String, idempotencyKey: String) async throws -> String {
        runs.append(idempotencyKey)
        return "refund r-\(runs.count)"
    }
}

@Suite struct JournalArticleTests {
    @Test func theAgentLoopResumesAfterACrashAndAChangeIsCaught() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-article-journal-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model = FakeModel()
        let tools = FakeTools()
        // The first process: the model asks for the refund, the tool runs, and the process
        // dies while the model is asked again.
        await model.setCrash(2)
        var ledger = try Ledger.open(directory: directory)
        await #expect(throws: SimulatedCrash.self) {
            _ = try await handle(task: "Refund order 42", id: "task-7", ledger: ledger, model: model, tools: tools)
        }
        try ledger.close()
        #expect(await model.calls == 2)
        #expect(await tools.runs.count == 1)

        // The restarted worker: turn 1 and the refund come from the journal.
        await model.setCrash(nil)
        ledger = try Ledger.open(directory: directory)
        let answer = try await handle(task: "Refund order 42", id: "task-7", ledger: ledger, model: model, tools: tools)
        #expect(answer == "Refunded: refund r-1")
        #expect(await model.calls == 3, "only the turn that never finished called the model again")
        #expect(await tools.runs.count == 1, "the refund ran once")

        // Yesterday's run exported; the old code replays it, the changed code is caught.
        let exportFile = directory + "/task-7.jsonl"
        try Data(try await ledger.exportJournal(run: "task-7").jsonLines().utf8).write(to: URL(fileURLWithPath: exportFile))
        #expect(try await replayYesterday(exportFile, model: model, tools: tools) == answer)
        #expect(await model.calls == 3, "the replay called no model")
        #expect(await tools.runs.count == 1, "the replay ran no tool")

        let export = try JournalExport(jsonLinesBytes: Data(contentsOf: URL(fileURLWithPath: exportFile)))
        do {
            _ = try await JournalReplayer.replay(export) { journal in
                try await changedAgentLoop(task: "Refund order 42", journal: journal, model: model, tools: tools)
            }
            Issue.record("the changed code replayed")
        } catch let error as LedgerError {
            #expect(error.code == .journalDivergence)
            let text = error.journalDivergence?.description ?? ""
            #expect(text.hasPrefix("run task-7 (generation 1): recorded step 0 was `llm.reply` with input digest "), "\(text)")
            #expect(text.contains("; the code now asks for step `llm.reply` with input digest "), "\(text)")
            #expect(text.hasSuffix("(differs in: input digest \(Self.prefix(error.journalDivergence?.recorded?.inputDigest))… → \(Self.prefix(error.journalDivergence?.requested?.inputDigest))…)"), "\(text)")
        }
        #expect(await model.calls == 3)
        try ledger.close()
    }

    static func prefix(_ digest: [UInt8]?) -> String {
        (digest ?? []).prefix(6).map { String(format: "%02x", $0) }.joined()
    }

    @Test func everyCodeBlockOfTheArticleAndTheReadmeSectionIsInThisFile() throws {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let article = try DocumentBlocks.text("Sources/OnceLedger/OnceLedger.docc/ReplayJournal.md")
        let blocks = try #require(DocumentBlocks.swiftBlocks(in: article))
        #expect(blocks.count >= 2, "the article shows the loop and the replay test")
        let readme = try #require(DocumentBlocks.swiftBlocks(in: try DocumentBlocks.text("README.md"), section: "## Replay journal"))
        #expect(!readme.isEmpty, "the README section shows the loop")
        for block in blocks + readme {
            #expect(source.contains(block), "this block is not in this file:\n\(block)")
        }
    }
}

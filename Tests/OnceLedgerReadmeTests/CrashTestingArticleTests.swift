// Proves the DocC article "Crash-testing your effect code" (OnceLedgerTestSupport.docc) works
// as printed: this file holds the article's example, a welcome-email job crashed at every I/O
// step by `LedgerCrashRunner`, and runs it; a second test checks that every Swift code block of
// the article appears verbatim in this file, so the article cannot drift from code that runs.
// The article's example starts at `import OnceLedger` and ends before the MARK below.
import Foundation
import OnceLedger
import OnceLedgerTestSupport
import Testing

struct User: Sendable {
    var id: Int
    var email: String?
}

struct WelcomeReceipt: Codable, Sendable {
    var messageID: String
}

/// A fake mail provider. Like a real one, it de-duplicates by idempotency key: a second
/// request with a key it has seen returns the first message and sends nothing.
actor Mailbox {
    /// Every request: who it was for, with which key.
    private(set) var requests: [(userID: Int, idempotencyKey: String)] = []
    /// Sent messages by idempotency key.
    private(set) var sent: [String: String] = [:]

    func send(to address: String, userID: Int, idempotencyKey: String) -> String {
        requests.append((userID, idempotencyKey))
        if let messageID = sent[idempotencyKey] { return messageID }
        let messageID = "msg-\(sent.count + 1)"
        sent[idempotencyKey] = messageID
        return messageID
    }
}

/// The job under test: one welcome email per user; users without an address are skipped.
func sendWelcomeEmails(to users: [User], ledger: Ledger, mailbox: Mailbox) async throws {
    for user in users {
        do {
            try await ledger.once("welcome-\(user.id)", as: WelcomeReceipt.self, whenPending: .retry) { effect in
                guard let address = user.email else {
                    throw EffectDidNotHappen("user \(user.id) has no address")
                }
                let messageID = await mailbox.send(to: address, userID: user.id, idempotencyKey: effect.token)
                return WelcomeReceipt(messageID: messageID)
            }
        } catch let error as LedgerError where error.code == .released {
            continue  // skipped: nothing was sent
        }
    }
}

let users = [User(id: 1, email: "ada@example.com"), User(id: 2, email: nil), User(id: 3, email: "bo@example.com")]

/// After every reopen: each user got mail under one token at most.
/// At the end: each user with an address is done and was mailed; each user without one
/// was never mailed.
@Sendable func checkWelcomeEmails(ledger: Ledger, mailbox: Mailbox, epoch: LedgerCrashRunner.Epoch) async throws {
    let requests = await mailbox.requests
    for user in users {
        let keys = Set(requests.filter { $0.userID == user.id }.map(\.idempotencyKey))
        guard keys.count <= 1 else {
            throw CrashInvariantViolation("user \(user.id) was mailed under \(keys.count) tokens: \(keys.sorted())")
        }
        guard epoch.isEnd else { continue }
        let entry = try await ledger.entry("welcome-\(user.id)")
        if user.email == nil {
            guard keys.isEmpty, entry?.status != .done else {
                throw CrashInvariantViolation("user \(user.id) has no address but is \(String(describing: entry))")
            }
        } else {
            guard let entry, entry.status == .done, keys.count == 1 else {
                throw CrashInvariantViolation("user \(user.id) ends \(String(describing: entry)), not mailed")
            }
        }
    }
}

@Test func welcomeEmailsSurviveACrashAtEveryStep() async {
    let report = await LedgerCrashRunner().run(
        world: { Mailbox() },
        workload: { ledger, mailbox, _ in
            try await sendWelcomeEmails(to: users, ledger: ledger, mailbox: mailbox)
        },
        check: checkWelcomeEmails
    )
    for failure in report.failures { Issue.record("\(failure)") }
    #expect(report.crashPoints > 0)
    print("welcome emails: \(report)")
}

// MARK: - The article matches this file

@Suite struct CrashTestingArticleTests {
    @Test func everyCodeBlockOfTheArticleIsInThisFile() throws {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let article = try DocumentBlocks.text(
            "Sources/OnceLedgerTestSupport/OnceLedgerTestSupport.docc/CrashTestingYourEffectCode.md")
        let blocks = try #require(DocumentBlocks.swiftBlocks(in: article))
        #expect(blocks.count >= 2, "the article shows the job and the test")
        for block in blocks {
            #expect(source.contains(block), "this article block is not in this file:\n\(block)")
        }
    }
}

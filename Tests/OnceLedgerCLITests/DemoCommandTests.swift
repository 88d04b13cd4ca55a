// Proves `onceledger demo` walks through what the README promises — two effects, a skipped
// duplicate, a child killed by SIGKILL mid-effect, the pending-unknown entry on reopen, its
// resolution by reconciliation, and a clean `verify` — by running it and comparing the whole
// output of steps 1–5 (the directory and the completion time replaced, and each token by
// `olt_<n>` in order of first appearance: tokens include the ledger's random id, so only their
// equalities are stable), then checking the ledger it leaves with the library, tokens included.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct DemoCommandTests {
    @Test func demoShowsCrashRecoveryAndReconciliation() throws {
        let directory = try KillTestDirectory("demo")
        defer { directory.remove() }
        let result = try CLI.run(["demo", directory.path])
        #expect(result.exitCode == 0, "demo exited \(result.exitCode)\n\(result.stdout)\(result.stderr)")
        #expect(result.stderr.isEmpty)
        var text = result.stdout.replacingOccurrences(of: directory.path, with: "DIR")
            .replacingOccurrences(of: #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"#, with: "TIME", options: .regularExpression)
        var tokens: [String] = []
        for match in text.matches(of: /olt_[0-9a-f]{32}/) where !tokens.contains(String(match.output)) {
            tokens.append(String(match.output))
        }
        for (index, token) in tokens.enumerated() { text = text.replacingOccurrences(of: token, with: "olt_\(index + 1)") }
        let steps = text.components(separatedBy: "\n6. onceledger verify DIR\n")
        #expect(steps.count == 2)
        #expect(steps[0] == """
            OnceLedger demo in DIR

            1. Perform two effects. `once` makes the intent durable, runs the effect, then makes the completion durable.
               performed  email:welcome-alice       receipt "msg-1001"  token olt_1
               performed  charge:order-42           receipt "ch_42"     token olt_2

            2. Call `once` again with a key that is done: the effect does not run.
               skipped    email:welcome-alice       already done at TIME; stored receipt "msg-1001"

            3. A child process calls `once("webhook:order-43-shipped")` and dies by SIGKILL inside the effect.
               child: intent for webhook:order-43-shipped is durable (attempt 1); the effect starts
               child: POST /hooks/order-shipped  Idempotency-Key: olt_3  -> the receiver logs delivery dlv_7f3a
               child: killed by SIGKILL before `once` could record the completion

            4. Reopen. The key has a durable intent and no completion: pending-unknown (it may or may not have happened).
               key                       state            attempt  receipt
               --------------------------------------------------------------
               charge:order-42           done                   1  "ch_42"
               email:welcome-alice       done                   1  "msg-1001"
               webhook:order-43-shipped  pending-unknown        1

               `once` with the default policy (fail closed) refuses to guess:
                 throws LedgerError(.pendingUnknown) for "webhook:order-43-shipped" carrying the intent: attempt 1, token olt_3

            5. Resolve it by reconciliation: ask the receiver whether it saw the entry's token.
               reconcile: the receiver has delivery dlv_7f3a with Idempotency-Key olt_3
               recorded as done with receipt "dlv_7f3a": the webhook was not sent twice
               key                       state  attempt  receipt
               ----------------------------------------------------
               charge:order-42           done         1  "ch_42"
               email:welcome-alice       done         1  "msg-1001"
               webhook:order-43-shipped  done         1  "dlv_7f3a"

            """)
        #expect(steps.last?.contains("   (verify exited with status 0)\n") == true)
        #expect(steps.last?.hasSuffix("\nThe ledger is left in DIR; try `onceledger entries DIR` or `onceledger dump DIR`.\n") == true)

        let ledger = try Ledger.open(directory: directory.path, createIfMissing: false)
        defer { try? ledger.close() }
        let crashed = try ledger.entry("webhook:order-43-shipped")
        #expect(crashed?.status == .done && crashed?.attempt == 1)
        #expect(crashed.map { String(decoding: $0.receipt, as: UTF8.self) } == "\"dlv_7f3a\"")
        #expect(try ledger.entries().count == 3)
        #expect(tokens == ["email:welcome-alice", "charge:order-42", "webhook:order-43-shipped"].map {
            EffectToken.derive(key: $0, generation: 0, scope: ledger.tokenScope)
        }, "the printed tokens are this ledger's")
        #expect(ledger.tokenScope.isLedgerScoped)
    }

    @Test func demoRefusesNonEmptyDirectory() throws {
        let directory = try KillTestDirectory("demo-busy")
        defer { directory.remove() }
        #expect(FileManager.default.createFile(atPath: directory.path + "/keep", contents: Data()))
        let result = try CLI.run(["demo", directory.path])
        #expect(result.exitCode == 16)
        #expect(result.stderr.hasPrefix("Error: \(directory.path) must be a new or empty directory"))
    }
}

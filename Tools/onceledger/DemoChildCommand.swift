import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat

/// `onceledger demo-child DIR --key KEY`: the process `demo` crashes on purpose (hidden).
///
/// It opens the ledger and calls `once(KEY)`. Inside the effect — after the intent is
/// durable — it "sends a webhook" (prints the delivery the receiver would log, with the
/// effect's token as its `Idempotency-Key`) and then kills itself with SIGKILL before the
/// completion can be recorded: the one window where an effect happened but the ledger
/// cannot know it.
///
/// Protocol on standard output (each line one `write(2)`, so SIGKILL loses none):
///   `intent KEY TOKEN ATTEMPT`  the intent is durable and the effect has started;
///   `delivered TOKEN ID`        the simulated receiver logged delivery ID for TOKEN.
struct DemoChildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-child", abstract: "The process `onceledger demo` crashes on purpose.",
        shouldDisplay: false)

    @Argument(help: "The ledger directory `demo` created.")
    var dir: String

    @Option(help: "The key of the effect that is interrupted.")
    var key: String = "webhook:order-43-shipped"

    func run() async throws {
        let directory = dir
        let ledger = try await BlockingThread.run(name: "demo-child-open") { try Ledger.open(directory: directory) }
        _ = try await ledger.once(IdempotencyKey(key), as: String.self) { effect in
            UnbufferedOutput.line("intent \(effect.key) \(effect.token) \(effect.attempt)\n")
            // The effect: a webhook POST carrying the token as its Idempotency-Key. The
            // receiver's log is this line; `demo` asks it when reconciling.
            UnbufferedOutput.line("delivered \(effect.token) dlv_7f3a\n")
            // Power cut, OOM kill, deploy: the process dies before `once` can record the completion.
            kill(getpid(), SIGKILL)
            try await Task.sleep(for: .seconds(60))
            return "not reached"
        }
    }
}

// Proves that SIGINT and SIGTERM stop `onceledger stress` cleanly: it is started as a child
// process with many concurrent callers, the test reads its standard output until the first
// `ack` line (no sleep), sends the signal, and then checks that the process exited by itself
// with 128 + the signal number (130, 143) after saying so, that `onceledger pending` finds no
// pending-unknown key (the calls in flight were finished, not cut off), that every
// acknowledged key is done (`entries --state done --json`), and that `verify` finds the ledger
// closed cleanly. Before the handlers, the signal killed the process mid-call and left keys
// pending-unknown.
import Foundation
import Testing

@Suite(.serialized) struct StressSignalTests {
    @Test(arguments: [SIGINT, SIGTERM])
    func aStopSignalFinishesTheCallsInFlightAndClosesTheLedger(signal: Int32) throws {
        let name = signal == SIGINT ? "SIGINT" : "SIGTERM"
        let directory = try KillTestDirectory("stress-\(name)")
        defer { directory.remove() }
        let run = try KillTestProcess.start(
            ["stress", directory.path, "--effects", "100000000", "--concurrency", "500", "--keys", "100000",
             "--seed", "14", "--segment-bytes", "\(KillTests.segmentBytes)", "--fail-percent", "10"])
        run.waitForAcknowledgements(1)
        run.send(signal)
        let result = run.finish()
        #expect(result.signal == nil && result.status == 128 + signal,
                "\(name): stress did not exit by itself with \(128 + signal): status \(result.status), signal \(String(describing: result.signal))\n\(result.standardError)")
        #expect(result.standardError.contains("stress: \(name) received: starting no new calls; finishing the calls in flight, then closing the ledger\n"))
        #expect(result.standardError.hasSuffix("stress: stopped by \(name); the ledger was closed cleanly\n"), "\(result.standardError)")
        #expect(result.acknowledgements >= 1)

        let pending = try CLI.run(["pending", directory.path])
        #expect(pending.exitCode == 0)
        #expect(pending.stdout == "no pending-unknown entries\n", "\(name): \(pending.stdout.prefix(2000))")
        let entries = try CLI.run(["entries", directory.path, "--state", "done", "--json"])
        #expect(entries.exitCode == 0)
        let done = try KillTests.keys(fromEntriesJSON: entries.stdout)
        #expect(result.acknowledgedKeys.subtracting(done).isEmpty, "\(name): acknowledged keys not done")
        let verify = try CLI.run(["verify", directory.path])
        #expect(verify.exitCode == 0, "\(verify.stdout)")
        #expect(verify.stdout.contains("tail        clean\n"), "\(verify.stdout)")
    }
}

// The tests' way of running other programs (Tests/OnceLedgerTestProcess) must never hang a
// test run: a child inherits only 0–2, a descendant that keeps the output open is not waited
// for past a grace, and a child past its bound is killed and recorded as an issue.
import Foundation
import OnceLedgerTestProcess
import Synchronization
import Testing

@Suite struct ChildProcessTests {
    @Test func theChildInheritsOnlyItsStandardDescriptors() throws {
        // A descriptor of this process that is not close-on-exec: Foundation's would be one.
        let open = Glibc.open("/dev/null", O_RDONLY)
        #expect(open >= 3)
        defer { close(open) }
        let result = try ChildProcess.run("/bin/sh", ["-c", "ls /proc/$$/fd"])
        #expect(result.exitCode == 0, "\(result.stderr)")
        #expect(Set(result.stdout.split(separator: "\n").map(String.init)) == ["0", "1", "2"],
                "the child has other descriptors: \(result.stdout)")
    }

    @Test func exitCodesAndSignalsAreReportedAsAShellDoes() throws {
        let exited = try ChildProcess.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"])
        #expect(exited.exitCode == 3 && exited.signal == nil && !exited.timedOut)
        #expect(exited.stdout == "out\n" && exited.stderr == "err\n")
        let killed = try ChildProcess.run("/bin/sh", ["-c", "kill -TERM $$"])
        #expect(killed.signal == SIGTERM && killed.exitCode == 128 + SIGTERM)
    }

    @Test func linesArriveAsTheyAreWrittenAndWaitsEnd() throws {
        let seen = Mutex<[String]>([])
        let child = try ChildProcess.start("/bin/sh", ["-c", "echo one; echo two; read never"]) { line in
            seen.withLock { $0.append(line) }
        }
        // `read` on /dev/null returns at once: standard input is never a terminal or a pipe.
        #expect(child.wait { _ in seen.withLock { $0 } == ["one", "two"] })
        let result = child.finish()
        #expect(result.exitCode == 1 && result.stdout == "one\ntwo\n")
        // Once it ended, a wait for what will never come returns false at once.
        #expect(!child.wait { ended in ended == nil })
    }

    @Test func aDescendantHoldingTheOutputOpenIsNotWaitedFor() throws {
        // The shell exits at once; the sleep it left keeps the output pipe open.
        let result = try ChildProcess.run("/bin/sh", ["-c", "sleep 120 & echo $!"])
        #expect(result.exitCode == 0 && !result.timedOut)
        let descendant = try #require(pid_t(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(descendant, SIGKILL) == 0)
    }

    @Test func aChildPastItsBoundIsKilledAndTheTestFails() throws {
        var result: ChildProcess.Result?
        withKnownIssue("the bound of one second passes: the child is killed and an issue recorded") {
            result = try ChildProcess.run("/bin/sleep", ["120"], patience: 1)
        }
        #expect(result?.timedOut == true && result?.signal == SIGKILL)
    }

    @Test func aProgramThatCannotStartIsATypedError() {
        #expect(throws: SpawnError.self) { try ChildProcess.run("/nonexistent/program", []) }
    }
}

// A worker process for the multi-process tests (`Tests/OnceLedgerPostgresProcessTests`): opens
// a `PostgresStore` by URL and runs `Ledger.once` on the given keys, as one of several
// replicas of an app would. Every effect execution is appended to a file (one line, then
// fsync) before the effect returns, so the test can count executions across processes and
// across kills. Progress is written to standard output with write(2), one line per event,
// so a test can wait on it and a SIGKILL loses nothing printed:
//
//   ready                       the store is open
//   effect KEY TOKEN            the effect of KEY runs (its line is durable in --effects)
//   hold KEY                    the effect of KEY is held (--hold) until --release-file exists
//   performed KEY RECEIPT       once returned: this process ran the effect
//   already KEY RECEIPT         once returned: another caller had (its receipt)
//   error KEY CODE MESSAGE      once threw a LedgerError (CODE: its code) or another error ("other")
//   finished                    every key was called; the store is closed
//
// Usage: onceledger-postgres-worker --url URL --schema NAME --name NAME --effects PATH
//            --keys K1,K2,… [--concurrency N] [--policy fail-closed|retry] [--lease-ms N] [--answer-deadline-ms N]
//            [--hold KEY] [--release-file PATH] [--effect-delay-ms N] [--repeat N]
import Foundation
import OnceLedger
import OnceLedgerPostgres
import Synchronization

struct WorkerOptions {
    var url = ""
    var schema = ""
    var name = "worker"
    var effectsPath = ""
    var keys: [String] = []
    var concurrency = 1
    var retry = false
    var leaseMilliseconds: Int?
    var answerDeadlineMilliseconds: Int?
    var hold: String?
    var releaseFile: String?
    var repeats = 1
    var effectDelayMilliseconds = 0

    static func parse(_ arguments: [String]) -> WorkerOptions {
        var options = WorkerOptions()
        var index = 0
        func value() -> String {
            index += 1
            guard index < arguments.count else { fail("\(arguments[index - 1]) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--url": options.url = value()
            case "--schema": options.schema = value()
            case "--name": options.name = value()
            case "--effects": options.effectsPath = value()
            case "--keys": options.keys = value().split(separator: ",").map(String.init)
            case "--concurrency": options.concurrency = max(1, Int(value()) ?? 1)
            case "--policy":
                switch value() {
                case "retry": options.retry = true
                case "fail-closed": options.retry = false
                case let other: fail("unknown policy \(other)")
                }
            case "--lease-ms": options.leaseMilliseconds = Int(value())
            case "--answer-deadline-ms": options.answerDeadlineMilliseconds = Int(value())
            case "--hold": options.hold = value()
            case "--release-file": options.releaseFile = value()
            case "--repeat": options.repeats = max(1, Int(value()) ?? 1)
            case "--effect-delay-ms": options.effectDelayMilliseconds = max(0, Int(value()) ?? 0)
            case let other: fail("unknown argument \(other)")
            }
            index += 1
        }
        guard !options.url.isEmpty, !options.effectsPath.isEmpty, !options.keys.isEmpty else {
            fail("--url, --effects and --keys are required")
        }
        return options
    }
}

func fail(_ message: String) -> Never {
    say("fatal \(message)", fd: STDERR_FILENO)
    exit(2)
}

/// One line, one write(2): nothing buffered for a SIGKILL to lose.
func say(_ line: String, fd: Int32 = STDOUT_FILENO) {
    let bytes = Array((line + "\n").utf8)
    bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let count = write(fd, raw.baseAddress! + done, raw.count - done)
            if count > 0 { done += count } else if count < 0 && errno == EINTR { continue } else { return }
        }
    }
}

/// Appends `line` to the effects file and fsyncs it: the execution is on record before the
/// effect returns (and before any kill after this point).
func recordEffect(_ path: String, _ line: String) {
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    guard fd >= 0 else { fail("cannot open \(path): errno \(errno)") }
    let bytes = Array((line + "\n").utf8)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
    guard written == bytes.count, fsync(fd) == 0 else { fail("cannot append to \(path): errno \(errno)") }
    close(fd)
}

let options = WorkerOptions.parse(Array(CommandLine.arguments.dropFirst()))
signal(SIGPIPE, SIG_IGN)

let store: PostgresStore
do {
    var configuration = PostgresStore.Configuration(url: try PostgresURL(options.url),
                                                    schema: options.schema.isEmpty ? "onceledger" : options.schema)
    if let lease = options.leaseMilliseconds { configuration.lease = .milliseconds(lease) }
    if let deadline = options.answerDeadlineMilliseconds { configuration.answerDeadline = .milliseconds(deadline) }
    configuration.owner = "worker \(options.name) pid \(getpid())"
    store = try await PostgresStore.connect(configuration: configuration)
} catch {
    say("open-failed \(error)")
    exit(3)
}
let ledger = Ledger(store: store)
say("ready")

let next = Mutex(0)
let work = options.keys.count * options.repeats
await withTaskGroup(of: Void.self) { group in
    for _ in 0..<options.concurrency {
        group.addTask {
            while true {
                let index = next.withLock { value -> Int in defer { value += 1 }; return value }
                guard index < work else { return }
                let key = options.keys[index % options.keys.count]
                do {
                    let outcome = try await ledger.once(IdempotencyKey(key), as: String.self,
                                                        whenPending: options.retry ? .retry : .failClosed) { effect in
                        recordEffect(options.effectsPath, "\(key) \(effect.token) \(options.name) \(effect.attempt)")
                        say("effect \(key) \(effect.token)")
                        if options.effectDelayMilliseconds > 0 {
                            try await Task.sleep(for: .milliseconds(options.effectDelayMilliseconds))
                        }
                        if key == options.hold {
                            say("hold \(key)")
                            while options.releaseFile.map({ !FileManager.default.fileExists(atPath: $0) }) ?? true {
                                usleep(5_000)
                            }
                        }
                        return options.name
                    }
                    say("\(outcome.wasPerformed ? "performed" : "already") \(key) \(outcome.receipt)")
                } catch let error as LedgerError {
                    say("error \(key) \(error.code.rawValue) \(error.message.replacingOccurrences(of: "\n", with: " "))")
                } catch {
                    say("error \(key) other \("\(error)".replacingOccurrences(of: "\n", with: " "))")
                }
            }
        }
    }
}
try? ledger.close()
say("finished")

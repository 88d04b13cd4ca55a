import ArgumentParser
import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// `onceledger demo-child DIR`: the process `demo` crashes on purpose (hidden).
/// It appends intent/completion pairs, prints one `ack` line per acknowledged
/// (durable) append, then starts writing the next record, gets half of it into the
/// segment file, and kills itself with SIGKILL: the state a power loss in the
/// middle of a write leaves behind.
///
/// Protocol on standard output (written unbuffered, so nothing is lost to SIGKILL):
///   `ack <sequence> <kind> <key>` per acknowledged append;
///   `torn <segment> <offset> <bytes written> <frame bytes> <kind> <key>` before the kill.
struct DemoChildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-child", abstract: "The process `onceledger demo` crashes on purpose.",
        shouldDisplay: false)

    @Argument(help: "The ledger directory `demo` created.")
    var dir: String

    @Option(help: "Acknowledged appends before the crash.")
    var acks: Int = 5

    @Flag(help: "Crash between appends, without a half-written record.")
    var cleanKill = false

    func validate() throws {
        guard (1...1000).contains(acks) else { throw ValidationError("--acks must be in 1...1000") }
    }

    /// The effects the child performs, in order: an intent before each effect,
    /// a completion after it.
    static func plannedAppend(_ index: Int) -> (kind: RecordKind, key: String) {
        let keys = ["webhook:order-42-shipped", "email:receipt-order-42", "charge:order-43"]
        let effect = index / 2
        let key = effect < keys.count ? keys[effect] : "task:\(effect - keys.count + 1)"
        return (index % 2 == 0 ? .intent : .completion, key)
    }

    static func body(kind: RecordKind, key: String) -> RecordBody {
        let now = LogEngine.systemMilliseconds()
        return kind == .intent
            ? .intent(.init(key: key, attempt: 1, timeMilliseconds: now))
            : .completion(.init(key: key, attempt: 1, timeMilliseconds: now, receipt: Array("ok:\(key)".utf8)))
    }

    func run() async throws {
        let directory = dir
        let engine = try await BlockingThread.run { try LogEngine.open(directory: directory) }
        for index in 0..<acks {
            let (kind, key) = DemoChildCommand.plannedAppend(index)
            let sequence = try await engine.append(DemoChildCommand.body(kind: kind, key: key))
            emit("ack \(sequence) \(kind) \(key)")
        }
        if !cleanKill {
            // Everything appended is durable and the I/O thread is idle. Write the
            // first half of the next record where the engine would put it, as the
            // disk would have if power failed mid-write.
            let (kind, key) = DemoChildCommand.plannedAppend(acks)
            let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
            guard let last = report.segments.last else { throw BenchError("no segment to write into") }
            var frame: [UInt8] = []
            RecordFrame.encode(
                into: &frame, sequence: report.lastSequence + 1, ackedThrough: engine.durableSequence,
                previousChain: report.lastChain, kind: kind, flags: RecordHeader.flagBatchEnd,
                body: DemoChildCommand.body(kind: kind, key: key).encode(),
                position: RecordPosition(ledgerID: engine.ledgerID, segment: last.number, offset: last.endOffset))
            let written = max(FormatLimits.recordAlignment, frame.count / 2 / FormatLimits.recordAlignment
                * FormatLimits.recordAlignment)
            let fd = open(last.path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw BenchError("cannot open \(last.path)") }
            try RawSyncLoop.writeAll(fd, Array(frame[0..<written]), at: Int(last.endOffset), path: last.path)
            emit("torn \(last.number) \(last.endOffset) \(written) \(frame.count) \(kind) \(key)")
        }
        kill(getpid(), SIGKILL)
        // Not reached.
        try await Task.sleep(for: .seconds(60))
    }

    /// One line to standard output with write(2): no stdio buffer for SIGKILL to lose.
    private func emit(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(STDOUT_FILENO, raw.baseAddress! + done, raw.count - done)
                if n > 0 { done += n } else if errno != EINTR { return }
            }
        }
    }
}

// One way for the tests to run another program (the `onceledger` tool, `strace`, the
// PostgreSQL worker) that cannot hang a test run:
//
// - The child inherits standard input (/dev/null), output and error and no other descriptor
//   (`posix_spawn` with close-from 3), and this process's pipes are close-on-exec. With
//   Foundation's `Process`, whose pipes are not, every program started meanwhile by another
//   test (a PostgreSQL server, which lives on) kept the write ends of a test's pipes open,
//   and a read to their end waited for that program to exit.
// - It is waited for with `waitpid` on a thread of its own, never with `Process.waitUntilExit`,
//   which polls a run loop and has been seen to wait for ever for a program that had exited.
// - Every wait has a bound (`patienceSeconds`, far beyond what any test needs, never a timing
//   assertion): past it the child is killed with SIGKILL and the test records an issue that
//   names the command, so a hang fails the one test and the run goes on.
import COnceSupport
import Foundation
import Testing

public final class ChildProcess: @unchecked Sendable {
    /// How long a wait for a child may take before the test gives up and kills it.
    public static let patienceSeconds: Double = 300

    public struct Result: Sendable {
        /// The exit status, or 128 + the signal for a death by a signal (as a shell reports it).
        public var exitCode: Int32
        /// The signal that ended the child, if one did.
        public var signal: Int32?
        public var standardOutput: Data
        public var standardError: Data
        /// Whether the child outlived `patienceSeconds` and was killed by the test.
        public var timedOut: Bool

        public var stdout: String { String(decoding: standardOutput, as: UTF8.self) }
        public var stderr: String { String(decoding: standardError, as: UTF8.self) }
    }

    public let pid: pid_t
    public let commandLine: String
    private let condition = NSCondition()
    private var output = Data()
    private var errors = Data()
    private var openStreams = 2
    private var waitStatus: Int32?
    private var stopReading = false
    private var pendingLine = Data()
    private let onLine: (@Sendable (String) -> Void)?

    private init(pid: pid_t, commandLine: String, onLine: (@Sendable (String) -> Void)?) {
        self.pid = pid
        self.commandLine = commandLine
        self.onLine = onLine
    }

    /// Starts `executable arguments…`. `environment` replaces this process's environment when
    /// given. `onLine` is called (on a reader thread) with each whole line of standard output.
    public static func start(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                             onLine: (@Sendable (String) -> Void)? = nil) throws -> ChildProcess {
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        guard ol_pipe_cloexec(&outPipe) == 0 else { throw SpawnError(command: executable, errno: errno) }
        guard ol_pipe_cloexec(&errPipe) == 0 else {
            let saved = errno
            close(outPipe[0]); close(outPipe[1])
            throw SpawnError(command: executable, errno: saved)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        _ = ol_spawn_actions_close_from(&actions, 3)
        // No signal blocked, each at its default action (the spawning thread may block some).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        _ = ol_spawnattr_default_signals(&attributes)

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var envp: [UnsafeMutablePointer<CChar>?] = []
        if let environment {
            envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        }
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let spawned = argv.withUnsafeBufferPointer { arguments in
            if environment == nil {
                return posix_spawn(&pid, executable, &actions, &attributes, arguments.baseAddress!, environ)
            }
            return envp.withUnsafeBufferPointer { posix_spawn(&pid, executable, &actions, &attributes, arguments.baseAddress!, $0.baseAddress!) }
        }
        close(outPipe[1])
        close(errPipe[1])
        guard spawned == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            throw SpawnError(command: executable, errno: spawned)
        }
        let child = ChildProcess(pid: pid, commandLine: ([executable] + arguments).joined(separator: " "), onLine: onLine)
        let (outRead, errRead) = (outPipe[0], errPipe[0])
        let readOutput = Thread { child.read(outRead, isOutput: true) }
        let readErrors = Thread { child.read(errRead, isOutput: false) }
        let reap = Thread { child.reap() }
        readOutput.start()
        readErrors.start()
        reap.start()
        return child
    }

    /// Runs `executable arguments…` to its end (or the bound).
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           patience: Double = patienceSeconds) throws -> Result {
        try start(executable, arguments, environment: environment).finish(patience: patience)
    }

    /// How the child ended, once it exited and its output ended; nil before. Never waits.
    public var ended: Result? {
        condition.lock()
        defer { condition.unlock() }
        return endedLocked()
    }

    /// Sends `signal` to the child if it has not been reaped (its pid cannot have been reused).
    public func send(_ signal: Int32) {
        condition.lock()
        defer { condition.unlock() }
        if waitStatus == nil { kill(pid, signal) }
    }

    /// Waits until `done` holds, asking again whenever output arrives or the child ends
    /// (`done` is given the result once the child exited and its output ended, else nil).
    /// Returns whether `done` held; false once the child ended without it, or after `patience`
    /// seconds. Never kills the child.
    @discardableResult
    public func wait(patience: Double = patienceSeconds, until done: (_ ended: Result?) -> Bool) -> Bool {
        let deadline = Date(timeIntervalSinceNow: patience)
        condition.lock()
        defer { condition.unlock() }
        while true {
            let ended = endedLocked()
            if done(ended) { return true }
            if ended != nil { return false }
            if !condition.wait(until: deadline) { return done(endedLocked()) }
        }
    }

    /// Waits for the child to exit and its output to end. Past `patience` seconds it is killed
    /// (SIGKILL) and an issue naming the command is recorded. A descendant that still holds the
    /// output open 10 s after the child exited is not waited for (what was read is returned).
    public func finish(patience: Double = patienceSeconds) -> Result {
        var timedOut = false
        condition.lock()
        let deadline = Date(timeIntervalSinceNow: patience)
        while waitStatus == nil {
            if !condition.wait(until: deadline) && waitStatus == nil {
                timedOut = true
                kill(pid, SIGKILL)
                while waitStatus == nil { condition.wait() }  // SIGKILL cannot be ignored: the reaper wakes us.
            }
        }
        let grace = Date(timeIntervalSinceNow: 10)
        while openStreams > 0 && condition.wait(until: grace) {}
        stopReading = true
        let result = resultLocked(timedOut: timedOut)
        condition.unlock()
        if timedOut {
            Issue.record("\(commandLine) did not end within \(Int(patience)) s; killed (SIGKILL). Its error output:\n\(result.stderr)")
        }
        return result
    }

    private func endedLocked() -> Result? {
        waitStatus != nil && openStreams == 0 ? resultLocked(timedOut: false) : nil
    }

    /// What is known so far; the exit fields are meaningful once `waitStatus` is set.
    private func resultLocked(timedOut: Bool) -> Result {
        let status = waitStatus ?? 0
        // WIFSIGNALED / WTERMSIG / WEXITSTATUS, spelled out (the macros are not imported).
        let signalNumber = status & 0x7f
        let signal: Int32? = signalNumber != 0 ? signalNumber : nil
        return Result(exitCode: signal.map { 128 + $0 } ?? (status >> 8) & 0xff, signal: signal,
                      standardOutput: output, standardError: errors, timedOut: timedOut)
    }

    private func read(_ descriptor: Int32, isOutput: Bool) {
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 200)
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 {
                condition.lock()
                let stop = stopReading
                condition.unlock()
                if stop { break }
                continue
            }
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            let chunk = Data(buffer[0..<count])
            var lines: [String] = []
            condition.lock()
            if isOutput {
                output.append(chunk)
                if onLine != nil {
                    pendingLine.append(chunk)
                    while let newline = pendingLine.firstIndex(of: UInt8(ascii: "\n")) {
                        lines.append(String(decoding: pendingLine[pendingLine.startIndex..<newline], as: UTF8.self))
                        pendingLine.removeSubrange(pendingLine.startIndex...newline)
                    }
                }
            } else {
                errors.append(chunk)
            }
            condition.unlock()
            // Lines go to the callback before waiters wake, so what they wait on has seen them.
            if let onLine { for line in lines { onLine(line) } }
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
        condition.lock()
        openStreams -= 1
        condition.broadcast()
        condition.unlock()
    }

    private func reap() {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR {
                status = 0x7f  // cannot happen for our own child; reported as "ended by signal 127"
                break
            }
        }
        condition.lock()
        waitStatus = status
        condition.broadcast()
        condition.unlock()
    }
}

public struct SpawnError: Error, CustomStringConvertible {
    public var command: String
    public var errno: Int32
    public var description: String { "could not start \(command): \(String(cString: strerror(errno)))" }
}

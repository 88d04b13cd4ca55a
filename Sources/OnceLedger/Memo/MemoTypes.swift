import OnceLedgerFormat

/// How a run ended (`Ledger.finishRun`). Stored in the run-end record (`Spec/FORMAT.md` §5.17).
public enum RunStatus: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case succeeded = 1
    case failed = 2
    case cancelled = 3

    public var description: String {
        switch self {
        case .succeeded: "succeeded"
        case .failed: "failed"
        case .cancelled: "cancelled"
        }
    }

    var record: RecordBody.RunStatus {
        switch self {
        case .succeeded: .succeeded
        case .failed: .failed
        case .cancelled: .cancelled
        }
    }

    init(_ record: RecordBody.RunStatus) {
        switch record {
        case .succeeded: self = .succeeded
        case .failed: self = .failed
        case .cancelled: self = .cancelled
        }
    }
}

/// Whether `a` and `b` are the same UTF-8 bytes: how the memo compares its texts. Swift's
/// `==` on `String` is canonical equivalence ("café" with U+00E9 equals "café" with "e" +
/// U+0301), under which two runs, steps or names the store keeps apart would be one.
@inline(__always)
func sameBytes(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

/// Feeds `text`'s UTF-8 bytes and their count to `hasher` (`sameBytes`'s hash).
@inline(__always)
func hashBytes(_ text: String, into hasher: inout Hasher) {
    var text = text
    text.withUTF8 { bytes in
        hasher.combine(bytes.count)
        hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
    }
}

/// A run, as the memo names it: a run id within a namespace (several runtimes sharing one
/// ledger each use their own namespace and never see each other's runs). Equal, and hashed,
/// by the UTF-8 bytes of both, as the store compares them.
public struct MemoRun: Sendable, Hashable, CustomStringConvertible {
    public var namespace: String
    public var run: String

    public init(namespace: String = "", run: String) {
        self.namespace = namespace
        self.run = run
    }

    public var description: String { namespace.isEmpty ? run : "\(namespace)/\(run)" }

    public static func == (a: MemoRun, b: MemoRun) -> Bool { sameBytes(a.run, b.run) && sameBytes(a.namespace, b.namespace) }

    public func hash(into hasher: inout Hasher) {
        hashBytes(namespace, into: &hasher)
        hashBytes(run, into: &hasher)
    }

    /// Checks the named limits (`FormatLimits.namespaceBytesMax`, `runBytesMax`) and that the
    /// run id is not empty, before anything is written.
    func validate() throws {
        if run.isEmpty {
            throw LedgerError(.invalidArgument,
                              "the run id is empty; give every run a nonempty id (an empty one would name every run)",
                              limit: "runBytesMax")
        }
        try MemoRun.check(run, FormatLimits.runBytesMax, "run id", limit: "runBytesMax")
        try MemoRun.check(namespace, FormatLimits.namespaceBytesMax, "namespace", limit: "namespaceBytesMax")
    }

    static func check(_ text: String, _ max: Int, _ what: String, limit: String) throws {
        let count = text.utf8.count
        if count > max {
            throw LedgerError(.limitExceeded,
                              "the memo \(what) is \(count) bytes; the limit is \(max). Use a shorter \(what) (a hash of a long one); nothing was written",
                              limit: limit)
        }
    }
}

/// One memo value's address: a name within a step of one generation of a run. Equal, and
/// hashed, by the UTF-8 bytes of its texts, as the store compares them.
public struct MemoKey: Sendable, Hashable, CustomStringConvertible {
    public var run: MemoRun
    /// The run generation the value belongs to (`Memo.generation`).
    public var generation: UInt64
    public var step: String
    public var name: String

    public init(run: MemoRun, generation: UInt64, step: String, name: String) {
        self.run = run
        self.generation = generation
        self.step = step
        self.name = name
    }

    public var description: String { "\(run) generation \(generation) step \"\(step)\" name \"\(name)\"" }

    public static func == (a: MemoKey, b: MemoKey) -> Bool {
        a.generation == b.generation && sameBytes(a.name, b.name) && sameBytes(a.step, b.step) && a.run == b.run
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(run)
        hasher.combine(generation)
        hashBytes(step, into: &hasher)
        hashBytes(name, into: &hasher)
    }
}

/// A stored memo value, as the store returns it.
public struct MemoValue: Sendable, Hashable {
    public var key: MemoKey
    /// SHA-256 of the canonical encoding of the input it was stored with; nil for none.
    public var inputDigest: [UInt8]?
    /// When it was stored (the ledger's clock).
    public var timeMilliseconds: UInt64
    public var bytes: [UInt8]

    public init(key: MemoKey, inputDigest: [UInt8]?, timeMilliseconds: UInt64, bytes: [UInt8]) {
        self.key = key
        self.inputDigest = inputDigest
        self.timeMilliseconds = timeMilliseconds
        self.bytes = bytes
    }
}

/// What `memoPut` is asked.
public struct MemoPutRequest: Sendable, Hashable {
    public var key: MemoKey
    public var value: [UInt8]
    /// SHA-256 of the canonical input encoding (32 bytes), or nil for none.
    public var inputDigest: [UInt8]?
    public var timeMilliseconds: UInt64

    public init(key: MemoKey, value: [UInt8], inputDigest: [UInt8]?, timeMilliseconds: UInt64) {
        self.key = key
        self.value = value
        self.inputDigest = inputDigest
        self.timeMilliseconds = timeMilliseconds
    }
}

/// One generation of a run, as `runs` lists it.
public struct RunInfo: Sendable, Hashable {
    public var run: MemoRun
    public var generation: UInt64
    /// How it ended; nil while it runs.
    public var status: RunStatus?
    /// When it ended (the ledger's clock); nil while it runs.
    public var endTimeMilliseconds: UInt64?
    /// Memo values it holds, and their bytes.
    public var entryCount: Int
    public var valueBytes: Int

    public init(run: MemoRun, generation: UInt64, status: RunStatus?, endTimeMilliseconds: UInt64?,
                entryCount: Int, valueBytes: Int) {
        self.run = run
        self.generation = generation
        self.status = status
        self.endTimeMilliseconds = endTimeMilliseconds
        self.entryCount = entryCount
        self.valueBytes = valueBytes
    }
}

/// Which run generations `runs` lists.
public struct RunQuery: Sendable, Hashable {
    /// Only this namespace's runs; nil: every namespace.
    public var namespace: String?
    /// Only this run id's generations; nil: every run.
    public var run: String?

    public init(namespace: String? = nil, run: String? = nil) {
        self.namespace = namespace
        self.run = run
    }
}

/// How long the memo of an ended run is kept, per how it ended. A status without a window
/// keeps its runs' memo forever. `sweepInterval` is how often the background sweeper runs:
/// at most once a second (a shorter, zero or negative interval counts as one second) and at
/// least once in about 136 years (a longer one, `.seconds(.max)` say, counts as that).
public struct MemoRetention: Sendable, Hashable {
    public var succeeded: Duration?
    public var failed: Duration?
    public var cancelled: Duration?
    public var sweepInterval: Duration

    /// The same window for every status.
    public init(_ window: Duration, sweepInterval: Duration = .seconds(60)) {
        self.init(succeeded: window, failed: window, cancelled: window, sweepInterval: sweepInterval)
    }

    public init(succeeded: Duration?, failed: Duration?, cancelled: Duration?, sweepInterval: Duration = .seconds(60)) {
        self.succeeded = succeeded
        self.failed = failed
        self.cancelled = cancelled
        self.sweepInterval = sweepInterval
    }

    /// The window for `status` in milliseconds (negative windows count as 0, huge ones
    /// saturate); nil: kept forever.
    public func windowMilliseconds(for status: RunStatus) -> UInt64? {
        let window: Duration? = switch status {
        case .succeeded: succeeded
        case .failed: failed
        case .cancelled: cancelled
        }
        return window.map(MemoRetention.milliseconds)
    }

    static func milliseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1000)
        if overflow { return .max }
        let (sum, overflow2) = whole.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000_000_000))
        return overflow2 ? .max : sum
    }
}

/// What `sweepMemo` is asked: sweep the memo of every ended run generation whose end is at
/// least its status's retention window before `nowMilliseconds`.
public struct MemoSweepRequest: Sendable, Hashable {
    public var nowMilliseconds: UInt64
    public var retention: MemoRetention

    public init(nowMilliseconds: UInt64, retention: MemoRetention) {
        self.nowMilliseconds = nowMilliseconds
        self.retention = retention
    }
}

/// What a sweep removed.
public struct MemoSweepResult: Sendable, Hashable {
    /// Run generations whose memo was swept.
    public var runs: [MemoRun: [UInt64]]
    /// Memo values removed with them.
    public var entries: Int

    public init(runs: [MemoRun: [UInt64]] = [:], entries: Int = 0) {
        self.runs = runs
        self.entries = entries
    }

    /// How many run generations were swept.
    public var generationCount: Int { runs.values.reduce(0) { $0 + $1.count } }
}

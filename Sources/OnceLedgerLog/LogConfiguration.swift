import OnceLedgerFormat

/// Tuning and limits of one open log. Every bound is named; `validate()` checks the
/// relations between them (TigerBeetle's "put a limit on everything").
public struct LogConfiguration: Sendable, Hashable {
    /// Largest size of a preallocated segment file. A new segment is started when the
    /// next record does not fit. Segments start at `initialSegmentBytes` and double
    /// up to this size (`Spec/FORMAT.md` §3.4).
    public var segmentBytes: UInt64 = 64 << 20
    /// Size of a ledger's first segment, and of the segment a compaction starts
    /// (at most `segmentBytes`). Each later segment is twice the previous one, up to
    /// `segmentBytes`, and always large enough for the record that starts it. Small, so
    /// that a new ledger costs little disk and little time to create (a test suite may
    /// open hundreds); doubling reaches the full size after a few segments.
    public var initialSegmentBytes: UInt64 = 256 << 10
    /// Largest record body accepted by `append`: room for a memo or journal value of
    /// `FormatLimits.valueBytesMax` plus its names (`FormatLimits.typedBodyBytesMax`).
    public var recordBodyBytesMax: UInt32 = LogConfiguration.recordBodyBytesDefault
    public static let recordBodyBytesDefault: UInt32 = (1 << 20) + (4 << 10)
    /// Most records written in one commit batch (one write, one fdatasync).
    public var batchRecordsMax: Int = 4096
    /// Most frame bytes written in one commit batch.
    public var batchBytesMax: Int = 8 << 20
    /// Most records waiting for the I/O thread; `append` beyond it throws `.limitExceeded`.
    public var queuedRecordsMax: Int = 1 << 20
    /// Most records in one `append` call (one group, committed in one batch; not atomic
    /// after a crash, `Spec/RECOVERY.md` §7).
    public var appendRecordsMax: Int = 1024
    /// Let an open that may create a ledger create it in a directory that already holds
    /// other files (and no ledger). Off by default: such an open throws `.notALedger`,
    /// as the read-only tools call that directory, rather than create a ledger among
    /// unrelated files. `LOCK`, the ledger's temporary and torn files and `lost+found`
    /// do not count.
    public var adoptNonEmptyDirectory: Bool = false
    /// Write a checkpoint record on `close()` so the last batch is covered by an
    /// acked-through value (a later flip in it is then detected as corruption).
    public var checkpointOnClose: Bool = true
    /// Opt-in: after resuming a batch's callers, the I/O thread may keep polling for
    /// new work (lock-free, yielding the CPU between polls) before it sleeps on its
    /// condition, so a caller that appends again soon is picked up without a thread
    /// wake-up (tens of µs on a virtual machine). It then polls for about twice the
    /// recent gap between a batch and the next append, at most this long, and not at
    /// all when appends come further apart than this. 0 (the default): no polling; the
    /// I/O thread sleeps as soon as the queue is empty, so a library embedded in an app
    /// burns no CPU between commits. About 200 covers a caller's task being resumed on
    /// a pool thread, a short effect and the next append, for a lone caller that wants
    /// every µs and can spare the CPU.
    public var idleSpinMicroseconds: Int = 0
    /// After a batch of more than one caller, the I/O thread waits up to this long
    /// for the callers it just resumed to append again, so they join the next batch
    /// rather than forming a separate one. It stops early once they all have, or the
    /// queue stops growing for a quarter of this time; and it does not wait when at
    /// least half as many appends as it resumed are queued already (the callers take
    /// turns in two halves, and the queued half is committed at once). 0 disables it.
    public var batchGatherMicroseconds: Int = 50
    /// Whether a compaction writes its snapshot on a thread of its own while later appends
    /// commit (the default). The I/O thread still takes the state's items (its metadata:
    /// about a second per ten million entries or journal positions) and finishes the
    /// compaction (deletes what the snapshot covers, commits the marker); only the writing
    /// of the snapshot — the receipts and values read back, the file synced — runs beside
    /// appends. false: all of it runs on the I/O thread and appends wait, as before.
    /// Either way the files and every crash state are the same kinds (`Spec/FORMAT.md` §8).
    public var compactsInBackground: Bool = true
    /// Opt-in automatic compaction (`FileStore`): once the records committed since the last
    /// snapshot hold this many bytes, and at least as many as that snapshot, the store
    /// compacts by itself, as `Ledger.compact()` does (with the ledger's clock, so entries
    /// and swept memo values that block nothing are dropped, and disk stays bounded under a
    /// steady workload without the application scheduling compactions). The compaction runs
    /// like a manual one: its snapshot is written beside the appends
    /// (`compactsInBackground`; see `Spec/FORMAT.md` §8). nil (the
    /// default): only `compact()` compacts. At least `compactAfterLogBytesMin`.
    public var compactAfterLogBytes: UInt64?
    /// Lower bound of `compactAfterLogBytes` (64 KiB): below it a busy ledger would do
    /// little but compact.
    public static let compactAfterLogBytesMin: UInt64 = 64 << 10
    /// Upper bound of `idleSpinMicroseconds` and `batchGatherMicroseconds`.
    public static let pollMicrosecondsMax = 10_000
    /// The identity a ledger is *created* with: its id and token scheme (`Spec/FORMAT.md`
    /// §3.3, §9.3). nil (the default): a random id and ledger-scoped tokens. Used only when
    /// an open creates the ledger; an existing ledger keeps the identity its files carry.
    /// Set it only to carry one ledger's identity into a new directory that replaces it:
    /// `onceledger salvage` does, so every salvaged entry keeps its effect token (a
    /// pending-unknown entry retried there presents the downstream the token it saw
    /// before). Two ledgers with one id are not told apart by the foreign-file checks (only
    /// by the sequence and chain checks), so never give a second, live ledger the id of
    /// one that is still in use.
    public var newLedgerIdentity: LedgerIdentity?

    public init() {}

    public init(segmentBytes: UInt64, recordBodyBytesMax: UInt32? = nil) {
        self.segmentBytes = segmentBytes
        // Room for the header, one record header and the seal every segment keeps room for.
        let overhead = UInt64(FormatLimits.segmentHeaderBytes + FormatLimits.recordHeaderBytes + FormatLimits.sealFrameBytes)
        let room = segmentBytes > overhead ? segmentBytes - overhead : 0
        self.recordBodyBytesMax = recordBodyBytesMax
            ?? UInt32(min(UInt64(LogConfiguration.recordBodyBytesDefault), room & ~7))
    }

    /// Largest frame a record of `recordBodyBytesMax` occupies.
    public var recordFrameBytesMax: Int { RecordFrame.frameBytes(bodyBytes: Int(recordBodyBytesMax)) }

    public func validate() throws {
        func bad(_ text: String) -> LedgerError { LedgerError(.invalidArgument, "invalid configuration: \(text)") }
        guard segmentBytes >= FormatLimits.segmentBytesMin, segmentBytes <= FormatLimits.segmentBytesMax,
              segmentBytes % UInt64(FormatLimits.recordAlignment) == 0
        else {
            throw bad("segmentBytes \(segmentBytes) must be a multiple of 8 in \(FormatLimits.segmentBytesMin)...\(FormatLimits.segmentBytesMax)")
        }
        guard initialSegmentBytes >= FormatLimits.segmentBytesMin, initialSegmentBytes <= FormatLimits.segmentBytesMax,
              initialSegmentBytes % UInt64(FormatLimits.recordAlignment) == 0
        else {
            throw bad("initialSegmentBytes \(initialSegmentBytes) must be a multiple of 8 in \(FormatLimits.segmentBytesMin)...\(FormatLimits.segmentBytesMax)")
        }
        guard recordBodyBytesMax <= FormatLimits.recordBodyBytesMax else {
            throw bad("recordBodyBytesMax \(recordBodyBytesMax) exceeds the format's \(FormatLimits.recordBodyBytesMax)")
        }
        guard UInt64(FormatLimits.segmentHeaderBytes + recordFrameBytesMax + FormatLimits.sealFrameBytes) <= segmentBytes else {
            throw bad("a record of recordBodyBytesMax \(recordBodyBytesMax) does not fit a segment of \(segmentBytes) bytes")
        }
        guard batchRecordsMax >= 1, batchBytesMax >= recordFrameBytesMax else {
            throw bad("a batch must hold at least one largest record")
        }
        guard appendRecordsMax >= 1, appendRecordsMax <= batchRecordsMax, queuedRecordsMax >= appendRecordsMax else {
            throw bad("appendRecordsMax must be in 1...batchRecordsMax and at most queuedRecordsMax")
        }
        if let identity = newLedgerIdentity { try identity.validate() }
        if let bytes = compactAfterLogBytes, bytes < LogConfiguration.compactAfterLogBytesMin {
            throw bad("compactAfterLogBytes \(bytes) is below \(LogConfiguration.compactAfterLogBytesMin)")
        }
        guard (0...LogConfiguration.pollMicrosecondsMax).contains(idleSpinMicroseconds),
              (0...LogConfiguration.pollMicrosecondsMax).contains(batchGatherMicroseconds)
        else {
            throw bad("idleSpinMicroseconds and batchGatherMicroseconds must be in 0...\(LogConfiguration.pollMicrosecondsMax)")
        }
    }
}

/// A ledger's identity: its id (`Spec/FORMAT.md` §3.3) and how it derives effect tokens
/// (§9.3), which together decide every entry's token. See `LogConfiguration.newLedgerIdentity`.
public struct LedgerIdentity: Sendable, Hashable {
    public var ledgerID: LedgerID
    /// `.ledger(ledgerID)` (token v2, header flag set) or `.unscoped` (token v1, a ledger
    /// created by format version 1; flag clear).
    public var tokenScope: TokenScope

    public init(ledgerID: LedgerID, tokenScope: TokenScope) {
        self.ledgerID = ledgerID
        self.tokenScope = tokenScope
    }

    /// The identity of a ledger with this id and header flag.
    public init(ledgerID: LedgerID, ledgerScopedTokens: Bool) {
        self.init(ledgerID: ledgerID, tokenScope: TokenScope(ledgerID: ledgerID, ledgerScopedTokens: ledgerScopedTokens))
    }

    /// The id has 16 bytes, and a ledger-scoped scheme names this ledger's own id (the
    /// headers record only the flag: the id a v2 token hashes is always the ledger's).
    public func validate() throws {
        guard ledgerID.bytes.count == FormatLimits.ledgerIDBytes else {
            throw LedgerError(.invalidArgument,
                              "invalid configuration: newLedgerIdentity's ledger id has \(ledgerID.bytes.count) bytes, not \(FormatLimits.ledgerIDBytes)")
        }
        if case .ledger(let scoped) = tokenScope, scoped != ledgerID {
            throw LedgerError(.invalidArgument,
                              "invalid configuration: newLedgerIdentity's token scope names ledger \(scoped), not its own id \(ledgerID); use .ledger(ledgerID) or .unscoped")
        }
    }
}

/// One record to append: a kind and an encoded body.
public struct LogRecord: Sendable, Hashable {
    public var kind: RecordKind
    public var body: [UInt8]
    public init(kind: RecordKind, body: [UInt8]) {
        self.kind = kind
        self.body = body
    }

    public init(_ body: RecordBody) {
        self.kind = body.kind
        self.body = body.encode()
    }
}

/// The kind field of a record header (`Spec/FORMAT.md` §5). Stored as u16.
public struct RecordKind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Intent: the effect for a key is about to start (durable before the effect runs).
    public static let intent = RecordKind(rawValue: 1)
    /// Completion: the effect finished; carries the receipt.
    public static let completion = RecordKind(rawValue: 2)
    /// Release: the effect threw "did not happen"; the key is absent again.
    public static let release = RecordKind(rawValue: 3)
    /// Resolve: an operator or reconcile closure resolved a pending-unknown entry.
    public static let resolve = RecordKind(rawValue: 4)
    /// Forget: an audited removal of a done entry.
    public static let forget = RecordKind(rawValue: 5)
    /// Memo put: a cached value for one (run, step, name).
    public static let memoPut = RecordKind(rawValue: 6)
    /// Journal entry: the recorded value of a non-deterministic step at a position.
    public static let journalEntry = RecordKind(rawValue: 7)
    /// Run terminal: a run ended; its memo entries may be swept after retention.
    public static let runTerminal = RecordKind(rawValue: 8)
    /// Snapshot marker: a snapshot covering everything through a sequence number was installed.
    public static let snapshotMarker = RecordKind(rawValue: 9)
    /// Checkpoint: carries no state; written on clean close so that the last batch's
    /// records are covered by an acked-through value.
    public static let checkpoint = RecordKind(rawValue: 10)
    /// Entry state: a snapshot item (never a log record) holding one key's whole state.
    public static let entryState = RecordKind(rawValue: 11)
    /// Seal (format version 2): the last record of a segment, naming its successor, so
    /// the newest segment's existence is provable from the segment before it.
    public static let seal = RecordKind(rawValue: 12)
    /// Memo entry: a cached value for one (namespace, run, generation, step, name), with the
    /// digest of the input it was computed from. Supersedes the reserved kind 6, whose
    /// layout version-2 readers know and would call malformed (`Spec/FORMAT.md` §5.16).
    public static let memoEntry = RecordKind(rawValue: 13)
    /// Run end: one generation of a run ended (succeeded, failed or cancelled); its memo
    /// may be swept after the retention window. Supersedes the reserved kind 8 (§5.17).
    public static let runEnd = RecordKind(rawValue: 14)
    /// Memo sweep: one ended run generation's memo is dropped (§5.18).
    public static let memoSweep = RecordKind(rawValue: 15)
    /// Generation floor (snapshot items): the generation a key the ledger holds no entry of
    /// starts at, raised when compaction drops entries, so no token is issued twice
    /// (`Spec/FORMAT.md` §5.19, §9.5).
    public static let generationFloor = RecordKind(rawValue: 16)
    /// Entry retention (snapshot items): the de-duplication scope of the intent behind one
    /// key's entry, which decides when compaction may drop it (§5.20, §9.5).
    public static let entryRetention = RecordKind(rawValue: 17)
    /// Journal positions (version 4 snapshot hints only, never a log record nor an item):
    /// the memo entries of consecutive journal positions of one run generation, without
    /// their keys (`Spec/FORMAT.md` §5.21, `JournalPositions`). Not in `known`: a log
    /// record or a whole item of this kind is one no writer makes.
    public static let journalPositions = RecordKind(rawValue: 18)
    /// Opaque: a record whose body the log engine does not interpret (tests, benchmarks).
    public static let opaque = RecordKind(rawValue: 0x7fff)

    public static let known: [RecordKind] = [
        .intent, .completion, .release, .resolve, .forget, .memoPut, .journalEntry, .runTerminal,
        .snapshotMarker, .checkpoint, .entryState, .seal, .memoEntry, .runEnd, .memoSweep, .generationFloor,
        .entryRetention, .opaque,
    ]

    /// The kinds of the memo (`Spec/FORMAT.md` §5.16–§5.18): the ledger's memo table applies
    /// them, the entry table never sees them.
    public static let memoKinds: [RecordKind] = [.memoEntry, .runEnd, .memoSweep]

    /// Whether this is one of `memoKinds` (checked per replayed record, so a range test).
    @inlinable public var isMemo: Bool { (13...15).contains(rawValue) }

    public var isKnown: Bool { RecordKind.known.contains(self) }

    public var name: String {
        switch self {
        case .intent: "intent"
        case .completion: "completion"
        case .release: "release"
        case .resolve: "resolve"
        case .forget: "forget"
        case .memoPut: "memo-put"
        case .journalEntry: "journal-entry"
        case .runTerminal: "run-terminal"
        case .snapshotMarker: "snapshot-marker"
        case .checkpoint: "checkpoint"
        case .entryState: "entry-state"
        case .seal: "seal"
        case .memoEntry: "memo-entry"
        case .runEnd: "run-end"
        case .memoSweep: "memo-sweep"
        case .generationFloor: "generation-floor"
        case .entryRetention: "entry-retention"
        case .journalPositions: "journal-positions"
        case .opaque: "opaque"
        default: "unknown-\(rawValue)"
        }
    }

    public init?(name: String) {
        guard let kind = RecordKind.known.first(where: { $0.name == name }) else { return nil }
        self = kind
    }

    public var description: String { name }
}

import OnceLedgerFormat

/// The recovery decision table of `Spec/RECOVERY.md`, as data.
///
/// The scanner gathers facts (`RecoveryObservation`) without deciding anything;
/// `RecoveryTable.decide` maps them to exactly one labelled row. Facts are
/// gathered in stages (snapshot, segment set, headers, links, records) and a row
/// only looks at a later stage when every earlier stage is fine, so the rows
/// partition the whole input space; `RecoveryTableTests` checks that every
/// combination matches exactly one row.
public struct RecoveryObservation: Hashable, Sendable, CustomStringConvertible {
    public enum SnapshotState: Hashable, Sendable, CaseIterable { case none, valid, invalid, unsupportedVersion, foreign }
    public enum SegmentSetState: Hashable, Sendable, CaseIterable { case empty, contiguous, gap }
    public enum HeaderState: Hashable, Sendable, CaseIterable { case valid, corrupt, truncated, unsupportedVersion, foreign }
    public enum LinkState: Hashable, Sendable, CaseIterable { case continuous, broken }
    public enum TailState: Hashable, Sendable, CaseIterable { case clean, bad }
    public enum LaterState: Hashable, Sendable, CaseIterable { case none, notCovering, covering }
    public enum SuccessorState: Hashable, Sendable, CaseIterable { case none, interrupted, missing }

    /// The newest snapshot file.
    public var snapshot: SnapshotState = .none
    /// Segment numbers contiguous, and the first one reaching back to the snapshot.
    public var segments: SegmentSetState = .empty
    /// The first segment header that is not valid, or `.valid`.
    public var header: HeaderState = .valid
    /// Sequence numbers and chain values continue across headers and records.
    public var link: LinkState = .continuous
    /// Whether a bad record (garbage, a hole, or a record that fails its checksum) was found.
    public var tail: TailState = .clean
    /// The bad record lies in a segment that is not the last one.
    public var badInSealedSegment: Bool = false
    /// The bad record's expected sequence number is at or below the snapshot's.
    public var badCoveredBySnapshot: Bool = false
    /// Valid records after the bad one, and whether one's acked-through covers it.
    public var laterValid: LaterState = .none
    /// Whether the last segment ends with a seal naming a successor that does not exist:
    /// `none` (no such seal), `interrupted` (only the successor's `.tmp` file exists: a
    /// rollover cut between the seal and the rename), `missing` (not even that).
    public var successor: SuccessorState = .none

    public init() {}

    public var description: String {
        "snapshot=\(snapshot) segments=\(segments) header=\(header) link=\(link) tail=\(tail) "
            + "sealed=\(badInSealedSegment) covered=\(badCoveredBySnapshot) later=\(laterValid) successor=\(successor)"
    }

    /// Every combination of facts, for the exhaustiveness test.
    public static var allCombinations: [RecoveryObservation] {
        var result: [RecoveryObservation] = []
        for snapshot in SnapshotState.allCases {
            for segments in SegmentSetState.allCases {
                for header in HeaderState.allCases {
                    for link in LinkState.allCases {
                        for tail in TailState.allCases {
                            for sealed in [false, true] {
                                for covered in [false, true] {
                                    for later in LaterState.allCases {
                                      for successor in SuccessorState.allCases {
                                        var o = RecoveryObservation()
                                        o.snapshot = snapshot
                                        o.segments = segments
                                        o.header = header
                                        o.link = link
                                        o.tail = tail
                                        o.badInSealedSegment = sealed
                                        o.badCoveredBySnapshot = covered
                                        o.laterValid = later
                                        o.successor = successor
                                        result.append(o)
                                      }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return result
    }
}

public struct RecoveryRow: Sendable, Hashable, CustomStringConvertible {
    public enum Action: Sendable, Hashable {
        /// Create a new ledger (when creation is allowed; otherwise `notALedger`).
        case createNew
        /// Open and append after the last valid record.
        case open
        /// Copy the tail from the first bad record to a side file, truncate there
        /// (zero to the end of the segment), make that durable, then open.
        case quarantineTornTail
        /// Finish an interrupted rollover: check (or rewrite) the successor's `.tmp`
        /// file, rename it into place, make that durable, then open.
        case completeRollover
        /// Refuse to open with a typed error of this code.
        case refuse(LedgerError.Code)
    }

    public let label: String
    public let summary: String
    public let action: Action
    let matches: @Sendable (RecoveryObservation) -> Bool

    public var description: String { label }
    public static func == (lhs: RecoveryRow, rhs: RecoveryRow) -> Bool { lhs.label == rhs.label }
    public func hash(into hasher: inout Hasher) { hasher.combine(label) }
}

public enum RecoveryTable {
    private static func snapshotUsable(_ o: RecoveryObservation) -> Bool { o.snapshot == .none || o.snapshot == .valid }
    private static func setUsable(_ o: RecoveryObservation) -> Bool {
        snapshotUsable(o) && o.segments == .contiguous
    }
    private static func headersUsable(_ o: RecoveryObservation) -> Bool { setUsable(o) && o.header == .valid }
    private static func linksUsable(_ o: RecoveryObservation) -> Bool { headersUsable(o) && o.link == .continuous }
    private static func badRecord(_ o: RecoveryObservation) -> Bool { linksUsable(o) && o.tail == .bad }
    private static func cleanTail(_ o: RecoveryObservation) -> Bool { linksUsable(o) && o.tail == .clean }

    /// The rows, in the order `Spec/RECOVERY.md` lists them.
    public static let rows: [RecoveryRow] = [
        RecoveryRow(label: "R1 invalid-snapshot", summary: "the newest snapshot fails its checksums or fields",
                    action: .refuse(.invalidSnapshot), matches: { $0.snapshot == .invalid }),
        RecoveryRow(label: "R2 snapshot-unsupported-version", summary: "the newest snapshot has a newer format version",
                    action: .refuse(.unsupportedVersion), matches: { $0.snapshot == .unsupportedVersion }),
        RecoveryRow(label: "R3 snapshot-foreign", summary: "the snapshot's ledger id differs from the segments'",
                    action: .refuse(.foreignLedger), matches: { $0.snapshot == .foreign }),
        RecoveryRow(label: "R4 empty", summary: "no snapshot and no segment",
                    action: .createNew, matches: { $0.snapshot == .none && $0.segments == .empty }),
        RecoveryRow(label: "R5 missing-segment",
                    summary: "segment numbers have a gap, the first segment starts after the snapshot, or a snapshot has no segment",
                    action: .refuse(.missingSegment),
                    matches: { o in
                        snapshotUsable(o) && (o.segments == .gap || (o.segments == .empty && o.snapshot == .valid))
                    }),
        RecoveryRow(label: "R6 corrupt-segment-header", summary: "a segment header fails its checksum or fields",
                    action: .refuse(.corruptSegmentHeader), matches: { setUsable($0) && $0.header == .corrupt }),
        RecoveryRow(label: "R7 truncated-segment", summary: "a segment file's size differs from its header's segment bytes",
                    action: .refuse(.corruptSegmentHeader), matches: { setUsable($0) && $0.header == .truncated }),
        RecoveryRow(label: "R8 segment-unsupported-version", summary: "a segment has a newer format version",
                    action: .refuse(.unsupportedVersion), matches: { setUsable($0) && $0.header == .unsupportedVersion }),
        RecoveryRow(label: "R9 foreign-segment", summary: "a segment carries another ledger's id",
                    action: .refuse(.foreignLedger), matches: { setUsable($0) && $0.header == .foreign }),
        RecoveryRow(label: "R10 chain-break",
                    summary: "a valid record or header does not continue the sequence number or chain value",
                    action: .refuse(.chainBreak), matches: { headersUsable($0) && $0.link == .broken }),
        RecoveryRow(label: "R11 clean", summary: "every record valid; the rest of the last segment is zeros",
                    action: .open, matches: { cleanTail($0) && $0.successor == .none }),
        RecoveryRow(label: "R12 corrupt-sealed", summary: "a bad record in a segment that is not the last",
                    action: .refuse(.corruptRecord), matches: { badRecord($0) && $0.badInSealedSegment }),
        RecoveryRow(label: "R13 corrupt-covered-by-snapshot",
                    summary: "a bad record at or below the snapshot's sequence number",
                    action: .refuse(.corruptRecord),
                    matches: { badRecord($0) && !$0.badInSealedSegment && $0.badCoveredBySnapshot }),
        RecoveryRow(label: "R14 corrupt-acked",
                    summary: "a bad record followed by a valid record whose acked-through covers it",
                    action: .refuse(.corruptRecord),
                    matches: { o in
                        badRecord(o) && !o.badInSealedSegment && !o.badCoveredBySnapshot && o.laterValid == .covering
                    }),
        RecoveryRow(label: "R15 torn-tail",
                    summary: "a bad record in the last segment that nothing proves durable",
                    action: .quarantineTornTail,
                    matches: { o in
                        badRecord(o) && !o.badInSealedSegment && !o.badCoveredBySnapshot && o.laterValid != .covering
                    }),
        RecoveryRow(label: "R16 missing-newest-segment",
                    summary: "the last segment ends with a seal naming a successor segment that does not exist",
                    action: .refuse(.missingSegment), matches: { cleanTail($0) && $0.successor == .missing }),
        RecoveryRow(label: "R17 interrupted-rollover",
                    summary: "the last segment ends with a seal and its successor exists only as its temporary file",
                    action: .completeRollover, matches: { cleanTail($0) && $0.successor == .interrupted }),
    ]

    /// All rows matching `observation` (the exhaustiveness test wants exactly one).
    public static func matchingRows(_ observation: RecoveryObservation) -> [RecoveryRow] {
        rows.filter { $0.matches(observation) }
    }

    /// The single row for `observation`.
    public static func decide(_ observation: RecoveryObservation) -> RecoveryRow {
        let matching = matchingRows(observation)
        precondition(matching.count == 1, "recovery table is not a partition at \(observation): \(matching)")
        return matching[0]
    }
}

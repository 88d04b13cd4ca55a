import OnceLedgerFormat
import OnceLedgerLog

/// Checks a ledger directory from code, as `onceledger verify` does (and as `fsck`,
/// SQLite's `integrity_check` or etcd's `wal.Verify` do for theirs): read-only, no lock
/// taken, nothing repaired. For a health endpoint:
///
/// ```swift
/// let report = try LedgerVerifier.verify(directory: path)
/// if !report.isHealthy { alert(report.findings.map(\.message)) }
/// ```
///
/// Every segment and the newest snapshot are read, with the checks of the recovery scan
/// (`Spec/RECOVERY.md`: headers, record checksums, the checksum chain, sequence
/// continuity) and every record body decoded into the key states an open would build.
public enum LedgerVerifier {
    /// Verifies `directory`. Throws only when it cannot be read at all (`.notALedger`,
    /// `.io`); damage is reported, not thrown. `progress` is told the segment being read
    /// and the records read so far.
    ///
    /// A ledger that a writer has open (this process or another) is read too: the report
    /// names the lock holder (`lockHolder`, finding `.inUse`), and what it says is a
    /// moment's view (a batch being written may show as a torn tail).
    public static func verify(
        directory: String, progress: ((_ segment: UInt64, _ records: Int) -> Void)? = nil
    ) throws -> VerificationReport {
        let before = try? PosixStorage.lockHolder(of: directory)
        let inspection = try LedgerInspection.read(directory: directory, progress: progress)
        let after = try? PosixStorage.lockHolder(of: directory)
        return VerificationReport(inspection: inspection, lockHolder: (before ?? nil) ?? (after ?? nil))
    }
}

/// What `LedgerVerifier.verify` found: a result, typed findings with codes and
/// locations, and counts. (How a result maps to an exit code is the CLI's business.)
public struct VerificationReport: Sendable {
    public enum Result: String, Sendable {
        /// Opens as it is.
        case clean
        /// No corruption; the next open makes an ordinary crash state good (cuts a torn
        /// tail, completes an interrupted rollover, deletes leftover temporary files, writes
        /// back the device's bytes over records a failed sync lost).
        case repairable
        /// The ledger refuses to open: damage to data proven durable (see `problems`).
        case damaged
        /// Written by a format version this build cannot read.
        case unsupported
    }

    /// One thing the verifier found, with where it is.
    public struct Finding: Sendable, Hashable {
        public struct Code: Hashable, Sendable, CustomStringConvertible {
            public let rawValue: String
            public init(_ rawValue: String) { self.rawValue = rawValue }
            public var description: String { rawValue }

            /// Damage: the ledger refuses to open. `error` carries its `LedgerError`.
            public static let damage = Code("damage")
            /// A torn tail (row R15), cut by the next open: nothing acknowledged is in it.
            public static let tornTail = Code("torn-tail")
            /// The page cache shows records of the last commit that the device does not hold (a
            /// failed sync lost their pages, `Spec/RECOVERY.md` §4.1): the next open writes the
            /// device's bytes back and drops them. None of them was acknowledged.
            public static let unsyncedTail = Code("unsynced-tail")
            /// A rollover cut between its seal and its rename (row R17), completed by the next open.
            public static let interruptedRollover = Code("interrupted-rollover")
            /// `.tmp` files of creations that never finished; the next open deletes them.
            public static let temporaryFiles = Code("temporary-files")
            /// Keys whose effect may or may not have happened: an operator decides.
            public static let pendingEntries = Code("pending-entries")
            /// Quarantined torn tails kept for operators (never read by recovery).
            public static let tornFiles = Code("torn-files")
            /// Files that are not part of the ledger (ignored).
            public static let otherFiles = Code("other-files")
            /// A writer holds the ledger's lock: the report is a moment's view.
            public static let inUse = Code("in-use")
        }

        public var code: Code
        public var message: String
        /// The damage, with its code (`corrupt-record`, `chain-break`, …) and context.
        public var error: LedgerError?
        public var path: String?
        public var segment: UInt64?
        public var offset: UInt64?
        public var sequence: UInt64?
        /// How many files, entries or bytes the finding counts, where it counts any.
        public var count: Int?
    }

    public var directory: String { inspection.directory }
    public var result: Result
    public var findings: [Finding]
    /// The live holder of the ledger's writer lock when it was verified, if any.
    public var lockHolder: LockHolder?
    /// Everything read (the recovery report, files, counts, the read-only ledger).
    public var inspection: LedgerInspection

    /// Whether the ledger opens without losing anything acknowledged: `clean` or `repairable`.
    public var isHealthy: Bool { result == .clean || result == .repairable }
    /// The damage found, as the open would throw it (the first refuses the open).
    public var problems: [LedgerError] { findings.compactMap(\.error) }
    public var segmentCount: Int { inspection.segmentFiles.count }
    /// Valid records in the segments, those the snapshot covers included.
    public var recordCount: Int { inspection.recordCount }
    /// Keys by state; nil when the ledger refuses to open.
    public var entries: LedgerInspection.EntryCounts? { inspection.entryCounts }
    /// The torn tail the next open cuts (row R15).
    public var tornTail: TornTail? { inspection.tornTail }
    /// Records the page cache shows and the device does not hold, which the next open drops
    /// (`Spec/RECOVERY.md` §4.1).
    public var unsyncedTail: UnsyncedTail? { inspection.report.unsyncedTail }

    /// The verdict on what `inspection` read.
    public init(inspection: LedgerInspection, lockHolder: LockHolder? = nil) {
        self.inspection = inspection
        self.lockHolder = lockHolder
        let report = inspection.report
        var findings: [Finding] = []
        var problems: [LedgerError] = []
        if inspection.refused, let problem = inspection.problem { problems.append(problem) }
        if let stateProblem = inspection.stateProblem { problems.append(stateProblem) }
        for problem in problems {
            findings.append(Finding(code: .damage, message: problem.message, error: problem, path: problem.path,
                                    segment: problem.segment, offset: problem.offset, sequence: problem.sequence))
        }
        if let torn = inspection.tornTail {
            findings.append(Finding(
                code: .tornTail,
                message: "torn tail at segment \(torn.segment) offset \(torn.offset): \(torn.byteCount) bytes from sequence \(torn.expectedSequence) on (\(torn.reason)); the next open cuts it",
                path: torn.path, segment: torn.segment, offset: torn.offset, sequence: torn.expectedSequence,
                count: Int(clamping: torn.byteCount)))
        }
        if let unsynced = report.unsyncedTail {
            findings.append(Finding(
                code: .unsyncedTail,
                message: unsynced.summary,
                path: unsynced.path, segment: unsynced.segment, offset: unsynced.offset,
                count: Int(clamping: unsynced.cachedEndOffset - min(unsynced.cachedEndOffset, unsynced.offset))))
        }
        let pending = report.row.action == .completeRollover ? report.pendingRollover : nil
        if let pending {
            findings.append(Finding(
                code: .interruptedRollover,
                message: "segment \(pending.segment) is sealed and names segment \(pending.successor), which exists only as \(pending.temporaryName); the next open renames it into place",
                path: Paths.join(inspection.directory, pending.temporaryName), segment: pending.successor))
        }
        let leftovers = report.temporaryFiles.filter { $0 != pending?.temporaryName }
        if !leftovers.isEmpty {
            findings.append(Finding(
                code: .temporaryFiles,
                message: "leftover temporary files (creations that never finished; the next open deletes them): \(leftovers.joined(separator: ", "))",
                count: leftovers.count))
        }
        if let count = inspection.entryCounts?.pendingUnknown, count > 0 {
            findings.append(Finding(code: .pendingEntries,
                                    message: "\(count) pending-unknown \(count == 1 ? "entry needs" : "entries need") an operator decision",
                                    count: count))
        }
        if !report.tornFiles.isEmpty {
            findings.append(Finding(code: .tornFiles,
                                    message: "quarantined torn tails kept for operators: \(report.tornFiles.joined(separator: ", "))",
                                    count: report.tornFiles.count))
        }
        if !report.otherFiles.isEmpty {
            findings.append(Finding(code: .otherFiles,
                                    message: "files that are not part of the ledger (ignored): \(report.otherFiles.joined(separator: ", "))",
                                    count: report.otherFiles.count))
        }
        if let lockHolder {
            findings.append(Finding(
                code: .inUse,
                message: "\(lockHolder.pid.map { "process \($0)" } ?? "another process") holds the ledger's lock: this report is a moment's view of a ledger being written",
                path: lockHolder.lockPath))
        }
        self.findings = findings
        if let first = problems.first {
            result = first.code == .unsupportedVersion ? .unsupported : .damaged
        } else if inspection.openWouldRepair {
            result = .repairable
        } else {
            result = .clean
        }
    }
}

extension UnsyncedTail {
    /// What it means, in one line: the finding's message, and `verify`'s and `stat`'s text.
    public var summary: String {
        "from offset \(offset) of segment \(segment) the page cache shows bytes of the last commit that the device does not hold (a failed sync lost them; none was acknowledged): the next open writes the device's bytes back and drops them"
    }
}

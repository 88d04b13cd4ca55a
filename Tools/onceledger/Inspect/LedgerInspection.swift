import Glibc
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// The CLI's side of the library's read-only look (`LedgerInspection`, in `OnceLedger`):
/// checking the argument names a ledger directory (exit 8 saying why not), progress on a
/// terminal, and library errors as command failures.
extension LedgerInspection {
    /// Checks that `directory` is a ledger directory; throws exit-8 failures saying why not.
    static func requireLedger(_ directory: String) throws -> [String] {
        var info = stat()
        guard stat(directory, &info) == 0 else {
            let reason = errno == ENOENT ? "no such directory" : String(cString: strerror(errno))
            throw CommandFailure(ExitCodes.operational,
                                 "\(directory): \(reason). Pass the ledger's directory (the one holding wal-*.seg files).",
                                 code: LedgerError.Code.notALedger.rawValue)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw CommandFailure(ExitCodes.operational,
                                 "\(directory) is not a directory. A ledger is a directory of wal-*.seg segment files; pass that directory.",
                                 code: LedgerError.Code.notALedger.rawValue)
        }
        let names: [String]
        do {
            names = try PosixStorage().listDirectory(directory)
        } catch let error as LedgerError {
            throw CommandFailure(error, hint: "Check the directory's permissions.")
        }
        guard names.contains(where: { LedgerFileNames.parseSegment($0) != nil || LedgerFileNames.parseSnapshot($0) != nil })
        else {
            throw CommandFailure(ExitCodes.operational,
                                 "\(directory) is not a ledger: it holds no segment (wal-<16 hex>.seg) and no snapshot (snap-<16 hex>.snap). Check the path; a ledger is created by the application's first Ledger.open.",
                                 code: LedgerError.Code.notALedger.rawValue)
        }
        return names
    }

    /// Scans `directory` read-only (`LedgerInspection.read`). `visit` sees every snapshot
    /// item (read whole) and record in order; without it no snapshot value is read.
    /// Throws `CommandFailure` for operational errors (not a ledger, cannot read).
    static func inspect(
        _ directory: String, progressLabel: String? = nil, visit: ((Visit) -> Void)? = nil
    ) throws -> LedgerInspection {
        let names = try requireLedger(directory)
        let segmentNumbers = names.compactMap(LedgerFileNames.parseSegment).sorted()
        let progress = progressLabel.map {
            ScanProgress(label: $0, firstSegment: segmentNumbers.first ?? 1, segmentCount: segmentNumbers.count)
        }
        defer { progress?.finish() }
        do {
            return try LedgerInspection.read(
                directory: directory, progress: progress.map { progress in { progress.update(segment: $0, records: $1) } },
                visit: visit)
        } catch let error as LedgerError where error.code == .notALedger {
            throw CommandFailure(ExitCodes.operational, error.message)
        } catch let error as LedgerError {
            throw CommandFailure(error, hint: "Nothing was changed. Check that the files are readable.")
        }
    }
}

extension LedgerInspection.UnreachedSegment {
    var summary: String {
        var parts: [String] = []
        if recordCount > 0, let first = firstSequence, let last = lastSequence {
            parts.append("\(TextFormat.plural(recordCount, "record")) (\(TextFormat.sequences(first, last)))")
        } else if header != nil {
            parts.append("no valid records")
        }
        parts.append(status)
        return parts.joined(separator: ", ")
    }
}

/// How `verify` and `stat` show records the device does not hold (`Spec/RECOVERY.md` §4.1;
/// the text is `UnsyncedTail.summary`).
extension UnsyncedTail {
    /// `tail.unsyncedTail` of the JSON output (`Spec/JSON.md` §6).
    var json: JSONValue {
        .object([
            ("segment", .unsigned(segment)), ("offset", .unsigned(offset)),
            ("endOffset", .unsigned(endOffset)), ("cachedEndOffset", .unsigned(cachedEndOffset)),
        ])
    }
}

import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// Opening a ledger for `resolve`, `forget` and `compact`: the ordinary open
/// (`Ledger` on a `FileStore`, never creating a ledger), which takes the lock and does
/// what every open does — delete leftover temporary files and cut a torn tail — and
/// reports having done so. New segments double up to the default largest size, or up
/// to the size of the ledger's last segment if that is larger. (The largest size the
/// ledger's own writer was configured with is not on disk, and the last segment may be
/// a small one — segments start small, `Spec/FORMAT.md` §3.4 — so taking its size as
/// the limit would also cap the records `resolve` may write.)
struct WritableLedger {
    let directory: String
    let ledger: Ledger
    let store: FileStore
    /// What the open changed (a torn tail cut, temporary files deleted), for the output.
    let openNotes: [String]

    static func open(_ directory: String) throws -> WritableLedger {
        let names = try LedgerInspection.requireLedger(directory)
        var configuration = LogConfiguration()
        if let last = names.compactMap(LedgerFileNames.parseSegment).max(),
           let bytes = try? PosixStorage().readWholeFile(
               Paths.join(directory, LedgerFileNames.segment(last)), maxBytes: FormatLimits.segmentBytesMax),
           case .header(let header) = SegmentHeader.decode(Array(bytes.prefix(FormatLimits.segmentHeaderBytes))),
           header.segmentBytes > configuration.segmentBytes
        {
            configuration = LogConfiguration(segmentBytes: header.segmentBytes)
        }
        let tornBefore = Set(names.filter(LedgerFileNames.isTorn))
        let store: FileStore
        do {
            store = try FileStore(directory: directory, configuration: configuration, createIfMissing: false)
        } catch let error as LedgerError {
            let hint: String
            if error.code == .locked {
                hint = "Only one process may write a ledger. Close it in that process (or stop it), then run the command again."
            } else if error.isCorruption {
                hint = "Nothing was changed. Run `onceledger verify \(directory)` for the full report; `onceledger salvage` copies what is recoverable to a new directory."
            } else {
                hint = "Nothing was changed."
            }
            throw CommandFailure(error, hint: hint, relativeTo: directory)
        }
        var notes: [String] = []
        if let recovery = store.engine?.recovery {
            if recovery.row.action == .quarantineTornTail, let torn = recovery.tornTail {
                let after = (try? PosixStorage().listDirectory(directory)) ?? []
                let side = after.filter { LedgerFileNames.isTorn($0) && !tornBefore.contains($0) }.sorted()
                notes.append("opening cut a torn tail (an ordinary crash state) at segment \(torn.segment) offset \(torn.offset), \(TextFormat.plural(Int(torn.byteCount), "byte")), kept in \(side.joined(separator: ", "))")
            }
            if recovery.row.action == .completeRollover, let pending = recovery.pendingRollover {
                notes.append("opening completed an interrupted rollover (an ordinary crash state): renamed \(pending.temporaryName) to \(LedgerFileNames.segment(pending.successor))")
            }
            for name in recovery.temporaryFiles where name != recovery.pendingRollover?.temporaryName {
                notes.append("opening deleted the leftover temporary file \(name)")
            }
        }
        return WritableLedger(directory: directory, ledger: Ledger(store: store), store: store, openNotes: notes)
    }

    /// The sequence number of the last record appended (after a resolve or forget).
    var lastSequence: UInt64? { store.engine?.lastSequence }

    func close() throws {
        do {
            try ledger.close()
        } catch let error as LedgerError {
            throw CommandFailure(error, hint: "The change was recorded durably before the close failed.")
        }
    }

    /// `$USER`, or "operator".
    static var defaultActor: String {
        let user = ProcessInfo.processInfo.environment["USER"] ?? ""
        return user.isEmpty ? "operator" : user
    }
}

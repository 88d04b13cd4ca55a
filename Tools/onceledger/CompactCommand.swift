import ArgumentParser
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// `onceledger compact DIR`: writes a snapshot of the live state and deletes the
/// segments and older snapshots it covers (`Spec/FORMAT.md` §8), reporting disk use
/// before and after.
struct CompactCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compact",
        abstract: "Write a snapshot of the live state and delete what it covers; show disk use before and after.",
        discussion: """
            The snapshot holds every entry that still blocks something (done, pending-unknown) and \
            the memo and journal records; entries that block nothing any more at this machine's \
            clock (released, resolved absent or forgotten keys, done keys whose .whileInFlight or \
            .window scope has let go of them, and journal effects of swept runs) are dropped, and \
            the generation floor is raised past \
            them so a dropped key never gets an old token again. Then every segment whose records it covers is deleted, except the active (last) \
            segment, which is never deleted. A crash at any step loses nothing.

            Opens the ledger for writing: it takes the lock (a ledger open in another process is \
            refused, exit 8, naming it) and, like every open, cuts a torn tail first.

            \(ExitCodes.helpText)
            """)

    @Argument(help: "The ledger directory.")
    var dir: String

    func run() async throws {
        try await CommandFailure.reporting { try await compact() }
    }

    private func compact() async throws -> Int32 {
        let opened = try WritableLedger.open(dir)
        for note in opened.openNotes { print("note: " + note) }
        let before = try Self.diskUse(dir)
        do {
            try await opened.ledger.compact()
        } catch let error as LedgerError {
            try? opened.close()
            throw CommandFailure(error, hint: "The ledger is unchanged up to the failed step; a crash or failure during compaction loses nothing. Reopening recovers.")
        }
        try opened.close()
        let after = try Self.diskUse(dir)
        let newest = after.snapshots.max { $0.name < $1.name }
        if let newest, let covered = LedgerFileNames.parseSnapshot(newest.name) {
            var items = "?"
            if let bytes = try? PosixStorage().readWholeFile(Paths.join(dir, newest.name),
                                                             maxBytes: newest.bytes),
               case .snapshot(let file) = SnapshotFile.decode(bytes) {
                items = TextFormat.plural(file.items.count, "item")
            }
            print("compacted \(dir): \(newest.name) covers sequence \(covered) (\(items), \(TextFormat.plural(Int(newest.bytes), "byte")))")
        } else {
            print("compacted \(dir)")
        }
        print("before  \(before.description)")
        print("after   \(after.description)")
        let deleted = Set(before.segments.map(\.name)).subtracting(after.segments.map(\.name)).sorted()
        if deleted.isEmpty {
            print("deleted no segment: the active (last) segment is never deleted; once a later segment exists, the next compaction frees it")
        } else {
            print("deleted \(TextFormat.plural(deleted.count, "segment")): \(deleted.joined(separator: ", "))")
        }
        return ExitCodes.success
    }

    struct DiskUse {
        var segments: [LedgerInspection.FileInfo]
        var snapshots: [LedgerInspection.FileInfo]
        var bytes: UInt64 { (segments + snapshots).reduce(0) { $0 + $1.bytes } }
        var description: String {
            let snapshotText = snapshots.isEmpty ? "no snapshot" : TextFormat.plural(snapshots.count, "snapshot")
            return "\(TextFormat.plural(segments.count, "segment")), \(snapshotText): \(TextFormat.plural(Int(bytes), "byte"))"
        }
    }

    static func diskUse(_ directory: String) throws -> DiskUse {
        let names = try PosixStorage().listDirectory(directory)
        let files = LedgerInspection.fileInfos(directory, names: names)
        return DiskUse(segments: files.filter { $0.category == .segment }, snapshots: files.filter { $0.category == .snapshot })
    }
}

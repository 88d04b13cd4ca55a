import OnceLedgerFormat

/// Read-only commands take no lock (`Spec/FORMAT.md` §2.2) and so never make a
/// writer's open fail; instead they refuse to read a ledger that a live process holds
/// open, because a writer appending meanwhile makes the result unreliable (a batch being
/// written looks like a torn tail, a compaction deletes segments under the reader).
enum LiveLedgerPolicy {
    /// Throws an exit-8 failure naming the holder, unless `allowLive`, in which case
    /// a note goes to standard error and the read goes ahead.
    static func check(_ directory: String, command: String, allowLive: Bool) throws {
        guard let holder = LockProbe.holder(of: directory) else { return }
        if allowLive {
            StandardError.write("note: \(holder.who) has the ledger open; this is a live view: pending-unknown entries may be in flight there, and a torn tail may be a batch being written.\n")
            return
        }
        throw CommandFailure(
            ExitCodes.operational,
            "the ledger in \(directory) is locked by \(holder.who) (it holds \(holder.lockPath)). `onceledger \(command)` reads without taking the lock, and a writer appending meanwhile would make the result unreliable. Close the ledger in that process (or stop it) and run the command again"
                + (command == "verify" ? "." : ", or pass --live to read it anyway."),
            code: LedgerError.Code.locked.rawValue)
    }
}

import OnceLedgerFormat

/// What `truncateJournal` did.
public struct JournalTruncation: Sendable, Hashable {
    public var run: MemoRun
    public var generation: UInt64
    /// The recorded positions it freed (each now holds a `truncated` entry naming who and why).
    public var positions: [UInt64]
    /// What those positions held before.
    public var dropped: [JournalRecord]
    /// The epoch the freed positions start again with (effects there get new `once` keys).
    public var epoch: UInt32
    /// Effects claimed in the ledger at a freed position but never journaled there (the
    /// process died inside one, or after it and before its journal entry): done or
    /// pending-unknown, so they happened or may have — and, like those in `dropped`, one
    /// recorded at that position again gets a new key and runs. Resolve a pending one first.
    public var unjournaledEffects: [EntryInfo]
}

extension Ledger {
    /// Frees the journal positions of `run`'s running generation from `position` on, so
    /// that changed code can record them anew: an audited operator act (`onceledger
    /// journal-truncate`), never something the journal does by itself.
    ///
    /// Each freed position is overwritten with a `truncated` entry holding `actor` and
    /// `reason` (a memo record each, durable before this returns), with a new epoch: an
    /// effect recorded there again gets a new `once` key and runs (the effects that already
    /// ran keep their done entries, listed in `dropped`, and so do those claimed at a freed
    /// position but never journaled, listed in `unjournaledEffects`) — so truncate from after the last
    /// effect that must not happen again. The position after the last recorded one is freed
    /// too, for an effect claimed there but never journaled. Run it while the run is not
    /// running. Throws `.runEnded` for an ended generation, `.invalidArgument` for an
    /// empty actor or reason or a run the ledger does not hold.
    @discardableResult
    public func truncateJournal(run: String, namespace: String = "", from position: UInt64,
                                actor: String, reason: String) async throws -> JournalTruncation {
        let memoRun = MemoRun(namespace: namespace, run: run)
        try memoRun.validate()
        if actor.isEmpty || reason.isEmpty {
            throw LedgerError(.invalidArgument, "a journal truncation is audited: give an actor and a reason")
        }
        guard let info = try await store.runs(RunQuery(namespace: namespace, run: run)).last else {
            throw LedgerError(.invalidArgument, "the ledger holds no journal of run \(memoRun); `onceledger runs` lists what it holds")
        }
        if info.status != nil {
            throw LedgerError(.runEnded, "run \(memoRun) generation \(info.generation) has ended; its journal is kept as it is until it is swept. Nothing was written")
        }
        let records = try await Journal.records(store: store, run: memoRun, generation: info.generation)
        let end = UInt64(records.count)
        guard position <= end else {
            throw LedgerError(.invalidArgument, "run \(memoRun) records positions 0..<\(end); nothing to truncate from \(position)")
        }
        let dropped = Array(records[Int(position)...])
        // A freed position that is free or truncated may still hold the `once` entry of an
        // effect claimed there and never journaled: the operator must see it (not in `dropped`).
        var unjournaledEffects: [EntryInfo] = []
        for at in position...end where at <= JournalEntry.positionMax {
            let slot = at < end ? records[Int(at)] : nil
            if let slot, slot.entry.kind != .truncated { continue }
            let key = Journal.effectKey(run: memoRun, generation: info.generation, position: at, epoch: slot?.entry.epoch ?? 0)
            if let entry = try await store.entry(key) { unjournaledEffects.append(entry) }
        }
        let epoch = (dropped.map(\.entry.epoch).max() ?? 0) + 1
        let actorBytes = Array(truncated(actor, utf8BytesMax: FormatLimits.stepBytesMax).utf8)
        let reasonBytes = Array(truncated(reason, utf8BytesMax: FormatLimits.reasonBytesMax).utf8)
        var positions: [UInt64] = []
        // From the last position down: a truncation that stops part way (a full disk, a
        // crash) has freed a suffix — what a truncation from a later position would have
        // freed — so a run that goes on before it is run again replays a prefix of its old
        // journal and records anew after it, never an old output after a new one.
        for at in (position...end).reversed() where at <= JournalEntry.positionMax {
            let entry = JournalEntry(kind: .truncated, epoch: epoch, position: at, name: actorBytes, output: reasonBytes)
            try entry.validate()
            try await store.memoPut(MemoPutRequest(
                key: MemoKey(run: memoRun, generation: info.generation, step: JournalEntry.reservedStep,
                             name: JournalEntry.positionName(at)),
                value: entry.encode(), inputDigest: nil, timeMilliseconds: clock()))
            if at < end { positions.append(at) }
        }
        positions.reverse()
        return JournalTruncation(run: memoRun, generation: info.generation, positions: positions, dropped: dropped, epoch: epoch,
                                 unjournaledEffects: unjournaledEffects)
    }
}

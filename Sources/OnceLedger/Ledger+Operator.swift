import OnceLedgerFormat

extension Ledger {
    /// Resolves a pending-unknown entry — it happened (with a receipt) or it did not —
    /// recording who and why in the log. Throws `.wrongState` for any other state.
    public func resolvePending(_ key: String, as resolution: PendingResolution, reason: String,
                               actor: String = "operator") async throws {
        let outcome: ResolveRequest.Outcome = switch resolution {
        case .done(let receipt): .done(receipt: receipt)
        case .absent: .absent
        }
        try await operatorAct(key, reason: reason, verb: "resolving") {
            try await self.store.resolve(ResolveRequest(key: key, outcome: outcome, expected: .pendingUnknown,
                                                        actor: actor, reason: reason, timeMilliseconds: self.now()))
        }
    }

    /// Resolves a pending-unknown entry by its `IdempotencyKey`: `as: try .done(receipt)`
    /// stores a `Codable` receipt the way `once` stores it (so later `once(key, as:)` calls
    /// decode it), `as: .absent` lets the next call run the effect (with the same token — or, if a
    /// compaction drops the absent entry first, a new one: `Spec/FORMAT.md` §9.5).
    ///
    /// This is how to resolve keys while the app runs (the CLI needs the ledger's lock, which
    /// the running app holds): expose it on an authenticated admin endpoint.
    public func resolvePending(_ key: IdempotencyKey, as resolution: PendingResolution, reason: String,
                               actor: String = "operator") async throws {
        try await resolvePending(key.rawValue, as: resolution, reason: reason, actor: actor)
    }

    /// Replaces the receipt of a done entry — an audited correction (e.g. of a receipt an
    /// operator resolved with the wrong text, which no `once(key, as:)` call could decode).
    /// Written as a resolve record (outcome done, the entry's attempt, who and why): the
    /// generation and so the effect token stay the same, so the effect is never run again
    /// and the downstream keeps de-duplicating it. The entry's time becomes the correction's.
    /// Throws `.wrongState` unless the key is done, `.invalidArgument` without a reason,
    /// `.limitExceeded` for a receipt over `FormatLimits.receiptBytesMax`.
    public func correctReceipt(_ key: String, to receipt: [UInt8], reason: String,
                               actor: String = "operator") async throws {
        try await operatorAct(key, reason: reason, verb: "correcting") {
            try await self.store.resolve(ResolveRequest(key: key, outcome: .done(receipt: receipt), expected: .done,
                                                        actor: actor, reason: reason, timeMilliseconds: self.now()))
        }
    }

    /// `correctReceipt` with a `Codable` receipt, stored the way `once` stores receipts.
    public func correctReceipt<Receipt: Encodable>(_ key: IdempotencyKey, to receipt: Receipt, reason: String,
                                                   actor: String = "operator") async throws {
        try await correctReceipt(key.rawValue, to: try ReceiptCoding.encode(receipt), reason: reason, actor: actor)
    }

    /// `forgetDoneEntryAllowingRerun` by `IdempotencyKey`.
    public func forgetDoneEntryAllowingRerun(_ key: IdempotencyKey, reason: String, actor: String = "operator") async throws {
        try await forgetDoneEntryAllowingRerun(key.rawValue, reason: reason, actor: actor)
    }

    /// Removes a done entry so the effect may run again — an audited act: the forget
    /// record (who, why, when) stays in the log. The next run gets a new token.
    /// Throws `.wrongState` unless the key is done, `.invalidArgument` without a reason.
    public func forgetDoneEntryAllowingRerun(_ key: String, reason: String, actor: String = "operator") async throws {
        try await operatorAct(key, reason: reason, verb: "forgetting") {
            try await self.store.forget(ForgetRequest(key: key, actor: actor, reason: reason,
                                                      timeMilliseconds: self.now()))
        }
    }

    /// The shared part of an operator act: needs a reason, refuses a key whose call runs in
    /// this process, and lets the store do the rest — it checks the key's state atomically
    /// with writing the record (`.wrongState` if the key is in another state or live
    /// anywhere), and `once` callers of the key wait for the record and then decide again.
    private func operatorAct(_ key: String, reason: String, verb: String,
                             _ act: @Sendable () async throws -> Void) async throws {
        guard !reason.isEmpty else {
            throw LedgerError(.invalidArgument, "\(verb) an entry needs a reason; it is recorded in the log", key: key)
        }
        if closed.withLock({ $0 }) { throw LedgerError(.closed, "the ledger is closed") }
        if inFlight.withLock({ $0[KeyBytes(key)] != nil }) {
            throw LedgerError(.wrongState, "key \"\(key)\" is running in this process now", key: key,
                              entry: try await store.entry(key))
        }
        try await act()
    }
}

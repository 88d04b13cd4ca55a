import OnceLedgerFormat

extension Ledger {
    /// Resolves a pending-unknown entry — it happened (with a receipt) or it did not —
    /// recording who and why in the log. Throws `.wrongState` for any other state.
    public func resolvePending(_ key: String, as resolution: PendingResolution, reason: String,
                               actor: String = "operator") async throws {
        try await operatorCommit(key, reason: reason, verb: "resolving", requiredStatus: .pendingUnknown,
                                 notInState: "is not pending-unknown") { entry in
            let receipt: [UInt8]
            let outcome: RecordBody.Outcome
            switch resolution {
            case .done(let stored):
                try self.checkReceipt(stored, key: key)
                (receipt, outcome) = (stored, .done)
            case .absent:
                (receipt, outcome) = ([], .absent)
            }
            return .resolve(.init(key: key, outcome: outcome, attempt: entry.attempt, timeMilliseconds: self.now(),
                                  receipt: receipt, actor: actor, reason: reason))
        }
    }

    /// Resolves a pending-unknown entry by its `IdempotencyKey`: `as: try .done(receipt)`
    /// stores a `Codable` receipt the way `once` stores it (so later `once(key, as:)` calls
    /// decode it), `as: .absent` lets the next call run the effect (with the same token).
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
        try await operatorCommit(key, reason: reason, verb: "correcting", requiredStatus: .done,
                                 notInState: "is not done; only a done entry's receipt can be corrected (resolve a pending-unknown one)") { entry in
            try self.checkReceipt(receipt, key: key)
            return .resolve(.init(key: key, outcome: .done, attempt: entry.attempt, timeMilliseconds: self.now(),
                                  receipt: receipt, actor: actor, reason: reason))
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
        try await operatorCommit(key, reason: reason, verb: "forgetting", requiredStatus: .done,
                                 notInState: "is not done; only done entries can be forgotten") { _ in
            .forget(.init(key: key, timeMilliseconds: self.now(), actor: actor, reason: reason))
        }
    }

    /// The shared part of an operator action: needs a reason, claims the key (so `once`
    /// callers wait and decide again on the new state), checks its state, writes the
    /// record `makeBody(entry)` (which may still refuse, e.g. an oversized receipt) and
    /// releases the claim.
    private func operatorCommit(
        _ key: String, reason: String, verb: String, requiredStatus: EntryInfo.Status, notInState: String,
        _ makeBody: (EntryInfo) throws -> RecordBody
    ) async throws {
        guard !reason.isEmpty else {
            throw LedgerError(.invalidArgument, "\(verb) an entry needs a reason; it is recorded in the log", key: key)
        }
        let call = InFlightCall(fingerprint: [])
        let entry: EntryInfo = try inFlight.withLock { running in
            guard running[KeyBytes(key)] == nil else {
                throw LedgerError(.wrongState, "key \"\(key)\" is running in this process now", key: key)
            }
            guard let entry = try self.entry(key), entry.status == requiredStatus else {
                throw LedgerError(.wrongState, "key \"\(key)\" \(notInState)", key: key, entry: try self.entry(key))
            }
            running[KeyBytes(key)] = call
            return entry
        }
        defer {
            finish(IdempotencyKey(key), call,
                   .failure(LedgerErrorOrOther(error: LedgerError(.wrongState, "operator action on \"\(key)\" ended"))))
        }
        try await commit([try makeBody(entry)])
    }
}

/// Every bound of the on-disk format, named (`Spec/FORMAT.md` §1 "Limits").
///
/// Writers enforce the configured limits (`LogConfiguration`), which must lie
/// within these format maxima; readers enforce the format maxima on untrusted bytes.
public enum FormatLimits {
    /// The format version this implementation writes (segment and snapshot headers).
    /// Version 2 added the seal record (kind 12) and the ledger-scoped-tokens header flag.
    public static let formatVersion: UInt16 = 2
    /// The versions this implementation reads: version 1 ledgers still open (their
    /// segments have no seal, so their successors are not provable).
    public static let formatVersionsReadable: ClosedRange<UInt16> = 1...2
    /// The snapshot format version this implementation writes. Version 3 keeps the
    /// receipts of done entries in a values section and indexes every item in a hint
    /// section, so a ledger opens from a snapshot without reading receipts
    /// (`Spec/FORMAT.md` §6.3). Segments stay at `formatVersion`.
    public static let snapshotFormatVersion: UInt16 = 3
    /// The snapshot format version written instead of 3 when the snapshot holds a
    /// journal-positions hint (kind 18, `Spec/FORMAT.md` §6.7): version 4 is version 3 with
    /// the journal positions of a run generation in one hint, so a reader that does not know
    /// them refuses the file as `unsupported-version` instead of calling it damaged.
    public static let snapshotJournalFormatVersion: UInt16 = 4
    /// The snapshot versions this implementation reads (1 and 2 as before, whole).
    public static let snapshotFormatVersionsReadable: ClosedRange<UInt16> = 1...4
    /// Header flags bit 0 (segment and snapshot, version 2): the ledger's effect tokens
    /// include its id (`Spec/FORMAT.md` §9.3).
    public static let flagLedgerScopedTokens: UInt32 = 1
    /// Frame bytes of a seal record (kind 12, 16-byte body): every segment keeps room for one.
    public static let sealFrameBytes = 48
    /// Every record starts at a multiple of this many bytes from the segment start.
    public static let recordAlignment = 8
    /// Bytes in a segment header; records start right after it.
    public static let segmentHeaderBytes = 64
    /// Bytes in a record header.
    public static let recordHeaderBytes = 32
    /// Largest record body any reader accepts (16 MiB).
    public static let recordBodyBytesMax: UInt32 = 16 << 20
    /// Smallest segment file (header plus room for one small record).
    public static let segmentBytesMin: UInt64 = 4096
    /// Largest segment file any reader accepts (4 GiB).
    public static let segmentBytesMax: UInt64 = 4 << 30
    /// Bytes in a snapshot header and trailer.
    public static let snapshotHeaderBytes = 64
    public static let snapshotTrailerBytes = 16
    /// Largest snapshot body any reader accepts (64 GiB).
    public static let snapshotBodyBytesMax: UInt64 = 64 << 30
    /// Bytes in a ledger id.
    public static let ledgerIDBytes = 16

    // Body field bounds (Spec/FORMAT.md §5).
    /// Largest idempotency key, in UTF-8 bytes.
    public static let keyBytesMax = 1024
    /// Largest receipt (the stored "minimal acknowledgment").
    public static let receiptBytesMax = 64 * 1024
    /// Largest reason / actor text in audit records.
    public static let reasonBytesMax = 4096
    /// Largest memo or journal value.
    public static let valueBytesMax = 1 << 20
    /// Largest run id / step name (and, for the memo, the name of a value).
    public static let nameBytesMax = 1024
    /// Largest memo run id, in UTF-8 bytes (kinds 13–15; an empty run id is refused).
    public static let runBytesMax = 1024
    /// Largest memo namespace, in UTF-8 bytes (kinds 13–15; empty is the default namespace).
    public static let namespaceBytesMax = 256
    /// Largest memo step, in UTF-8 bytes.
    public static let stepBytesMax = 1024
    /// Largest name of a memo value within its step, in UTF-8 bytes.
    public static let memoNameBytesMax = 1024

    /// The largest body any typed record kind can have (a memo entry with every field at
    /// its limit); the default record limit must hold it.
    /// `FormatLimitsTests` checks this and the other relations between the limits.
    public static let typedBodyBytesMax = (2 + namespaceBytesMax) + (2 + runBytesMax) + 8 + (2 + stepBytesMax)
        + (2 + memoNameBytesMax) + 32 + 8 + 4 + valueBytesMax
}

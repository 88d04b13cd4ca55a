import Glibc
import OnceLedgerFormat
import OnceLedgerLog

/// The memo's state (`Spec/FORMAT.md` §9.4), kept apart from the entries of `once`
/// (`LedgerState`): per (namespace, run) its latest generation; per run generation how it
/// ended; per (run generation, step, name) the input digest and the value. Changed only by
/// `apply`, with the very bytes the log made durable (at open, and live by `LogStore`), so
/// it always equals "the memo records replayed". Keys compare byte for byte (their UTF-8).
///
/// Values stay on disk like receipts (`LedgerState`): a memo entry whose record has a
/// location (the file log: a segment record, or a version 3 snapshot's value) keeps only
/// that location and its length, and a read fetches the record with one `pread` through
/// `reader`, checks it and decodes it with the one body decoder. Without a location (the
/// in-memory log) the value is kept in memory (`inMemoryValues`). Values read lately are
/// kept in a bounded value cache (16 MiB, `remember`): a memo is asked again and again for
/// the same values (a retried step), and a hit then costs no `pread`.
///
/// Layout, for memory per entry and open time (README "Speed", T17: < 128 bytes per entry
/// plus its key, 1 M entries open in < 1 s), like `LedgerState`'s:
/// - `entries`: one 56-byte `Entry` per value, densely; a swept entry's index is reused
///   (a free list through `Entry.next`);
/// - `names`: every entry's name bytes, back to back (garbage from swept entries is
///   counted and the arena rewritten once it is half garbage);
/// - `digests`: the 32-byte input digests, only for entries stored with an input;
/// - `buckets`: one per (run generation, step), holding the run, namespace and step bytes
///   once for all its entries, their count and bytes, and the head of a list of them (for
///   `runs`, snapshots and sweeps); consecutive records of one bucket (a snapshot, a step's
///   puts) find it without building a key (`lastBucket`);
/// - `slots`: an open-addressing (linear probing) hash table of
///   `(hash << 32) | (entry index + 1)` over the whole key, 0 = empty, at most 3/4 full,
///   with backward-shift deletion (no tombstones). A lookup hashes the key's bytes in
///   place: no allocation.
///
/// - `journals`: the replay journal's positions (`Spec/FORMAT.md` §10.1: memo entries of
///   step "" named by ten digits), per run generation, as an array indexed by position:
///   32 bytes per position (value location, time, digest index), no name, no slot. A
///   generation's positions 0, 1, 2, … go there while they come in order; a memo entry of
///   step "" that does not fit (a name that is not ten digits, a position that would leave a
///   hole, a value without a location: only a hostile or hand-made log, or the in-memory log)
///   goes to the generic entries above, and from then on every new position of that
///   generation does too (`Journal.frozen`), so a key is always in exactly one place. The
///   journal's generation marker (`JournalEntry.generationMarkerName`, written before an
///   effect at position 0) is a generic entry too, but no position: it freezes nothing.
///   A version 4 snapshot's journal-positions hint (kind 18) fills them in one go
///   (`applyPositions`).
///
/// Beside that state it keeps the store's bookkeeping of writes in flight (`ending`,
/// `putsInFlight`, `sweeping`), which no record carries.
///
/// Sendable although its buffers are raw memory: it is noncopyable, so it owns them alone,
/// and it is used only under `LogStore`'s lock (or by the one thread replaying a log).
struct MemoTable: ~Copyable, @unchecked Sendable {
    struct RunKey: Hashable {
        var namespace: [UInt8]
        var run: [UInt8]

        // Hashed as two length-prefixed byte runs: the synthesized hash feeds an array
        // to the hasher one byte at a time, and every put looks its run up several times.
        func hash(into hasher: inout Hasher) {
            MemoTable.combine(namespace, into: &hasher)
            MemoTable.combine(run, into: &hasher)
        }
    }

    struct GenerationKey: Hashable, Comparable {
        var run: RunKey
        var generation: UInt64

        static func < (a: GenerationKey, b: GenerationKey) -> Bool {
            if a.run.namespace != b.run.namespace { return a.run.namespace.lexicographicallyPrecedes(b.run.namespace) }
            if a.run.run != b.run.run { return a.run.run.lexicographicallyPrecedes(b.run.run) }
            return a.generation < b.generation
        }
    }

    /// Where a memo value is: on disk (the memo entry record, or its snapshot value), or in
    /// memory for a log that gives no locations.
    enum ValueRef {
        case bytes([UInt8])
        case located(ValueLocation, count: Int)

        var count: Int {
            switch self {
            case .bytes(let bytes): bytes.count
            case .located(_, let count): count
            }
        }
    }

    /// A memo entry as `slot(_:)` shows it (tests) and a read starts from.
    struct Slot {
        /// 32 bytes; all zero for "no input".
        var inputDigest: [UInt8]
        var timeMilliseconds: UInt64
        var value: ValueRef
    }

    /// A snapshot item, for `relocate`: the memo entry it is (`Ref.key`), or `none`.
    /// Not optional: 8 bytes per item instead of 16 while a large journal compacts.
    struct ItemKey {
        var ref: UInt64

        /// Not a memo entry (a run's end, the sweep). No `Ref.key` is all ones: positions
        /// stay below 2^31.
        static let none = ItemKey(ref: .max)
    }

    /// Where a memo entry's state is: a generic entry (its index), or a journal position
    /// (journal index, position). `key` packs it in 64 bits (the value cache's key): an
    /// entry index, or bit 63 | journal << 32 | position (positions stay below 2^31).
    enum Ref: Equatable {
        case entry(Int)
        case position(journal: Int, position: Int)

        var key: UInt64 {
            switch self {
            case .entry(let index): UInt64(index)
            case .position(let journal, let position): 1 << 63 | UInt64(journal) << 32 | UInt64(position)
            }
        }

        init(key: UInt64) {
            self = key & 1 << 63 == 0 ? .entry(Int(key))
                : .position(journal: Int((key >> 32) & 0x7fff_ffff), position: Int(key & 0xffff_ffff))
        }
    }

    /// A journal position: where its value is (a memo entry record, or its snapshot value),
    /// its time and its digest. The value's length follows from the body's: every position
    /// of a generation has the same key length.
    struct Position: BitwiseCopyable {
        var valueFile: UInt64
        var valueOffset: UInt64
        var time: UInt64
        var valueBodyBytes: UInt32
        /// Index + 1 of the digest in `digests` (32-byte units); 0: no input.
        var digest: UInt32

        var location: ValueLocation { ValueLocation(file: valueFile, offset: valueOffset, bodyBytes: valueBodyBytes) }
    }

    /// The journal positions 0 ..< `positions.count` of one run generation.
    struct Journal {
        var key: GenerationKey
        var positions: [Position] = []
        /// Their value bytes: `valueCount` summed, kept exact (`snapshotByteBound` reads it).
        var valueBytes = 0
        /// A memo entry of step "" of this generation is a generic entry: new positions go
        /// there too (positions already here stay and are overwritten here).
        var frozen = false

        /// A position's value bytes: its memo entry body less the key (§5.16, §10.1).
        func valueCount(_ position: Position) -> Int {
            max(0, Int(position.valueBodyBytes) - JournalPositions.memoBodyFixedBytes - key.run.namespace.count
                - key.run.run.count)
        }
    }

    /// Positions a journal holds densely: below 2^31, so `Ref.key` packs them.
    static let densePositionsMax: UInt64 = 1 << 31

    struct Entry: BitwiseCopyable {
        /// Offset of the name's bytes in `names`.
        var nameOffset: UInt64
        var time: UInt64
        /// The value's location (`ValueLocation`), or `Entry.inMemory`: in `inMemoryValues`.
        var valueFile: UInt64
        var valueOffset: UInt64
        var valueBodyBytes: UInt32
        /// The value's length.
        var valueCount: UInt32
        /// Index in `buckets`.
        var bucket: UInt32
        /// The bucket's next entry (index + 1; 0: the last), or, free, the next free entry.
        var next: UInt32
        /// Index + 1 of the digest in `digests` (32-byte units); 0: no input.
        var digest: UInt32
        var nameLength: UInt16
        var live: Bool

        static let inMemory = UInt64.max
        var isLocated: Bool { valueFile != Entry.inMemory }
        var location: ValueLocation { ValueLocation(file: valueFile, offset: valueOffset, bodyBytes: valueBodyBytes) }
    }

    /// The entries of one step of one run generation.
    struct Bucket {
        var generation: GenerationKey
        var step: [UInt8]
        /// The first entry (index + 1; 0: none).
        var first: UInt32 = 0
        /// Its values and their bytes (kept here, not in `generations`, so an entry's apply
        /// does not look its generation up).
        var entryCount = 0
        var valueBytes = 0
    }

    struct BucketKey: Hashable {
        var generation: GenerationKey
        var step: [UInt8]

        func hash(into hasher: inout Hasher) {
            hasher.combine(generation)
            MemoTable.combine(step, into: &hasher)
        }
    }

    /// Feeds `bytes` and their count to `hasher` in one call (what `RunKey` and `BucketKey` hash).
    static func combine(_ bytes: [UInt8], into hasher: inout Hasher) {
        hasher.combine(bytes.count)
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    struct Generation {
        var end: (status: RecordBody.RunStatus, timeMilliseconds: UInt64)?
        /// Its journal (index + 1 in `journals`; 0: none).
        var journal: UInt32 = 0
        /// It has a generic memo entry of step "" other than the generation marker (so its
        /// journal positions are generic from then on).
        var genericJournalStep = false
        /// Its buckets (indices in `buckets`), one per step that holds values; its value
        /// count and bytes are theirs (`totals`).
        var buckets: [UInt32] = []
        // Store bookkeeping (not log state).
        /// A run-end record for it is being written: puts are refused.
        var ending = false
        /// Puts being written: a sweep leaves the generation for the next one.
        var putsInFlight = 0
        /// A sweep record for it is being written.
        var sweeping = false

        /// It holds nothing — no end, no values, no journal, nothing being written — so it
        /// can be dropped (`dropIfEmpty`, `endPut`).
        var carriesNoState: Bool {
            end == nil && buckets.isEmpty && journal == 0 && putsInFlight == 0 && !ending && !sweeping
        }
    }

    /// Reads values that stay on disk; nil for a log that gives no locations.
    var reader: RecordReader?
    private(set) var generations: [GenerationKey: Generation] = [:]
    /// Each run's latest generation: written to, or handed out by `generation(for:)`.
    private(set) var latest: [RunKey: UInt64] = [:]
    /// The highest generation number seen or handed out: a new generation takes the next,
    /// so a number is never used twice in the ledger.
    private(set) var highestGeneration: UInt64 = 0
    /// Generations handed out (`currentGeneration`) that no record names yet: in memory only,
    /// until their first record is applied (`see`).
    private var handedOut: Set<UInt64> = []
    /// The sweep record of the highest generation ever swept: compaction keeps it, so the
    /// generation count survives even when every run was swept (§9.4).
    /// Kept as bytes, made a record only by `snapshotSource`.
    private var highestSweep: (key: GenerationKey, timeMilliseconds: UInt64)?

    private var entries = PlainBuffer<Entry>()
    /// The first free entry (index + 1; 0: none).
    private var freeEntry: UInt32 = 0
    private var liveEntries = 0
    private var slots = PlainBuffer<UInt64>()
    private var names = PlainBuffer<UInt8>()
    private var nameGarbage = 0
    private var digests = PlainBuffer<UInt8>()
    private var freeDigests: [UInt32] = []
    private var buckets: [Bucket] = []
    private var freeBuckets: [UInt32] = []
    private var bucketsByKey: [BucketKey: UInt32] = [:]
    /// The bucket the last memo entry went to.
    private var lastBucket: UInt32?
    /// No sweep record was applied since `see` was called for `lastBucket`'s generation (so
    /// another entry of that bucket would not change what `see` keeps).
    private var lastBucketSeen = false
    private var journals: [Journal] = []
    private var freeJournals: [UInt32] = []
    private var livePositions = 0
    /// The journal the last position went to, and whether `see` was called for its
    /// generation since the last sweep record (as `lastBucket`, `lastBucketSeen`).
    private var lastJournal: Int?
    private var lastJournalSeen = false
    /// Recently written journals (`cachedJournal`), by a hash of their run generation's
    /// bytes: index + 1 in `journals` (0: empty) and the `journalCacheEpoch` it was filed in.
    private var journalCache = [(journal: UInt32, epoch: UInt64)](repeating: (0, 0), count: MemoTable.journalCacheSlots)
    /// Moved on whenever a journal is removed or a sweep is applied (which may drop a run's
    /// latest generation), so every cached journal is looked up, and seen, again.
    private var journalCacheEpoch: UInt64 = 1
    /// 4,096 slots (64 KiB) in pairs (two-way): with 64 runs taking turns, 256 direct slots
    /// left 23 % of positions applied in an open from segments missing the cache (runs
    /// hashed to a shared slot evict each other on every turn), each then building its key
    /// and looking it up twice; 4,096 direct slots left 2.7 %. Two-way, an open of 100,000
    /// journals of 100 positions misses 103,132 times: the journals' first positions and
    /// 3 % more (direct: about 270,000).
    static let journalCacheSlots = 4096
    /// Values of entries without a location, by entry index.
    private var inMemoryValues: [UInt32: [UInt8]] = [:]
    /// Records applied (`apply`), so a compaction's `relocate` knows whether any came
    /// after its items were taken.
    private var changes: UInt64 = 0

    // The value cache: values on disk read lately, by entry index, so that a hit (a retried
    // step asking again) is answered without a `pread`. Bounded (`cacheBytesMax`, values up
    // to `cacheValueBytesMax`), oldest out first; an entry's cached value is dropped when the
    // entry is overwritten or swept, and a read fills it only if the entry still holds the
    // record it read (`remember`). Losing it costs a `pread`, never a wrong value.
    static let cacheBytesMax = 16 << 20
    static let cacheValueBytesMax = 64 << 10
    private var cache: [UInt64: (bytes: [UInt8], serial: UInt64)] = [:]
    private var cacheOrder: [(entry: UInt64, serial: UInt64)] = []
    private var cacheOrderStart = 0
    private var cacheBytes = 0
    private var cacheSerial: UInt64 = 0

    init() {}

    static func runKey(_ run: MemoRun) -> RunKey {
        RunKey(namespace: Array(run.namespace.utf8), run: Array(run.run.utf8))
    }

    static func memoRun(_ key: RunKey) -> MemoRun {
        MemoRun(namespace: String(decoding: key.namespace, as: UTF8.self), run: String(decoding: key.run, as: UTF8.self))
    }

    static func generationKey(_ key: MemoKey) -> GenerationKey {
        GenerationKey(run: runKey(key.run), generation: key.generation)
    }

    // MARK: The table

    static func hash(namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer, generation: UInt64,
                     step: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer) -> UInt32 {
        var hasher = Hasher()
        hasher.combine(namespace.count)
        hasher.combine(bytes: namespace)
        hasher.combine(run.count)
        hasher.combine(bytes: run)
        hasher.combine(generation)
        hasher.combine(step.count)
        hasher.combine(bytes: step)
        hasher.combine(bytes: name)
        let value = UInt64(UInt(bitPattern: hasher.finalize()))
        return UInt32(truncatingIfNeeded: value ^ (value >> 32))
    }

    /// Calls `body` with `key`'s five parts as bytes, in place (no copy for native strings).
    static func withBytes<R>(_ key: MemoKey,
                             _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer,
                                      UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var namespace = key.run.namespace, run = key.run.run, step = key.step, name = key.name
        return try namespace.withUTF8 { namespace in
            try run.withUTF8 { run in
                try step.withUTF8 { step in
                    try name.withUTF8 { name in
                        try body(UnsafeRawBufferPointer(namespace), UnsafeRawBufferPointer(run),
                                 UnsafeRawBufferPointer(step), UnsafeRawBufferPointer(name))
                    }
                }
            }
        }
    }

    static func equal(_ bytes: [UInt8], _ raw: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count == raw.count else { return false }
        guard let base = raw.baseAddress, !bytes.isEmpty else { return true }
        return bytes.withUnsafeBytes { memcmp($0.baseAddress.unsafelyUnwrapped, base, raw.count) == 0 }
    }

    private func nameEquals(_ entry: Entry, _ name: UnsafeRawBufferPointer) -> Bool {
        guard Int(entry.nameLength) == name.count else { return false }
        guard let base = name.baseAddress else { return true }
        return memcmp(names.base.unsafelyUnwrapped + Int(entry.nameOffset), base, name.count) == 0
    }

    private func bucketEquals(_ index: UInt32, namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer,
                              generation: UInt64, step: UnsafeRawBufferPointer) -> Bool {
        buckets.withUnsafeBufferPointer { buckets in
            let bucket = buckets[Int(index)]
            return bucket.generation.generation == generation && MemoTable.equal(bucket.step, step)
                && MemoTable.equal(bucket.generation.run.run, run) && MemoTable.equal(bucket.generation.run.namespace, namespace)
        }
    }

    /// The entry holding the key, or the empty slot where it would go.
    private func find(namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer, generation: UInt64,
                      step: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer,
                      hash: UInt32) -> (index: Int?, slot: Int) {
        guard let values = slots.base else { return (nil, -1) }
        let mask = slots.count - 1
        var slot = Int(hash) & mask
        while true {
            let value = values[slot]
            if value == 0 { return (nil, slot) }
            if UInt32(truncatingIfNeeded: value >> 32) == hash {
                let index = Int(UInt32(truncatingIfNeeded: value)) - 1
                let entry = entries[index]
                if nameEquals(entry, name),
                   bucketEquals(entry.bucket, namespace: namespace, run: run, generation: generation, step: step) {
                    return (index, slot)
                }
            }
            slot = (slot + 1) & mask
        }
    }

    /// Where `key`'s state is: a journal position if it is one of the positions a journal
    /// holds, else a generic entry (a key is never in both: `applyPosition`).
    private func ref(of key: MemoKey) -> Ref? {
        MemoTable.withBytes(key) { namespace, run, step, name in
            if step.isEmpty, let position = JournalPositions.position(name: name),
               let journal = journalIndex(namespace: namespace, run: run, generation: key.generation),
               position < UInt64(journals[journal].positions.count) {
                return .position(journal: journal, position: Int(position))
            }
            let hash = MemoTable.hash(namespace: namespace, run: run, generation: key.generation, step: step, name: name)
            return find(namespace: namespace, run: run, generation: key.generation, step: step, name: name, hash: hash)
                .index.map { .entry($0) }
        }
    }

    private func journalEquals(_ index: Int, namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer,
                               generation: UInt64) -> Bool {
        let key = journals[index].key
        return key.generation == generation && MemoTable.equal(key.run.run, run) && MemoTable.equal(key.run.namespace, namespace)
    }

    /// The journal of run generation (namespace, run, generation), if it has one.
    private func journalIndex(namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer, generation: UInt64) -> Int? {
        if let last = lastJournal, journalEquals(last, namespace: namespace, run: run, generation: generation) { return last }
        if journals.isEmpty { return nil }
        let key = GenerationKey(run: RunKey(namespace: Array(namespace), run: Array(run)), generation: generation)
        guard let journal = generations[key]?.journal, journal != 0 else { return nil }
        return Int(journal - 1)
    }

    /// The first of the two slots (an even index) where the journal of (namespace, run,
    /// generation) may be cached: the cache is two-way, so two running journals whose hashes
    /// meet both stay cached instead of evicting each other on every turn.
    private static func journalCacheSlot(namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer,
                                         generation: UInt64) -> Int {
        // FNV-1a, not `Hasher` (SipHash): this runs for every journal position applied (11 %
        // of an open from segments went to it), and a slot is only a cache, checked by
        // `journalEquals`, so a collision — chosen by whoever names runs or not — costs a miss.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        mix(UInt8(truncatingIfNeeded: namespace.count))
        for byte in namespace { mix(byte) }
        for byte in run { mix(byte) }
        hash ^= generation &* 0x9e37_79b9_7f4a_7c15
        hash ^= hash >> 29
        return Int(hash % UInt64(journalCacheSlots / 2)) * 2
    }

    /// The journal of (namespace, run, generation) if it is in `journalCache` at `slot` or
    /// the slot after it, filed there since the last removal or sweep: found, created and
    /// seen (`see`) then, and nothing since has lowered its run's latest generation, so it
    /// needs neither lookup nor `see`.
    private func cachedJournal(at slot: Int, namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer,
                               generation: UInt64) -> Int? {
        for way in slot...(slot + 1) {
            let cached = journalCache[way]
            guard cached.journal != 0, cached.epoch == journalCacheEpoch else { continue }
            let index = Int(cached.journal - 1)
            if index < journals.count, journalEquals(index, namespace: namespace, run: run, generation: generation) {
                return index
            }
        }
        return nil
    }

    /// Files journal `index` first at `slot`; the journal filed there moves to the second
    /// way, replacing the one there (the least recently filed of the two).
    private mutating func cacheJournal(_ index: Int, at slot: Int) {
        journalCache[slot + 1] = journalCache[slot]
        journalCache[slot] = (UInt32(index + 1), journalCacheEpoch)
    }

    /// The hash entry `index` was filed under.
    private func hash(ofEntry index: Int) -> UInt32 {
        let entry = entries[index]
        let bucket = buckets[Int(entry.bucket)]
        return bucket.generation.run.namespace.withUnsafeBytes { namespace in
            bucket.generation.run.run.withUnsafeBytes { run in
                bucket.step.withUnsafeBytes { step in
                    MemoTable.hash(namespace: namespace, run: run, generation: bucket.generation.generation, step: step,
                                   name: names.rawBytes(from: Int(entry.nameOffset), count: Int(entry.nameLength)))
                }
            }
        }
    }

    private mutating func growSlots() {
        var fresh = PlainBuffer<UInt64>(zeroed: max(1024, slots.count * 2))
        let mask = fresh.count - 1
        for old in 0..<slots.count {
            let value = slots[old]
            guard value != 0 else { continue }
            var slot = Int(UInt32(truncatingIfNeeded: value >> 32)) & mask
            while fresh[slot] != 0 { slot = (slot + 1) & mask }
            fresh[slot] = value
        }
        slots = fresh
    }

    /// Removes entry `index`'s slot, shifting later entries of its probe run back.
    private mutating func removeSlot(ofEntry index: Int) {
        guard slots.count > 0 else { return }
        let mask = slots.count - 1
        let wanted = UInt64(index + 1)
        var hole = Int(hash(ofEntry: index)) & mask
        var probes = 0
        while slots[hole] & 0xffff_ffff != wanted {
            // Every live entry has a slot; a full circle would be a bug in this table.
            probes += 1
            precondition(slots[hole] != 0 && probes <= slots.count, "memo entry without a slot")
            hole = (hole + 1) & mask
        }
        var next = hole
        while true {
            next = (next + 1) & mask
            let value = slots[next]
            if value == 0 { break }
            let home = Int(UInt32(truncatingIfNeeded: value >> 32)) & mask
            // The entry at `next` may move back to `hole` unless its home lies in (hole, next].
            let stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !stays {
                slots[hole] = value
                hole = next
            }
        }
        slots[hole] = 0
    }

    /// Whether `name` is `JournalEntry.generationMarkerName`.
    static func isGenerationMarker(_ name: UnsafeRawBufferPointer) -> Bool {
        let marker = JournalEntry.generationMarkerName.utf8
        return name.count == marker.count && name.elementsEqual(marker)
    }

    /// The bucket of (generation key, step), created if new.
    private mutating func bucket(namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer, generation: UInt64,
                                 step: UnsafeRawBufferPointer) -> (index: UInt32, wasLast: Bool) {
        if let last = lastBucket,
           bucketEquals(last, namespace: namespace, run: run, generation: generation, step: step) {
            return (last, true)
        }
        let generationKey = GenerationKey(run: RunKey(namespace: Array(namespace), run: Array(run)), generation: generation)
        let key = BucketKey(generation: generationKey, step: Array(step))
        let index: UInt32
        if let found = bucketsByKey[key] {
            index = found
        } else {
            let bucket = Bucket(generation: generationKey, step: key.step)
            if let free = freeBuckets.popLast() {
                index = free
                buckets[Int(free)] = bucket
            } else {
                index = UInt32(buckets.count)
                buckets.append(bucket)
            }
            bucketsByKey[key] = index
            generations[generationKey, default: Generation()].buckets.append(index)
        }
        lastBucket = index
        return (index, false)
    }

    private mutating func storeDigest(_ digest: UnsafeRawBufferPointer) -> UInt32 {
        // No input is 32 zero bytes; checked a word at a time, since every journal position
        // of an open asks (byte by byte it was 6 % of the applying thread).
        guard ZeroScan.lastNonZero(digest, from: 0, end: digest.count) != nil else { return 0 }
        if let free = freeDigests.popLast() {
            digests.mutableRawBytes(from: Int(free - 1) * 32, count: 32).copyMemory(from: digest)
            return free
        }
        digests.append(contentsOf: digest)
        return UInt32(digests.count / 32)
    }

    private mutating func freeDigest(_ digest: UInt32) {
        if digest != 0 { freeDigests.append(digest) }
    }

    private func digest(of entry: Entry) -> [UInt8] {
        digestBytes(entry.digest)
    }

    /// The digest at index + 1 `digest` in `digests`; 0: no input (32 zero bytes).
    private func digestBytes(_ digest: UInt32) -> [UInt8] {
        guard digest != 0 else { return RecordBody.noInputDigest }
        return Array(digests.rawBytes(from: Int(digest - 1) * 32, count: 32))
    }

    private func valueRef(_ index: Int, _ entry: Entry) -> ValueRef {
        entry.isLocated ? .located(entry.location, count: Int(entry.valueCount))
            : .bytes(inMemoryValues[UInt32(index)] ?? [])
    }

    /// Rewrites `names` without the bytes of removed entries once they are half of it.
    private mutating func compactNamesIfWasteful() {
        guard nameGarbage > 4096, nameGarbage * 2 > names.count else { return }
        var fresh = PlainBuffer<UInt8>()
        fresh.reserve(adding: names.count - nameGarbage)
        for index in 0..<entries.count {
            var entry = entries[index]
            guard entry.live else { continue }
            let offset = UInt64(fresh.count)
            fresh.append(contentsOf: names.rawBytes(from: Int(entry.nameOffset), count: Int(entry.nameLength)))
            entry.nameOffset = offset
            entries[index] = entry
        }
        names = fresh
        nameGarbage = 0
    }

    /// Sizes the tables for `count` values (a snapshot that holds only memo items says how
    /// many it holds), so a large open does not grow and rehash them step by step. Only a
    /// hint: when the memory is not there, nothing is reserved.
    mutating func reserve(entries count: Int) {
        guard count > entries.count, count < Int(UInt32.max) - 1 else { return }
        guard entries.reserveIfAvailable(adding: count - entries.count) else { return }
        if count * 4 > slots.count * 3 {
            var size = max(1024, slots.count * 2)
            while size * 3 < count * 4 { size *= 2 }
            guard var fresh = PlainBuffer<UInt64>(zeroedIfAvailable: size) else { return }
            let mask = fresh.count - 1
            for old in 0..<slots.count {
                let value = slots[old]
                guard value != 0 else { continue }
                var slot = Int(UInt32(truncatingIfNeeded: value >> 32)) & mask
                while fresh[slot] != 0 { slot = (slot + 1) & mask }
                fresh[slot] = value
            }
            slots = fresh
        }
    }

    // MARK: Reading

    func generation(_ key: GenerationKey) -> Generation? { generations[key] }

    /// How many values generation `key` holds, and their bytes.
    func totals(_ key: GenerationKey) -> (entries: Int, bytes: Int) {
        guard let generation = generations[key] else { return (0, 0) }
        var totals = (entries: 0, bytes: 0)
        if generation.journal != 0 {
            totals.entries = journals[Int(generation.journal - 1)].positions.count
            totals.bytes = journals[Int(generation.journal - 1)].valueBytes
        }
        for index in generation.buckets {
            totals.entries += buckets[Int(index)].entryCount
            totals.bytes += buckets[Int(index)].valueBytes
        }
        return totals
    }

    /// How many memo values the table holds.
    var count: Int { liveEntries + livePositions }
    /// How many of them are journal positions held densely (for tests).
    var denseJournalPositions: Int { livePositions }
    /// Entries in the flat buffer, live or free (for tests).
    var entryCapacity: Int { entries.count }
    /// Bytes in the name arena, garbage included (for tests).
    var nameArenaBytes: Int { names.count }

    func slot(_ key: MemoKey) -> Slot? {
        switch ref(of: key) {
        case nil:
            return nil
        case .entry(let index):
            let entry = entries[index]
            return Slot(inputDigest: digest(of: entry), timeMilliseconds: entry.time, value: valueRef(index, entry))
        case .position(let journal, let index):
            let position = journals[journal].positions[index]
            return Slot(inputDigest: digestBytes(position.digest), timeMilliseconds: position.time,
                        value: .located(position.location, count: journals[journal].valueCount(position)))
        }
    }

    func info(_ key: GenerationKey) -> RunInfo? {
        guard let generation = generations[key] else { return nil }
        let totals = totals(key)
        return RunInfo(run: MemoTable.memoRun(key.run), generation: key.generation,
                       status: generation.end.map { RunStatus($0.status) }, endTimeMilliseconds: generation.end?.timeMilliseconds,
                       entryCount: totals.entries, valueBytes: totals.bytes)
    }

    func infos(_ query: RunQuery) -> [RunInfo] {
        let namespace = query.namespace.map { Array($0.utf8) }
        let run = query.run.map { Array($0.utf8) }
        let keys = generations.keys
            .filter { (namespace == nil || $0.run.namespace == namespace) && (run == nil || $0.run.run == run) }
            .sorted()
        var infos: [RunInfo] = []
        for key in keys {
            if let info = info(key) { infos.append(info) }
        }
        return infos
    }

    // MARK: Store bookkeeping

    /// The generation a memo of `run` reads and writes now: the latest, unless it ended (or
    /// is ending, or was swept), else a new one, handed out here (nothing is written until
    /// its first put or its end). Throws `.limitExceeded` when a new one is needed and the
    /// highest generation any record names is already 2^64 − 1 (only a record written by hand
    /// names it): never wrapped, never trapped on the log's bytes.
    mutating func currentGeneration(_ run: RunKey) throws -> UInt64 {
        if let latest = latest[run] {
            let generation = generations[GenerationKey(run: run, generation: latest)]
            if generation == nil || (generation?.end == nil && generation?.ending == false) {
                // Handed out and not written yet, or running.
                return latest
            }
        }
        guard highestGeneration < UInt64.max else {
            throw LedgerError(.limitExceeded,
                              "run \(MemoTable.memoRun(run)) needs a new memo generation, but this ledger's memo already names generation \(highestGeneration), the last a 64-bit number holds (a record no OnceLedger writes); nothing was written. Salvage the ledger or use a new one",
                              limit: "generation")
        }
        highestGeneration += 1
        latest[run] = highestGeneration
        handedOut.insert(highestGeneration)
        return highestGeneration
    }

    /// Whether a put to `key` may be written now — its generation is its run's latest and has
    /// not ended (nor is ending) — and if so, counts the put as in flight (`endPut` ends
    /// it): one lookup of the run and one of the generation, every put.
    mutating func beginPut(_ key: GenerationKey) -> Bool {
        guard latest[key.run] == key.generation else { return false }
        var accepted = false
        func begin(_ generation: inout Generation) {
            guard generation.end == nil, !generation.ending else { return }
            generation.putsInFlight += 1
            accepted = true
        }
        begin(&generations[key, default: Generation()])
        return accepted
    }

    /// Ends a put `beginPut` accepted; drops its generation if it then carries no state
    /// (`dropIfEmpty`), with one lookup.
    mutating func endPut(_ key: GenerationKey) {
        guard let index = generations.index(forKey: key) else { return }
        generations.values[index].putsInFlight -= 1
        if generations.values[index].carriesNoState { generations.remove(at: index) }
    }

    /// The numbers of every generation the table holds (running, ended, being swept, or
    /// handed out and not written yet): what a compaction checks a journal effect's
    /// generation against (`LedgerState.Retention.journalGenerationSwept`).
    func generationNumbers() -> Set<UInt64> {
        var numbers = handedOut
        numbers.reserveCapacity(generations.count + handedOut.count)
        for key in generations.keys { numbers.insert(key.generation) }
        return numbers
    }

    mutating func setEnding(_ key: GenerationKey, _ ending: Bool) {
        generations[key, default: Generation()].ending = ending
        if !ending { dropIfEmpty(key) }
    }

    mutating func setSweeping(_ key: GenerationKey, _ sweeping: Bool) {
        generations[key]?.sweeping = sweeping
    }

    /// A generation with no end, no values and nothing in flight carries no state (a put
    /// or an end that failed to be written leaves it so).
    private mutating func dropIfEmpty(_ key: GenerationKey) {
        guard let generation = generations[key], generation.carriesNoState else { return }
        generations[key] = nil
    }

    /// The ended generations whose retention window has passed at `now`, not being swept and
    /// with no put in flight, each now marked as being swept, with its value count, in
    /// generation order (numbers are unique in a ledger: the order they were handed out).
    /// A generation that ended after `now` (a clock that went backwards) is never due. One
    /// pass over `generations`, no lookup per key: a sweep of 100 k runs (T18) takes them all.
    mutating func beginSweep(now: UInt64, retention: MemoRetention) -> [(key: GenerationKey, entries: Int)] {
        var due: [(key: GenerationKey, entries: Int)] = []
        var index = generations.startIndex
        while index != generations.endIndex {
            let generation = generations.values[index]
            if let end = generation.end, !generation.sweeping, generation.putsInFlight == 0,
               let window = retention.windowMilliseconds(for: RunStatus(end.status)),
               now >= end.timeMilliseconds, now - end.timeMilliseconds >= window {
                var entries = generation.journal == 0 ? 0 : journals[Int(generation.journal - 1)].positions.count
                for bucket in generation.buckets { entries += buckets[Int(bucket)].entryCount }
                due.append((generations.keys[index], entries))
                generations.values[index].sweeping = true
            }
            generations.formIndex(after: &index)
        }
        due.sort { a, b in a.key.generation != b.key.generation ? a.key.generation < b.key.generation : a.key < b.key }
        return due
    }

    // MARK: Applying records

    /// Applies one durable memo record or snapshot item (kinds 13–15) given as its encoded
    /// body. Throws `.malformedBody` for a body that does not decode. `location` is where
    /// the record (or, for a snapshot hint, the item's value) is on disk, if it is: a memo
    /// entry's value then stays there.
    mutating func apply(kind: RecordKind, body: UnsafeRawBufferPointer, location: ValueLocation? = nil) throws {
        if kind == .journalPositions { return try applyPositions(body, first: location) }
        apply(try MemoTable.decode(kind: kind, body), body: body, location: location)
    }

    /// Decodes the body of a memo record or item of kind 13–15: its fields, checked, which is
    /// all applying it needs besides its body bytes. Decoding needs no table, so an open
    /// decodes on the thread that scans the log and applies on another (`LoadPipeline`).
    /// Throws `.malformedBody` for a body that does not decode or another kind,
    /// `.unsupportedVersion` for an unknown kind.
    static func decode(kind: RecordKind, _ body: UnsafeRawBufferPointer) throws -> RecordBody.Fields {
        let fields: RecordBody.Fields
        switch RecordBody.decodeFields(kind: kind, body) {
        case .fields(let decoded): fields = decoded
        case .corrupt(let reason): throw LedgerError(.malformedBody, reason)
        case .unknownKind(let unknown):
            throw LedgerError(.unsupportedVersion, "record kind \(unknown.rawValue) is not known to this build")
        }
        switch fields {
        case .memoEntry, .runEnd, .memoSweep:
            return fields
        default:
            throw LedgerError(.malformedBody, "record kind \(kind) is not a memo record")
        }
    }

    /// Applies the fields `decode` returned, given their body bytes. Cannot fail: `decode`
    /// checked them.
    mutating func apply(_ fields: RecordBody.Fields, body: UnsafeRawBufferPointer, location: ValueLocation?) {
        changes &+= 1
        func part(_ range: Range<Int>) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: body[range]) }
        func generationKey(_ namespace: Range<Int>, _ run: Range<Int>, _ generation: UInt64) -> GenerationKey {
            GenerationKey(run: RunKey(namespace: Array(part(namespace)), run: Array(part(run))), generation: generation)
        }
        switch fields {
        case let .memoEntry(namespace, run, generation, step, name, digest, time, value):
            applyEntry(namespace: part(namespace), run: part(run), generation: generation, step: part(step),
                       name: part(name), digest: part(digest), time: time,
                       value: part(value), bodyBytes: body.count, location: location)
        case let .runEnd(namespace, run, generation, status, time):
            let key = generationKey(namespace, run, generation)
            see(key)
            // The first end stands (the store writes one per generation).
            if generations[key]?.end == nil { generations[key, default: Generation()].end = (status, time) }
        case let .memoSweep(namespace, run, generation, time):
            let key = generationKey(namespace, run, generation)
            // `see(key)`, then "the swept generation is no longer its run's latest", with one
            // lookup of the run (a sweep applies up to 1,024 of these per commit).
            highestGeneration = max(highestGeneration, generation)
            if !handedOut.isEmpty { handedOut.remove(generation) }
            if let index = latest.index(forKey: key.run), latest.values[index] <= generation {
                latest.remove(at: index)
            }
            remove(key)
            lastBucketSeen = false
            lastJournalSeen = false
            journalCacheEpoch &+= 1
            if generation >= highestSweep?.key.generation ?? 0 { highestSweep = (key, time) }
        default:
            // `decode` returns the three memo kinds only.
            break
        }
    }

    /// A journal-positions hint of a version 4 snapshot (kind 18, `Spec/FORMAT.md` §5.21):
    /// each position applied as its memo entry would be, with its value where the hint's
    /// values follow one another from `first`. Throws `.malformedBody` for a body that does
    /// not decode, or one that comes without the snapshot location of its first value.
    private mutating func applyPositions(_ body: UnsafeRawBufferPointer, first: ValueLocation?) throws {
        guard let first, first.isSnapshot else {
            throw LedgerError(.malformedBody, "a journal-positions item outside a version 4 snapshot's hints; no writer makes one")
        }
        let header: JournalPositions.Header
        switch JournalPositions.header(body) {
        case .success(let decoded): header = decoded
        case .failure(let malformed): throw LedgerError(.malformedBody, malformed.reason)
        }
        let namespace = UnsafeRawBufferPointer(rebasing: body[header.namespace])
        let run = UnsafeRawBufferPointer(rebasing: body[header.run])
        let fixed = JournalPositions.memoBodyFixedBytes + namespace.count + run.count
        let name = UnsafeMutableRawBufferPointer.allocate(byteCount: JournalPositions.nameBytes, alignment: 1)
        defer { name.deallocate() }
        var offset = first.offset
        var noDigest = RecordBody.noInputDigest
        let decoded = noDigest.withUnsafeMutableBytes { noDigest in
            JournalPositions.decode(body) { index, position in
                let bodyBytes = fixed + Int(position.valueBytes)
                let location = ValueLocation(file: first.file, offset: offset, bodyBytes: UInt32(bodyBytes))
                offset += UInt64(location.readBytes)
                let number = header.first + UInt64(index)
                let digest = position.digest.map { UnsafeRawBufferPointer(rebasing: body[$0]) } ?? UnsafeRawBufferPointer(noDigest)
                if number < MemoTable.densePositionsMax,
                   applyPosition(namespace: namespace, run: run, generation: header.generation, position: number,
                                 digest: digest, time: position.timeMilliseconds, location: location) {
                    // The hint's positions go to this journal one after the other: room for all.
                    if index == 0, let journal = lastJournal, journals[journal].positions.count == Int(number) + 1 {
                        journals[journal].positions.reserveCapacity(Int(number) + header.count)
                    }
                    return
                }
                // The generic way, as the memo entry hint the position stands for.
                for (at, byte) in JournalPositions.name(number).enumerated() { name[at] = byte }
                applyEntry(namespace: namespace, run: run, generation: header.generation, step: UnsafeRawBufferPointer(start: nil, count: 0),
                           name: UnsafeRawBufferPointer(name), digest: digest, time: position.timeMilliseconds,
                           value: UnsafeRawBufferPointer(start: nil, count: 0), bodyBytes: fixed, location: location)
            }
        }
        if case .failure(let malformed) = decoded { throw LedgerError(.malformedBody, malformed.reason) }
    }

    /// Applies journal position `position` of (namespace, run, generation) to its journal if
    /// it belongs there: a position the journal holds (replaced), or the next one while no
    /// memo entry of step "" of the generation is generic (appended; position 0 creates the
    /// journal). False: the caller applies it as a generic entry.
    private mutating func applyPosition(namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer, generation: UInt64,
                                        position: UInt64, digest: UnsafeRawBufferPointer, time: UInt64,
                                        location: ValueLocation) -> Bool {
        let journalIndex: Int
        if let last = lastJournal, journalEquals(last, namespace: namespace, run: run, generation: generation) {
            journalIndex = last
            if !lastJournalSeen {
                see(journals[last].key)
                lastJournalSeen = true
            }
        } else {
            let slot = MemoTable.journalCacheSlot(namespace: namespace, run: run, generation: generation)
            if let cached = cachedJournal(at: slot, namespace: namespace, run: run, generation: generation) {
                // One of the recently written journals (64 runs recording steps at once take
                // turns, so the last journal rarely matches): no key built, no lookup.
                journalIndex = cached
            } else {
                let key = GenerationKey(run: RunKey(namespace: Array(namespace), run: Array(run)), generation: generation)
                guard let found = journal(of: key, creatingFor: position) else { return false }
                journalIndex = found
                see(key)
                cacheJournal(journalIndex, at: slot)
            }
            lastJournal = journalIndex
            lastJournalSeen = true
        }
        var fresh = Position(valueFile: location.file, valueOffset: location.offset, time: time,
                             valueBodyBytes: location.bodyBytes, digest: 0)
        let count = journals[journalIndex].positions.count
        if position < UInt64(count) {
            let old = journals[journalIndex].positions[Int(position)]
            forget(Ref.position(journal: journalIndex, position: Int(position)).key)
            freeDigest(old.digest)
            fresh.digest = storeDigest(digest)
            journals[journalIndex].valueBytes += journals[journalIndex].valueCount(fresh) - journals[journalIndex].valueCount(old)
            journals[journalIndex].positions[Int(position)] = fresh
            return true
        }
        guard position == UInt64(count), !journals[journalIndex].frozen else { return false }
        fresh.digest = storeDigest(digest)
        journals[journalIndex].valueBytes += journals[journalIndex].valueCount(fresh)
        journals[journalIndex].positions.append(fresh)
        livePositions += 1
        return true
    }

    /// The journal of `key`: the one it has, or a new one when `position` is its first (0)
    /// and no generic entry of step "" holds its positions; nil otherwise.
    private mutating func journal(of key: GenerationKey, creatingFor position: UInt64) -> Int? {
        if let found = generations[key]?.journal, found != 0 { return Int(found - 1) }
        guard position == 0, generations[key]?.genericJournalStep != true else { return nil }
        let journal = Journal(key: key)
        let index: Int
        if let free = freeJournals.popLast() {
            index = Int(free)
            journals[index] = journal
        } else {
            // 2 G journals would need far more memory than any machine this runs on has.
            precondition(journals.count < Int(Int32.max), "more than 2 G journals")
            index = journals.count
            journals.append(journal)
        }
        generations[key, default: Generation()].journal = UInt32(index + 1)
        return index
    }

    private mutating func applyEntry(namespace: UnsafeRawBufferPointer, run: UnsafeRawBufferPointer, generation: UInt64,
                                     step: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer,
                                     digest: UnsafeRawBufferPointer, time: UInt64, value: UnsafeRawBufferPointer,
                                     bodyBytes: Int, location: ValueLocation?) {
        // A journal position that fits its generation's journal goes there (a segment
        // record's, or a snapshot value's: both hold the whole memo entry body).
        if step.isEmpty, let location, let position = JournalPositions.position(name: name),
           position < MemoTable.densePositionsMax,
           applyPosition(namespace: namespace, run: run, generation: generation, position: position, digest: digest,
                         time: time, location: location) {
            return
        }
        let hash = MemoTable.hash(namespace: namespace, run: run, generation: generation, step: step, name: name)
        var (found, slot) = find(namespace: namespace, run: run, generation: generation, step: step, name: name,
                                 hash: hash)
        let (bucketIndex, wasLast) = bucket(namespace: namespace, run: run, generation: generation, step: step)
        if step.isEmpty, !MemoTable.isGenerationMarker(name) {
            // A position (or any other name but the journal's generation marker) kept as a
            // generic entry of step "": this generation's later positions are generic too,
            // so a key is in one place. The marker is no position and never collides.
            let generationKey = buckets[Int(bucketIndex)].generation
            if generations[generationKey]?.genericJournalStep != true {
                generations[generationKey]?.genericJournalStep = true
                if let journal = generations[generationKey]?.journal, journal != 0 { journals[Int(journal - 1)].frozen = true }
            }
        }
        if !(wasLast && lastBucketSeen) {
            see(buckets[Int(bucketIndex)].generation)
            lastBucketSeen = true
        }
        // A segment record holds the whole body; a snapshot hint holds it with an empty value,
        // which is in the snapshot's value (the whole body) instead.
        let valueCount = location.map { $0.isSnapshot ? max(0, Int($0.bodyBytes) - bodyBytes) : value.count }
            ?? value.count
        let index: Int
        var entry: Entry
        if let found {
            index = found
            entry = entries[index]
            forget(UInt64(index))
            freeDigest(entry.digest)
            buckets[Int(bucketIndex)].valueBytes -= Int(entry.valueCount)
        } else {
            if (liveEntries + 1) * 4 > slots.count * 3 {
                growSlots()
                slot = find(namespace: namespace, run: run, generation: generation, step: step, name: name, hash: hash).slot
            }
            if freeEntry != 0 {
                index = Int(freeEntry - 1)
                freeEntry = entries[index].next
            } else {
                // 4 G memo values would need far more memory than any machine this runs on has.
                precondition(entries.count < Int(UInt32.max) - 1, "more than 4 G memo values")
                index = entries.count
                entries.append(Entry(nameOffset: 0, time: 0, valueFile: 0, valueOffset: 0, valueBodyBytes: 0,
                                     valueCount: 0, bucket: 0, next: 0, digest: 0, nameLength: 0, live: false))
            }
            entry = Entry(nameOffset: UInt64(names.count), time: 0, valueFile: Entry.inMemory, valueOffset: 0,
                          valueBodyBytes: 0, valueCount: 0, bucket: bucketIndex, next: buckets[Int(bucketIndex)].first,
                          digest: 0, nameLength: UInt16(name.count), live: true)
            names.append(contentsOf: name)
            buckets[Int(bucketIndex)].first = UInt32(index + 1)
            slots[slot] = UInt64(hash) << 32 | UInt64(index + 1)
            liveEntries += 1
            buckets[Int(bucketIndex)].entryCount += 1
        }
        entry.digest = storeDigest(digest)
        entry.time = time
        entry.valueCount = UInt32(valueCount)
        if let location {
            entry.valueFile = location.file
            entry.valueOffset = location.offset
            entry.valueBodyBytes = location.bodyBytes
            if !inMemoryValues.isEmpty { inMemoryValues[UInt32(index)] = nil }
        } else {
            entry.valueFile = Entry.inMemory
            inMemoryValues[UInt32(index)] = Array(value)
        }
        entries[index] = entry
        buckets[Int(bucketIndex)].valueBytes += valueCount
    }

    /// Removes a swept generation and every value it holds.
    private mutating func remove(_ key: GenerationKey) {
        guard let generation = generations.removeValue(forKey: key) else { return }
        if generation.journal != 0 {
            let journalIndex = Int(generation.journal - 1)
            for (index, position) in journals[journalIndex].positions.enumerated() {
                freeDigest(position.digest)
                forget(Ref.position(journal: journalIndex, position: index).key)
            }
            livePositions -= journals[journalIndex].positions.count
            journals[journalIndex] = Journal(key: GenerationKey(run: RunKey(namespace: [], run: []), generation: 0))
            freeJournals.append(UInt32(journalIndex))
            if lastJournal == journalIndex { lastJournal = nil }
            journalCacheEpoch &+= 1
        }
        for bucketIndex in generation.buckets {
            var next = buckets[Int(bucketIndex)].first
            while next != 0 {
                let index = Int(next - 1)
                var entry = entries[index]
                next = entry.next
                removeSlot(ofEntry: index)
                forget(UInt64(index))
                freeDigest(entry.digest)
                nameGarbage += Int(entry.nameLength)
                if !entry.isLocated { inMemoryValues[UInt32(index)] = nil }
                entry.live = false
                entry.next = freeEntry
                entries[index] = entry
                freeEntry = UInt32(index + 1)
                liveEntries -= 1
            }
            let bucket = buckets[Int(bucketIndex)]
            bucketsByKey[BucketKey(generation: bucket.generation, step: bucket.step)] = nil
            buckets[Int(bucketIndex)] = Bucket(generation: GenerationKey(run: RunKey(namespace: [], run: []), generation: 0),
                                               step: [])
            freeBuckets.append(bucketIndex)
            if lastBucket == bucketIndex { lastBucket = nil }
        }
        compactNamesIfWasteful()
    }

    /// A record of `key` was applied: its generation counts as seen and, if newer, as its
    /// run's latest.
    private mutating func see(_ key: GenerationKey) {
        if !handedOut.isEmpty { handedOut.remove(key.generation) }
        highestGeneration = max(highestGeneration, key.generation)
        if key.generation > latest[key.run] ?? 0 { latest[key.run] = key.generation }
    }

    // MARK: Reads

    /// Reads the memo entry at `location` (through `file`, a handle taken earlier, or the
    /// reader's) and returns its value, checked to be the entry whose body without its
    /// value is `hint` (its key, digest and time: a memo entry's value is its last field).
    static func readValue(at location: ValueLocation, hint: [UInt8], reader: RecordReader,
                          file: (any StorageFile)?, readAhead: ReadAhead? = nil) throws -> [UInt8] {
        let handle = try file ?? reader.handle(for: location.file)
        return try reader.readPart(location, from: handle, readAhead: readAhead) { kind, raw -> Range<Int> in
            let prefix = hint.count - 4
            guard kind == .memoEntry, prefix >= 0, raw.count >= hint.count,
                  hint.withUnsafeBytes({ memcmp($0.baseAddress.unsafelyUnwrapped, raw.baseAddress.unsafelyUnwrapped, prefix) }) == 0,
                  case .fields(.memoEntry(_, _, _, _, _, _, _, let value)) = RecordBody.decodeFields(kind: kind, raw),
                  value.lowerBound == hint.count
            else { throw moved(location, reader: reader) }
            return value
        }
    }

    static func moved(_ location: ValueLocation, reader: RecordReader) -> LedgerError {
        LedgerError(
            .corruptRecord,
            "the record at offset \(location.offset) no longer holds the memo value it held when the ledger opened; run `onceledger verify` and `onceledger salvage`",
            path: reader.path(of: location.file), segment: location.isSnapshot ? nil : location.file,
            offset: location.offset)
    }

    /// A value's read, prepared under the lock and finished outside it (`LogStore.memoGet`):
    /// the handle is taken now, so a compaction that removes the file meanwhile does not
    /// take the bytes away.
    struct Read {
        var inputDigest: [UInt8]?
        var timeMilliseconds: UInt64
        var value: ValueRef
        var onDisk: (reader: RecordReader, file: any StorageFile)?
        /// For a value read from disk that the cache may keep: its entry and location.
        var cacheable: (entry: UInt64, location: ValueLocation)?

        /// The value's bytes, read from disk if they are there and checked to be `key`'s.
        func finish(_ key: MemoKey) throws -> [UInt8] {
            switch value {
            case .bytes(let bytes):
                return bytes
            case .located(let location, _):
                guard let (reader, file) = onDisk else {
                    throw LedgerError(.closed, "this ledger has no reader for memo values on disk")
                }
                return try reader.readPart(location, from: file) { kind, raw -> Range<Int> in
                    try Read.valueRange(of: key, kind: kind, raw, location: location, reader: reader)
                }
            }
        }

        /// Where `key`'s value lies in a memo entry record's body `raw`; throws `.corruptRecord`
        /// if the record is not `key`'s (`finish`, and `LogStore.memoGetMany`'s bulk read).
        static func valueRange(of key: MemoKey, kind: RecordKind, _ raw: UnsafeRawBufferPointer,
                               location: ValueLocation, reader: RecordReader) throws -> Range<Int> {
                    guard kind == .memoEntry,
                          case .fields(.memoEntry(let namespace, let run, let generation, let step, let name, _, _, let value)) =
                            RecordBody.decodeFields(kind: kind, raw),
                          generation == key.generation,
                          MemoTable.withBytes(key, { keyNamespace, keyRun, keyStep, keyName in
                              func same(_ range: Range<Int>, _ bytes: UnsafeRawBufferPointer) -> Bool {
                                  range.count == bytes.count
                                      && (bytes.isEmpty || memcmp(raw.baseAddress.unsafelyUnwrapped + range.lowerBound,
                                                                  bytes.baseAddress.unsafelyUnwrapped, bytes.count) == 0)
                              }
                              return same(name, keyName) && same(step, keyStep) && same(run, keyRun)
                                  && same(namespace, keyNamespace)
                          })
                    else { throw MemoTable.moved(location, reader: reader) }
                    return value
        }
    }

    /// The read of position `number` of journal `journal`; `handle`: one taken already for
    /// the file its value is in, if any.
    private func readPosition(_ journal: Int, _ number: Int,
                              handle: (file: UInt64, handle: any StorageFile)?) throws -> Read {
        let position = journals[journal].positions[number]
        let digest: [UInt8]? = position.digest == 0 ? nil : digestBytes(position.digest)
        let cacheKey = Ref.position(journal: journal, position: number).key
        if let cached = cache[cacheKey] {
            return Read(inputDigest: digest, timeMilliseconds: position.time, value: .bytes(cached.bytes))
        }
        let count = journals[journal].valueCount(position)
        let value = ValueRef.located(position.location, count: count)
        guard let reader else { return Read(inputDigest: digest, timeMilliseconds: position.time, value: value) }
        let file = handle.flatMap { $0.file == position.valueFile ? $0.handle : nil }
        return Read(inputDigest: digest, timeMilliseconds: position.time, value: value,
                    onDisk: (reader, try file ?? reader.handle(for: position.valueFile)),
                    cacheable: count <= MemoTable.cacheValueBytesMax ? (cacheKey, position.location) : nil)
    }

    /// `read` of each of `keys`. A replay reads a run's positions in order (`memoGetMany`):
    /// keys of the run generation of the key before find its journal without a lookup, and
    /// their positions directly in its array.
    func readMany(_ keys: [MemoKey]) throws -> [Read?] {
        var reads: [Read?] = []
        reads.reserveCapacity(keys.count)
        var last: (run: MemoRun, generation: UInt64, journal: Int?)?
        var handle: (file: UInt64, handle: any StorageFile)?
        for key in keys {
            var name = key.name
            guard key.step.isEmpty, let number = name.withUTF8({ JournalPositions.position(name: UnsafeRawBufferPointer($0)) })
            else {
                reads.append(try read(key))
                continue
            }
            if last?.generation != key.generation || last?.run != key.run {
                let journal = MemoTable.withBytes(key) { namespace, run, _, _ in
                    journalIndex(namespace: namespace, run: run, generation: key.generation)
                }
                last = (key.run, key.generation, journal)
            }
            guard let journal = last?.journal, number < UInt64(journals[journal].positions.count) else {
                reads.append(try read(key))
                continue
            }
            let read = try readPosition(journal, Int(number), handle: handle)
            if let onDisk = read.onDisk, case .located(let location, _) = read.value {
                handle = (location.file, onDisk.file)
            }
            reads.append(read)
        }
        return reads
    }

    func read(_ key: MemoKey) throws -> Read? {
        let index: Int
        switch ref(of: key) {
        case nil:
            return nil
        case .entry(let found):
            index = found
        case .position(let journal, let number):
            return try readPosition(journal, number, handle: nil)
        }
        let entry = entries[index]
        let digest: [UInt8]? = entry.digest == 0 ? nil : self.digest(of: entry)
        if let cached = cache[UInt64(index)] {
            return Read(inputDigest: digest, timeMilliseconds: entry.time, value: .bytes(cached.bytes))
        }
        let value = valueRef(index, entry)
        guard entry.isLocated, let reader else { return Read(inputDigest: digest, timeMilliseconds: entry.time, value: value) }
        return Read(inputDigest: digest, timeMilliseconds: entry.time, value: value,
                    onDisk: (reader, try reader.handle(for: entry.valueFile)),
                    cacheable: Int(entry.valueCount) <= MemoTable.cacheValueBytesMax ? (UInt64(index), entry.location) : nil)
    }

    /// Keeps `bytes`, read from `location` for entry `index` (`Ref.key`), in the value cache
    /// if the entry still holds that record (no put replaced it, no sweep removed it meanwhile).
    mutating func remember(_ index: UInt64, location: ValueLocation, bytes: [UInt8]) {
        guard bytes.count <= MemoTable.cacheValueBytesMax, cache[index] == nil else { return }
        switch Ref(key: index) {
        case .entry(let entryIndex):
            guard entryIndex < entries.count else { return }
            let entry = entries[entryIndex]
            guard entry.live, entry.isLocated, entry.location == location else { return }
        case .position(let journal, let position):
            guard journal < journals.count, position < journals[journal].positions.count,
                  journals[journal].positions[position].location == location
            else { return }
        }
        cacheSerial += 1
        cache[index] = (bytes, cacheSerial)
        cacheOrder.append((index, cacheSerial))
        cacheBytes += bytes.count
        while cacheBytes > MemoTable.cacheBytesMax, cacheOrderStart < cacheOrder.count {
            let (oldest, serial) = cacheOrder[cacheOrderStart]
            cacheOrderStart += 1
            if cache[oldest]?.serial == serial { forget(oldest) }
        }
        if cacheOrderStart > 1024, cacheOrderStart * 2 > cacheOrder.count {
            cacheOrder.removeFirst(cacheOrderStart)
            cacheOrderStart = 0
        }
    }

    /// Drops entry `index`'s cached value, if any.
    private mutating func forget(_ index: UInt64) {
        if cache.isEmpty { return }
        if let dropped = cache.removeValue(forKey: index) { cacheBytes -= dropped.bytes.count }
    }

    /// Bytes in the value cache (for tests).
    var cachedValueBytes: Int { cacheBytes }

    // MARK: Snapshots

    /// What a compaction's `snapshotSource` saw, for its `relocate`: which memo entry each
    /// item is, where its value was then (nil: in memory), and `changes` at that moment.
    struct SnapshotOrigin: Sendable {
        var keys: [ItemKey]
        var sources: [ValueLocation?]
        var changes: UInt64
    }

    /// After a compaction wrote `snapshotSource`'s items: the value of memo entry
    /// `origin.keys[i]` (`ItemKey.none`: not a memo entry) is now at `locations[i]`.
    /// Records applied since the items were taken (the snapshot is written while appends
    /// go on) may have removed an entry or reused its slot, so an entry moves only if it
    /// still stands for the value written: its value is still where the snapshot read it
    /// from (a location names one record or snapshot value, never reused while the file
    /// lives), or, for a value kept in memory, nothing was applied since.
    ///
    /// `range`: the items to move in this call (the caller takes the lock once per range,
    /// so later records are applied between ranges).
    mutating func relocate(_ origin: SnapshotOrigin, locations: ArraySlice<ValueLocation?>, range: Range<Int>) {
        guard reader != nil else { return }
        let unchanged = origin.changes == changes
        let end = min(range.upperBound, origin.keys.count, locations.count)
        guard range.lowerBound < end else { return }
        for position in range.lowerBound..<end {
            let key = origin.keys[position]
            guard key.ref != ItemKey.none.ref, let location = locations[locations.startIndex + position] else { continue }
            let source = position < origin.sources.count ? origin.sources[position] : nil
            switch Ref(key: key.ref) {
            case .entry(let index):
                guard index < entries.count else { continue }
                var entry = entries[index]
                guard entry.live else { continue }
                if let source {
                    guard entry.isLocated, entry.location == source else { continue }
                } else {
                    guard unchanged, !entry.isLocated else { continue }
                }
                entry.valueFile = location.file
                entry.valueOffset = location.offset
                entry.valueBodyBytes = location.bodyBytes
                entries[index] = entry
                if !inMemoryValues.isEmpty { inMemoryValues[UInt32(index)] = nil }
            case .position(let journal, let number):
                guard journal < journals.count, number < journals[journal].positions.count,
                      let source, journals[journal].positions[number].location == source else { continue }
                let old = journals[journal].positions[number]
                journals[journal].positions[number].valueFile = location.file
                journals[journal].positions[number].valueOffset = location.offset
                journals[journal].positions[number].valueBodyBytes = location.bodyBytes
                // (The same bytes in both places; kept exact all the same: the bound reads it.)
                journals[journal].valueBytes += journals[journal].valueCount(journals[journal].positions[number])
                    - journals[journal].valueCount(old)
            }
            // The next read fetches it from its new place (compactions are rare).
            forget(key.ref)
        }
    }

    /// At least how many items `snapshotSource` appends (to reserve room for them).
    var snapshotItemCountBound: Int { liveEntries + livePositions + generations.count + 1 }

    /// A copy of the memo a compaction's snapshot is made from, for another thread: the
    /// tables `snapshotSource` reads, the flat ones copied (a `memcpy` each), the others
    /// shared until the live table next changes them (copy-on-write: a journal's positions
    /// are copied only if that journal gets a new position meanwhile). No hash table, no
    /// cache: the copy is only read by `snapshotSource` and `snapshotByteBound`.
    func frozenCopy() -> MemoTable {
        var copy = MemoTable()
        copy.reader = reader
        copy.generations = generations
        copy.highestSweep = highestSweep
        copy.entries = entries.copy()
        copy.liveEntries = liveEntries
        copy.names = names.copy()
        copy.digests = digests.copy()
        copy.buckets = buckets
        copy.journals = journals
        copy.livePositions = livePositions
        copy.inMemoryValues = inMemoryValues
        copy.changes = changes
        return copy
    }

    /// Whether each journal's `valueBytes` is its positions' `valueCount` summed, as
    /// `snapshotByteBound` needs (for tests).
    var journalValueBytesAreExact: Bool {
        journals.allSatisfy { journal in journal.positions.reduce(0) { $0 + journal.valueCount($1) } == journal.valueBytes }
    }

    /// At least the bytes `snapshotSource`'s items take in a snapshot (hints and value
    /// frames), from lengths alone: each value's body counted as a hint and as a value, as
    /// if no journal positions were grouped. For the rollover rule (`Spec/FORMAT.md` §8),
    /// before the items are made.
    func snapshotByteBound() -> Int {
        let align = FormatLimits.recordAlignment
        func item(_ body: Int) -> Int {
            SnapshotFile.hintHeaderBytes + SnapshotFile.valueHeaderBytes + 2 * Alignment.roundUp(body, to: align)
        }
        var total = 0
        for (key, generation) in generations {
            let keyBytes = key.run.namespace.count + key.run.run.count
            // A run end or a sweep: namespace, run, generation, status or time, time.
            total += 2 * item(64 + keyBytes)
            if generation.journal != 0, Int(generation.journal) - 1 < journals.count {
                // Each position as `item(fixed + its value bytes)` (`valueCount`), summed
                // from the journal's totals, not position by position (10 M positions took
                // ~90 ms, on the writer's thread): `item(b) <= header + 2 * (b + align - 1)`.
                let journal = journals[Int(generation.journal) - 1]
                let fixed = JournalPositions.memoBodyFixedBytes + keyBytes
                total += journal.positions.count * item(fixed + align - 1) + 2 * journal.valueBytes
            }
            for bucketIndex in generation.buckets where Int(bucketIndex) < buckets.count {
                var next = buckets[Int(bucketIndex)].first
                while next != 0, Int(next) - 1 < entries.count {
                    let entry = entries[Int(next) - 1]
                    total += item(max(Int(entry.valueBodyBytes), 60 + keyBytes + buckets[Int(bucketIndex)].step.count
                                      + Int(entry.nameLength) + Int(entry.valueCount)))
                    next = entry.next
                }
            }
        }
        return total + 2 * item(64 + (highestSweep.map { $0.key.run.namespace.count + $0.key.run.run.count } ?? 0))
    }

    /// The memo as snapshot items (`Spec/FORMAT.md` §6.2, §9.4), in key order, appended to
    /// `items`: each live generation's values and its end; then the sweep of the highest
    /// generation swept. Swept generations are gone, so compaction drops them. Values on
    /// disk are not read here (a compaction calls this on a copy, `frozenCopy`, on the
    /// snapshot's thread, before the file is written): their items are hints with
    /// the value's length (`.receiptLater`), or a journal position's fields
    /// (`.journalPosition`: 32 bytes per position, its run's key and digests shared), and
    /// `value(index, item)` reads the value of the `index`-th item appended, `item`, later,
    /// through a handle pinned now (no file the copy names is removed before the snapshot
    /// that covers it is written). Beside them, which memo entry each
    /// item is (for `relocate`).
    ///
    /// Memory while a large journal compacts, per position: the item (32 B), where its value
    /// is (24 B) and its key (8 B), besides what the writer keeps (`SnapshotFile.writeStream`).
    func snapshotSource(into items: inout [SnapshotFile.StreamItem]) throws
        -> (origin: SnapshotOrigin, value: @Sendable (Int, SnapshotFile.StreamItem) throws -> [UInt8]) {
        var keys: [ItemKey] = []
        // Per item, where its value is on disk (nil: whole in its body). An array, not a
        // dictionary: ~50 B less per journal position while a large journal compacts.
        var onDisk: [ValueLocation?] = []
        let expected = liveEntries + livePositions + generations.count + 1
        items.reserveCapacity(items.count + expected)
        keys.reserveCapacity(expected)
        onDisk.reserveCapacity(expected)
        var handles: [UInt64: any StorageFile] = [:]
        let reader = self.reader
        func pin(_ file: UInt64, _ reader: RecordReader) throws {
            if handles[file] == nil { handles[file] = try reader.handle(for: file) }
        }
        for key in generations.keys.sorted() {
            guard let generation = generations[key] else { continue }
            let namespace = String(decoding: key.run.namespace, as: UTF8.self)
            let run = String(decoding: key.run.run, as: UTF8.self)
            func emit(step: String, name: String, digest: [UInt8], time: UInt64,
                      located: (location: ValueLocation, count: UInt32)?, inMemory: [UInt8], ref: Ref) throws {
                let body = RecordBody.memoEntry(.init(
                    namespace: namespace, run: run, generation: key.generation, step: step, name: name,
                    inputDigest: digest, timeMilliseconds: time, value: located == nil ? inMemory : []))
                if let located, let reader {
                    try pin(located.location.file, reader)
                    onDisk.append(located.location)
                    items.append(.receiptLater(.memoEntry, hint: body.encode(), receiptBytes: located.count))
                } else {
                    onDisk.append(nil)
                    items.append(.whole(.memoEntry, body.encode()))
                }
                keys.append(ItemKey(ref: ref.key))
            }
            func nameBytes(_ index: Int) -> UnsafeRawBufferPointer {
                names.rawBytes(from: Int(entries[index].nameOffset), count: Int(entries[index].nameLength))
            }
            func emitEntry(_ index: Int, step: String) throws {
                let entry = entries[index]
                let located = entry.isLocated && reader != nil
                try emit(step: step, name: String(decoding: nameBytes(index), as: UTF8.self), digest: digest(of: entry),
                         time: entry.time, located: located ? (entry.location, entry.valueCount) : nil,
                         inMemory: located ? [] : inMemoryValues[UInt32(index)] ?? [], ref: .entry(index))
            }
            func members(_ bucketIndex: UInt32) -> [Int] {
                var members: [Int] = []
                var next = buckets[Int(bucketIndex)].first
                while next != 0 {
                    members.append(Int(next - 1))
                    next = entries[Int(next - 1)].next
                }
                members.sort { a, b in nameBytes(a).lexicographicallyPrecedes(nameBytes(b)) }
                return members
            }
            let sortedBuckets = generation.buckets.sorted { a, b in
                buckets[Int(a)].step.lexicographicallyPrecedes(buckets[Int(b)].step)
            }
            // Step "" (it sorts first): the journal's positions, merged by name with the
            // generic entries of step "" (only a hostile or hand-made log has both).
            let generic = sortedBuckets.first.flatMap { buckets[Int($0)].step.isEmpty ? members($0) : nil } ?? []
            var nextGeneric = 0
            if generation.journal != 0 {
                let journalIndex = Int(generation.journal - 1)
                let journal = journals[journalIndex]
                // The run's key and its positions' digests, once for all its items.
                var runDigests: [UInt8] = []
                for position in journal.positions where position.digest != 0 {
                    runDigests.append(contentsOf: digests.rawBytes(from: Int(position.digest - 1) * 32, count: 32))
                }
                let shared = SnapshotFile.JournalRun(namespace: key.run.namespace, run: key.run.run,
                                                     generation: key.generation, digests: runDigests)
                var digestsSoFar: UInt32 = 0
                for (number, position) in journal.positions.enumerated() {
                    if nextGeneric < generic.count {
                        let name = JournalPositions.name(UInt64(number))
                        while nextGeneric < generic.count,
                              nameBytes(generic[nextGeneric]).lexicographicallyPrecedes(name) {
                            try emitEntry(generic[nextGeneric], step: "")
                            nextGeneric += 1
                        }
                    }
                    var digest: UInt32 = 0
                    if position.digest != 0 {
                        digestsSoFar += 1
                        digest = digestsSoFar
                    }
                    let ref = Ref.position(journal: journalIndex, position: number)
                    guard let reader else {
                        // No reader, no value to read (a journal's values are always on disk:
                        // `applyPosition` takes only located ones): the entry as it stands.
                        try emit(step: "", name: String(decoding: JournalPositions.name(UInt64(number)), as: UTF8.self),
                                 digest: digestBytes(position.digest), time: position.time, located: nil, inMemory: [],
                                 ref: ref)
                        continue
                    }
                    try pin(position.valueFile, reader)
                    onDisk.append(position.location)
                    items.append(.journalPosition(.init(
                        run: shared, position: UInt32(number), valueBytes: UInt32(journal.valueCount(position)),
                        timeMilliseconds: position.time, digest: digest)))
                    keys.append(ItemKey(ref: ref.key))
                }
            }
            for index in generic[nextGeneric...] { try emitEntry(index, step: "") }
            for bucketIndex in sortedBuckets where !buckets[Int(bucketIndex)].step.isEmpty {
                let step = String(decoding: buckets[Int(bucketIndex)].step, as: UTF8.self)
                for index in members(bucketIndex) { try emitEntry(index, step: step) }
            }
            if let end = generation.end {
                let body = RecordBody.runEnd(.init(namespace: namespace, run: run, generation: key.generation,
                                                   status: end.status, timeMilliseconds: end.timeMilliseconds))
                items.append(.whole(.runEnd, body.encode()))
                onDisk.append(nil)
                keys.append(.none)
            }
        }
        if let highestSweep {
            let sweep = RecordBody.MemoSweep(
                namespace: String(decoding: highestSweep.key.run.namespace, as: UTF8.self),
                run: String(decoding: highestSweep.key.run.run, as: UTF8.self), generation: highestSweep.key.generation,
                timeMilliseconds: highestSweep.timeMilliseconds)
            items.append(.whole(.memoSweep, RecordBody.memoSweep(sweep).encode()))
            onDisk.append(nil)
            keys.append(.none)
        }
        // The values come in item order: those of a snapshot in the order it wrote them.
        let readAhead = ReadAhead()
        let value: @Sendable (Int, SnapshotFile.StreamItem) throws -> [UInt8] = { [onDisk, handles] index, item in
            guard onDisk.indices.contains(index), let location = onDisk[index], let hint = item.laterHint, let reader else {
                throw LedgerError(.invalidArgument, "memo snapshot item \(index) has no value on disk")
            }
            return try MemoTable.readValue(at: location, hint: hint, reader: reader, file: handles[location.file],
                                           readAhead: readAhead)
        }
        return (SnapshotOrigin(keys: keys, sources: onDisk, changes: changes), value)
    }
}

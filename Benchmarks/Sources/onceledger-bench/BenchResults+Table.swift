@_spi(Benchmarks) import OnceLedgerLog
/// The human-readable form of `BenchResults`, and the targets (T1–T10, written out in
/// Benchmarks/README.md) evaluated against the measurements.
extension BenchResults {
    func evaluateTargets() -> [Target] {
        func atLeast(_ name: String, _ measured: Double, _ target: Double, _ unit: String, _ source: String) -> Target {
            Target(name: name, measured: measured, target: target, comparison: "atLeast", unit: unit, source: source,
                   met: measured >= target)
        }
        func below(_ name: String, _ measured: Double, _ target: Double, _ unit: String, _ source: String) -> Target {
            Target(name: name, measured: measured, target: target, comparison: "below", unit: unit, source: source,
                   met: measured < target)
        }
        var targets = [
            atLeast("engine, 1 appender ÷ raw loop", ratios.engine1VersusRaw, 0.9, "×", "T6"),
            atLeast("engine, \(engine64.appenders) appenders ÷ raw loop", ratios.engine64VersusRaw, 20, "×", "T7"),
            atLeast("engine, \(engine64.appenders) appenders ÷ SQLite, \(sqlite64.writers) writers",
                    ratios.engine64VersusSQLite64, 20, "×", "T8"),
        ]
        // Counted in record-frame bytes, not segment-file bytes: the zeros after the
        // last record cost almost nothing to skip and would flatter a short ledger.
        for scan in recovery.scans {
            targets.append(atLeast("recovery scan (record bytes), \(scan.cache) cache", scan.recordMegabytesPerSecond,
                                   500, "MB/s", "T9"))
        }
        for open in openSmall.opens {
            targets.append(below("open \(Format.millions(Double(openSmall.records))) small records, \(open.cache) cache",
                                 open.seconds, 1, "s", "T10"))
        }
        if let exactlyOnce { targets += exactlyOnce.targets() }
        return targets
    }

    func renderTable() -> String {
        var out: [String] = []
        out.append("onceledger-bench, \(setup.date), \(setup.processors) CPUs, \(Format.fixed(setup.secondsPerMeasurement, 1)) s per rate measurement in \(setup.rounds) interleaved rounds")
        out.append("dir:    \(setup.disk.directory)")
        out.append("disk:   \(setup.disk.summary)")
        if setup.disk.isMemoryBacked {
            out.append("WARNING: memory-backed file system: fdatasync is free here, so these ratios say nothing about a disk")
        }
        out.append("record: \(setup.recordBodyBytes)-byte body = \(setup.recordFrameBytes)-byte frame; segments \(setup.segmentBytes >> 20) MiB")
        out.append("SQLite: \(setup.sqliteWriters)")
        out.append("")

        var rates = TextTable(["durable writes", "rate/s", "× raw", "rounds min-max", "notes"], leftAligned: [4])
        func perRound(_ value: (Round) -> Double) -> String {
            let values = rounds.map(value)
            return "\(Format.rate(values.min() ?? 0))-\(Format.rate(values.max() ?? 0))"
        }
        func medianRatio(_ value: (Round) -> Double) -> String {
            BenchResults.median(rounds.map { $0.rawLoop > 0 ? value($0) / $0.rawLoop : 0 }).map(Format.ratio) ?? "-"
        }
        rates.add(["raw pwrite+fdatasync loop (physical limit)", Format.rate(rawLoop.perSecond), "1.00×",
                   perRound(\.rawLoop), "\(Format.grouped(rawLoop.operations)) syncs"])
        rates.add(["raw O_DIRECT pwritev2(4 KiB, RWF_DSYNC) (diagnostic)", Format.rate(rawDirectLoop.perSecond),
                   medianRatio(\.rawDirectLoop), perRound(\.rawDirectLoop), "direct I/O: the device's own speed"])
        rates.add(["engine, 1 appender (async append)", Format.rate(engine1.rate.perSecond),
                   medianRatio(\.engine1), perRound(\.engine1),
                   "\(Format.fixed(engine1.meanRecordsPerBatch, 2)) records/batch"])
        rates.add(["engine, 1 appender (appendAndWait, diagnostic)", Format.rate(engine1Blocking.rate.perSecond),
                   medianRatio(\.engine1Blocking), perRound(\.engine1Blocking), "no task/continuation hop"])
        rates.add(["engine, 1 appender (on a SpinningExecutor, diagnostic)", Format.rate(engine1Executor.rate.perSecond),
                   medianRatio(\.engine1Executor), perRound(\.engine1Executor), "no thread wake-up per commit"])
        rates.add(["engine, \(engine64.appenders) appenders", Format.rate(engine64.rate.perSecond),
                   medianRatio(\.engine64), perRound(\.engine64),
                   "\(Format.fixed(engine64.meanRecordsPerBatch, 1)) records/batch"])
        rates.add(["SQLite WAL synchronous=FULL, 1 connection", Format.rate(sqlite1.rate.perSecond),
                   medianRatio(\.sqlite1), perRound(\.sqlite1), "1 INSERT per transaction"])
        rates.add(["SQLite WAL synchronous=FULL, \(sqlite64.writers) connections", Format.rate(sqlite64.rate.perSecond),
                   medianRatio(\.sqlite64), perRound(\.sqlite64), "\(sqlite64.busyRetries) SQLITE_BUSY retries"])
        out.append(rates.render())
        out.append("× raw and engine ÷ SQLite are medians of per-round ratios; rate/s is the total over all rounds")
        out.append("engine, 1 appender ÷ raw O_DIRECT loop: \(Format.ratio(ratios.engine1VersusRawDirect)); on a SpinningExecutor ÷ raw loop: \(Format.ratio(ratios.engine1ExecutorVersusRaw))")
        out.append("engine ÷ SQLite: 1 writer \(Format.ratio(ratios.engine1VersusSQLite1)), \(engine64.appenders) writers \(Format.ratio(ratios.engine64VersusSQLite64))")
        out.append("")
        out += renderSingleCallerTimings()
        out.append("")

        var recoveryTable = TextTable(["recovery", "time", "record MB/s", "file MB/s", "records/s"])
        for (ledger, label) in [(recovery, "ledger A"), (openSmall, "ledger B")] {
            for scan in ledger.scans {
                recoveryTable.add(["\(label): RecoveryScanner.scan, \(scan.cache) cache", Format.seconds(scan.seconds),
                                   Format.rate(scan.recordMegabytesPerSecond), Format.rate(scan.megabytesPerSecond),
                                   Format.millions(scan.recordsPerSecond)])
            }
            for open in ledger.opens {
                recoveryTable.add(["\(label): LogEngine.open, \(open.cache) cache", Format.seconds(open.seconds),
                                   Format.rate(open.recordMegabytesPerSecond), Format.rate(open.megabytesPerSecond),
                                   Format.millions(open.recordsPerSecond)])
            }
        }
        if let exactlyOnce {
            out += exactlyOnce.render(rounds: rounds, rawLoop: rawLoop)
            out.append("")
        }

        out.append(recoveryTable.render())
        for (ledger, label) in [(recovery, "ledger A"), (openSmall, "ledger B")] {
            out.append("\(label): \(Format.grouped(ledger.records)) × \(ledger.recordBodyBytes)-byte records + 1 checkpoint: \(Format.megabytes(ledger.recordBytes)) of frames in \(ledger.segments) segment file(s) of \(Format.megabytes(ledger.segmentBytes)); built in \(Format.seconds(ledger.buildSeconds))")
        }
        out.append("record MB/s = record-frame bytes decoded per second; file MB/s = segment-file bytes read (zeros included)")
        out.append("cold cache = segment pages dropped with posix_fadvise(DONTNEED) first (a virtual disk's host may still cache them)")
        out.append("")

        var targetTable = TextTable(["target", "measured", "target", "result", "source"], leftAligned: [4])
        for target in targets {
            func value(_ number: Double) -> String {
                switch target.unit {
                case "×": Format.ratio(number)
                case "s": Format.seconds(number)
                case "B": Format.fixed(number, 1) + " B"
                default: Format.rate(number) + " " + target.unit
                }
            }
            let measured = value(target.measured)
            let goal = (target.comparison == "below" ? "< " : "≥ ") + value(target.target)
            targetTable.add([target.name, measured, goal, target.met ? "PASS" : "MISS", target.source])
        }
        out.append(targetTable.render())
        out.append("targets T1–T10: Benchmarks/README.md")
        out.append("")
        out.append("total \(Format.seconds(totalSeconds))")
        return out.joined(separator: "\n")
    }

    /// Where a lone caller's time goes, commit by commit: the I/O thread's
    /// `LogEngine.BatchTimings` means next to the raw loop's time per sync.
    func renderSingleCallerTimings() -> [String] {
        func micros(_ nanoseconds: UInt64, per count: UInt64) -> String {
            count > 0 ? Format.fixed(Double(nanoseconds) / Double(count) / 1000, 1) : "-"
        }
        let rawMicros = rawLoop.perSecond > 0 ? 1e6 / rawLoop.perSecond : 0
        var table = TextTable(["one caller, per commit (µs)", "total", "− raw", "write+sync", "onDurable",
                               "resume", "to next append"])
        table.add(["raw pwrite+fdatasync loop", Format.fixed(rawMicros, 1), "", Format.fixed(rawMicros, 1),
                   "", "", ""])
        let rawDirectMicros = rawDirectLoop.perSecond > 0 ? 1e6 / rawDirectLoop.perSecond : 0
        table.add(["raw O_DIRECT loop", Format.fixed(rawDirectMicros, 1), Format.fixed(rawDirectMicros - rawMicros, 1),
                   Format.fixed(rawDirectMicros, 1), "", "", ""])
        var rows = [("engine, async append", engine1), ("engine, appendAndWait", engine1Blocking),
                    ("engine, on a SpinningExecutor", engine1Executor)]
        if let exactlyOnce {
            rows.append(("Ledger.once (2 commits per once)", exactlyOnce.once1))
            rows.append(("Ledger.once on ledger.executor", exactlyOnce.once1Executor))
        }
        for (label, rate) in rows {
            let timings = rate.timings
            let total = timings.batches > 0 ? rate.rate.seconds * 1e6 / Double(timings.batches) : 0
            table.add([label, Format.fixed(total, 1), Format.fixed(total - rawMicros, 1),
                       micros(timings.commitNanoseconds, per: timings.batches),
                       micros(timings.onDurableNanoseconds, per: timings.batches),
                       micros(timings.resumeNanoseconds, per: timings.batches),
                       micros(timings.gapNanoseconds, per: timings.gaps)])
        }
        return [
            table.render(),
            "means over all rounds, from the I/O thread's clock (LogEngine.batchTimings): write+sync = framing and the durable write (pwritev2 RWF_DSYNC, or pwrite + fdatasync);",
            "onDurable = the ledger applying the batch; resume = handing the caller back (a task: to Swift's pool, which may have to",
            "wake a parked thread); to next append = from there until the caller's next append reached the I/O thread",
        ]
    }
}

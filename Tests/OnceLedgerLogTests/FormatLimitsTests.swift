// Proves the named limits of `Spec/FORMAT.md` §1.3 fit together, which nothing else checks (they
// are constants): headers keep records 8-byte aligned, the smallest segment holds a header, a
// record header and a seal, a seal frame is a record header plus its 16-byte body, the largest
// record fits the largest segment, and the largest typed body — a memo entry (kind 13) encoded
// with every field at its limit; the reserved memo put and journal entry are smaller — is `FormatLimits.typedBodyBytesMax` bytes at most and
// fits the default record limit, so a default `append` never refuses a record the codec accepts.
import OnceLedgerFormat
import OnceLedgerLog
import Testing

@Suite struct FormatLimitsTests {
    @Test func headersKeepRecordsAligned() {
        #expect(FormatLimits.segmentHeaderBytes % FormatLimits.recordAlignment == 0)
        #expect(FormatLimits.recordHeaderBytes % FormatLimits.recordAlignment == 0)
        #expect(RecordFrame.frameBytes(bodyBytes: 1) % FormatLimits.recordAlignment == 0)
    }

    @Test func aSealFrameIsARecordHeaderAndItsBody() {
        let body = RecordBody.seal(.init(successor: 2, timeMilliseconds: 0)).encode()
        #expect(FormatLimits.sealFrameBytes == FormatLimits.recordHeaderBytes + body.count)
        #expect(FormatLimits.sealFrameBytes == RecordFrame.frameBytes(bodyBytes: body.count))
    }

    @Test func theSmallestSegmentHoldsAHeaderARecordAndASeal() {
        let needed = FormatLimits.segmentHeaderBytes + RecordFrame.frameBytes(bodyBytes: 0) + FormatLimits.sealFrameBytes
        #expect(UInt64(needed) < FormatLimits.segmentBytesMin)
    }

    @Test func theLargestRecordFitsTheLargestSegment() {
        let frame = RecordFrame.frameBytes(bodyBytes: Int(FormatLimits.recordBodyBytesMax))
        let needed = UInt64(FormatLimits.segmentHeaderBytes + frame + FormatLimits.sealFrameBytes)
        #expect(needed <= FormatLimits.segmentBytesMax)
    }

    @Test func theLargestTypedBodyFitsTheDefaultRecordLimit() throws {
        let name = String(repeating: "n", count: FormatLimits.nameBytesMax)
        let value = [UInt8](repeating: 7, count: FormatLimits.valueBytesMax)
        let memo = RecordBody.memoEntry(.init(
            namespace: String(repeating: "s", count: FormatLimits.namespaceBytesMax),
            run: String(repeating: "r", count: FormatLimits.runBytesMax), generation: .max,
            step: String(repeating: "p", count: FormatLimits.stepBytesMax),
            name: String(repeating: "n", count: FormatLimits.memoNameBytesMax), timeMilliseconds: 1, value: value))
        let reservedMemo = RecordBody.memoPut(.init(run: name, step: name, name: name, timeMilliseconds: 1, value: value))
        let journal = RecordBody.journalEntry(.init(run: name, position: 1, step: name, timeMilliseconds: 1, value: value))
        for body in [memo, reservedMemo, journal] {
            try body.validate()
            #expect(body.encode().count <= FormatLimits.typedBodyBytesMax, "\(body.kind)")
        }
        #expect(memo.encode().count == FormatLimits.typedBodyBytesMax)
        #expect(FormatLimits.typedBodyBytesMax <= Int(LogConfiguration().recordBodyBytesMax))
        #expect(LogConfiguration().recordBodyBytesMax <= FormatLimits.recordBodyBytesMax)
        try LogConfiguration().validate()
    }
}

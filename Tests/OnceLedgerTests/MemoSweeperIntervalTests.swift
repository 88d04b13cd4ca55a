// Proves that the background memo sweeper sleeps a sane interval whatever
// `MemoRetention.sweepInterval` says: zero or a negative interval made it spin (tens of thousands
// of passes a second, each scanning every run generation under the memo's lock), and an interval
// near `Int64.max` seconds trapped the process inside `Task.sleep` (the deadline overflows).
// How: the sweeper is given a sleep function that records the interval asked for and then ends
// the loop (as a cancelled sleep does), so nothing sleeps and nothing is timed.
import Synchronization
@testable import OnceLedger
import Testing
import OnceLedgerStoreContract

@Suite struct MemoSweeperIntervalTests {
    static let intervals: [Duration] = [
        .zero, .seconds(-5), .milliseconds(1), .seconds(Int64.max),
        Duration(secondsComponent: .max, attosecondsComponent: 999_999_999_999_999_999), .seconds(60),
    ]

    @Test(arguments: intervals)
    func theSweeperSleepsWithinItsBounds(interval: Duration) async throws {
        let asked = Mutex<[Duration]>([])
        let slept = Gate()
        let sweeper = MemoSweeper(store: InMemoryStore(), clock: { 1_000 },
                                  retention: MemoRetention(.seconds(60), sweepInterval: interval),
                                  sleep: { duration in
                                      asked.withLock { $0.append(duration) }
                                      slept.open()
                                      throw CancellationError()
                                  })
        await slept.wait()
        sweeper.stop()
        let durations = asked.withLock { $0 }
        #expect(durations.count == 1)
        for duration in durations {
            #expect(duration >= MemoSweeper.sweepIntervalMin && duration <= MemoSweeper.sweepIntervalMax,
                    "asked to sleep \(duration) for a sweepInterval of \(interval)")
        }
        if interval >= MemoSweeper.sweepIntervalMin && interval <= MemoSweeper.sweepIntervalMax {
            #expect(durations == [interval], "an interval within the bounds is kept as given")
        }
    }
}

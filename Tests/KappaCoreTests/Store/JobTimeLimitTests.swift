import Synchronization
import Testing
@testable import KappaCore

/// When a job statement stops (`JobTimeLimit`), as SQLite's progress handler and PostgreSQL's
/// cancel watchdog ask it.
@Suite struct JobTimeLimitTests {
    @Test func theWatchdogCancelsOnlyARunningStatementAndOnlyOnce() {
        let limit = JobTimeLimit(timeoutMs: 1_000, spentMs: 1_000, othersWaiting: { false })
        let sent = Mutex(0)
        limit.stopIfDue { sent.withLock { $0 += 1 } }
        #expect(sent.withLock { $0 } == 0)  // over budget, but nothing runs: no cancel to misfire
        #expect(limit.stop == nil)
        limit.start()
        limit.stopIfDue { sent.withLock { $0 += 1 } }
        limit.stopIfDue { sent.withLock { $0 += 1 } }
        #expect(sent.withLock { $0 } == 1)
        #expect(limit.stop == .timeout)
        limit.finish()
        limit.stopIfDue { sent.withLock { $0 += 1 } }
        #expect(sent.withLock { $0 } == 1)
    }

    @Test func itGivesWayWhenOthersWaitAndUnaskedOnlyWhereTheWriterLocksTheDatabase() {
        let waiting = Atomic<Bool>(false)
        let postgres = JobTimeLimit(timeoutMs: 60_000, yieldAfterMs: 0, unaskedAfterMs: nil, othersWaiting: { waiting.load(ordering: .relaxed) })
        postgres.start()
        #expect(!postgres.shouldStop())  // nothing waits: it runs on
        waiting.store(true, ordering: .relaxed)
        #expect(postgres.shouldStop())
        #expect(postgres.stop == .yield)

        let sqlite = JobTimeLimit(timeoutMs: 60_000, yieldAfterMs: 60_000, unaskedAfterMs: 0, othersWaiting: { false })
        sqlite.start()
        #expect(sqlite.shouldStop())
        #expect(sqlite.stop == .yield)
    }

    @Test func aCancelledWorkerStopsWhatRunsButNotBeforeItStarted() {
        let limit = JobTimeLimit(timeoutMs: 60_000, othersWaiting: { false })
        limit.cancel()
        #expect(!limit.shouldStop())  // a quick batch commits first
        limit.start()
        #expect(!limit.shouldStop())  // it has not run `cancelAfterMs` yet
        #expect(limit.stop == nil)
    }
}

import Testing
@testable import KappaCore

@Suite struct HostProblemsTests {
    /// A subject failing again keeps when it first failed and takes the newest error and retry
    /// time; clearing says whether it had been failing; the text says for how long and when next.
    @Test func aProblemKeepsItsFirstFailureUntilCleared() {
        let problems = HostProblems()
        problems.report("mirror of bpi", error: "connection refused", retryInMs: 1_000, now: 10_000)
        problems.report(job: "t", version: 2, partition: 0, error: "timed out", retryInMs: 2_000, now: 11_000)
        problems.report("mirror of bpi", error: "HTTP 503", retryInMs: 4_000, now: 14_000)
        #expect(problems.current.map(\.subject) == ["mirror of bpi", "t v2 partition 0"])
        let mirror = problems.current[0]
        #expect(mirror.since == 10_000 && mirror.retryAt == 18_000 && mirror.error == "HTTP 503")
        #expect(mirror.text(now: 15_000) == "mirror of bpi failing for 5 s, retrying in 3 s: HTTP 503")
        #expect(mirror.text(now: 19_000, subject: false) == "failing for 9 s, retrying: HTTP 503")
        #expect(problems.current[1].job == "t" && problems.current[1].version == 2 && problems.current[1].partition == 0)
        #expect(problems.clear("mirror of bpi"))
        #expect(!problems.clear("mirror of bpi"))
        problems.report("mirror of bpi", error: "HTTP 503", retryInMs: nil, now: 30_000)
        #expect(problems.current[0].since == 30_000)  // a new failure, not the old one
        problems.clear { $0.job == "t" }
        #expect(problems.current.map(\.subject) == ["mirror of bpi"])
    }

    @Test func longOutagesAreInMinutesAndHours() {
        let p = HostProblem(subject: "mirror of bpi", error: "down", since: 0, retryAt: nil)
        #expect(p.text(now: 119_999) == "mirror of bpi failing for 119 s: down")
        #expect(p.text(now: 600_000) == "mirror of bpi failing for 10 min: down")
        #expect(p.text(now: 3 * 3_600_000) == "mirror of bpi failing for 3 h: down")
    }
}

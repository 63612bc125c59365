/// A version that failed while someone waited for it.
public struct VersionFailedError: Error, Sendable, CustomStringConvertible {
    public var job: String
    public var version: Int
    public var error: String
    public var description: String { "job \(job) version \(version) failed: \(error)" }
}

/// What `kappactl wait --for` waits for.
public enum WaitTarget: String, Sendable, CaseIterable {
    /// Caught up: `caughtUp`, or further (`serving`, `standby`).
    case caughtUp
    case serving
    case retired
    case failed

    /// Whether a version in `state` has reached the target.
    public func reached(by state: VersionState) -> Bool {
        switch self {
        case .caughtUp: return state == .caughtUp || state == .serving || state == .standby
        case .serving: return state == .serving
        case .retired: return state == .retired
        case .failed: return state == .failed
        }
    }
}

extension Operator {
    /// Waits until `version` has caught up, and until it serves when it is expected to (the
    /// job's first version, or `promote: auto`), reporting progress every `pollMs`.
    /// - Throws: `WaitTimeout` after `timeoutMs`, `VersionFailedError` if the version fails.
    public func wait(job: String, version: Int, timeoutMs: Int64?, pollMs: Int = 200,
                     progress: @Sendable (StatusReport.Version) -> Void) async throws -> VersionState {
        let all = try await versions(job: job)
        let expectServing = all.contains { $0.version == version && $0.spec.promote.mode == .auto }
            || !all.contains { $0.version != version && ($0.state == .serving || $0.state == .standby) }
        return try await wait(job: job, version: version, for: expectServing ? .serving : .caughtUp, timeoutMs: timeoutMs,
                              pollMs: pollMs, progress: progress)
    }

    /// Waits until `version` (default: the job's newest) reaches `target`, reporting progress
    /// every `pollMs`. Safe to run any number of times, from any process: it only reads.
    /// - Throws: `WaitTimeout` after `timeoutMs`; `VersionFailedError` when the version fails
    ///   while waiting for `caughtUp` or `serving` (a failed version may still be retired, so
    ///   waiting for `retired` goes on); `LifecycleRefusal` when it is retired and the target is
    ///   another; `CatalogError` for no such job or version.
    public func wait(job: String, version: Int?, for target: WaitTarget, timeoutMs: Int64?, pollMs: Int = 200,
                     progress: @Sendable (StatusReport.Version) -> Void) async throws -> VersionState {
        let deadline = timeoutMs.map { currentTimeMillis() + $0 }
        let number: Int
        if let version {
            number = version
        } else {
            guard let newest = try await versions(job: job).map(\.version).max() else { throw CatalogError(.jobNotFound, "job \"\(job)\" does not exist") }
            number = newest
        }
        while true {
            let report = try await status(job: job)
            guard let v = report.jobs.first?.versions.first(where: { $0.version == number }) else {
                throw CatalogError(.versionNotFound, "job \"\(job)\" has no version \(number)")
            }
            progress(v)
            if target.reached(by: v.state) { return v.state }
            switch v.state {
            case .failed where target != .retired:
                throw VersionFailedError(job: job, version: number, error: v.error ?? "unknown error")
            case .retired:
                throw LifecycleRefusal(code: .refused, message: "version \(number) of job \"\(job)\" is retired: it can no longer be \(target.rawValue)")
            default: break
            }
            if let deadline, currentTimeMillis() >= deadline {
                throw WaitTimeout("version \(number) of job \"\(job)\" is still \(v.state.rawValue) (lag \(v.lag ?? 0)), not \(target.rawValue), after the timeout")
            }
            try await Task.sleep(for: .milliseconds(pollMs))
        }
    }
}

/// Text renderings shared by the CLI.
public enum Render {
    /// JSON as `--output json` prints it and the HTTP API serves it (keys sorted).
    public static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// `[#########.........]  45%  12,345/27,000 records  8,123/s  ETA 2s  lag 14,655`
    public static func progress(_ v: StatusReport.Version, width: Int = 24) -> String {
        let done = v.processed ?? 0, total = max(v.total ?? 0, 1)
        let fraction = min(1, Double(done) / Double(total))
        let filled = Int((fraction * Double(width)).rounded(.down))
        var line = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
        line += " \(String(Int(fraction * 100)).leftPad(3))%  \(grouped(done))/\(grouped(v.total ?? 0)) records"
        if let rate = v.rate { line += "  \(grouped(Int64(rate.rounded())))/s" }
        line += "  ETA " + (v.etaSeconds.map { seconds($0) } ?? "-")
        line += "  lag \(grouped(v.lag ?? 0))  \(v.state.rawValue)"
        return line
    }

    /// 12345678 → "12,345,678".
    public static func grouped(_ n: Int64) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + String(out.reversed())
    }

    /// 0.4 → "0.4s", 75 → "1m15s".
    public static func seconds(_ s: Double) -> String {
        if s < 10 { return String(format: "%.1fs", s) }
        return DurationText.format(milliseconds: Int64(s.rounded()) * 1000)
    }

    /// Milliseconds since the epoch as `2026-11-25 18:20:01` (UTC).
    public static func time(_ ms: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(ms) / 1000)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

import Foundation

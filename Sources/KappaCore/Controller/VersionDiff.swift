/// `kappactl diff JOB A B`: how two versions differ, in their manifests and in their tables.
public struct VersionDiff: Sendable, Codable, Equatable {
    public var job: String
    public var a: Int
    public var b: Int
    /// Human-readable manifest differences (`transform.sql changed`, `column open added`).
    public var manifest: [String]
    public var rowsA: Int64
    public var rowsB: Int64
    /// Present when both tables have the same primary key.
    public var rows: RowDiff?

    public struct RowDiff: Sendable, Codable, Equatable {
        public var key: [String]
        /// Columns both versions have, compared for `changed`.
        public var compared: [String]
        public var onlyInA: Int64
        public var onlyInB: Int64
        public var changed: Int64
        /// A few keys of each kind, rendered `EUR, 28333333`.
        public var examplesOnlyInA: [String]
        public var examplesOnlyInB: [String]
        public var examplesChanged: [String]
    }
}

extension Operator {
    /// Compares two versions of a job (their tables must still exist).
    public func diff(job: String, _ a: Int, _ b: Int) async throws -> VersionDiff {
        let versions = try await self.versions(job: job)
        func find(_ v: Int) throws -> VersionRecord {
            guard let r = versions.first(where: { $0.version == v }) else { throw CatalogError(.versionNotFound, "job \"\(job)\" has no version \(v)") }
            guard r.state != .retired else { throw LifecycleRefusal(code: .refused, message: "version \(v) is retired; its table is gone") }
            return r
        }
        let va = try find(a), vb = try find(b)
        let ta = SQLText.quote(va.spec.versionTable), tb = SQLText.quote(vb.spec.versionTable)
        func count(_ sql: String) async throws -> Int64 {
            guard case .integer(let n)? = try await store.query(sql).rows.first?.first else {
                throw CatalogError(.damagedCatalog, "\(sql) gave no count")
            }
            return n
        }
        var diff = VersionDiff(job: job, a: a, b: b, manifest: Self.manifestChanges(va.spec, vb.spec),
                               rowsA: try await count("SELECT count(*) FROM \(ta)"), rowsB: try await count("SELECT count(*) FROM \(tb)"))
        let key = va.spec.output.primaryKey
        guard key == vb.spec.output.primaryKey else { return diff }
        let namesB = Set(vb.spec.output.columns.map(\.name))
        let compared = va.spec.output.columns.map(\.name).filter { namesB.contains($0) && !key.contains($0) }
        let join = key.map { "a.\(SQLText.quote($0)) = b.\(SQLText.quote($0))" }.joined(separator: " AND ")
        let keyList = key.map { "x.\(SQLText.quote($0))" }.joined(separator: ", ")
        let differs = compared.isEmpty ? "false" : compared.map { "a.\(SQLText.quote($0)) IS DISTINCT FROM b.\(SQLText.quote($0))" }.joined(separator: " OR ")
        let onlyA = "FROM \(ta) a WHERE NOT EXISTS (SELECT 1 FROM \(tb) b WHERE \(join))"
        let onlyB = "FROM \(tb) b WHERE NOT EXISTS (SELECT 1 FROM \(ta) a WHERE \(join))"
        let changed = "FROM \(ta) a JOIN \(tb) b ON \(join) WHERE \(differs)"
        func examples(_ from: String, alias: String) async throws -> [String] {
            try await store.query("SELECT \(keyList.replacingOccurrences(of: "x.", with: "\(alias).")) \(from) LIMIT 3").rows
                .map { $0.map(\.display).joined(separator: ", ") }
        }
        diff.rows = .init(key: key, compared: compared,
                          onlyInA: try await count("SELECT count(*) \(onlyA)"), onlyInB: try await count("SELECT count(*) \(onlyB)"),
                          changed: try await count("SELECT count(*) \(changed)"),
                          examplesOnlyInA: try await examples(onlyA, alias: "a"), examplesOnlyInB: try await examples(onlyB, alias: "b"),
                          examplesChanged: try await examples(changed, alias: "a"))
        return diff
    }

    static func manifestChanges(_ a: JobSpec, _ b: JobSpec) -> [String] {
        var out: [String] = []
        let ca = Dictionary(uniqueKeysWithValues: a.output.columns.map { ($0.name, $0.type) })
        let cb = Dictionary(uniqueKeysWithValues: b.output.columns.map { ($0.name, $0.type) })
        for c in a.output.columns where cb[c.name] == nil { out.append("column \(c.name) removed") }
        for c in b.output.columns where ca[c.name] == nil { out.append("column \(c.name) \(c.type.rawValue) added") }
        for c in a.output.columns { if let t = cb[c.name], t != c.type { out.append("column \(c.name): \(c.type.rawValue) → \(t.rawValue)") } }
        if a.output.primaryKey != b.output.primaryKey { out.append("primaryKey: \(a.output.primaryKey) → \(b.output.primaryKey)") }
        if a.transform != b.transform { out.append("transform changed") }
        if a.source != b.source { out.append("source.topic: \(a.source.topic) → \(b.source.topic)") }
        if a.batch != b.batch { out.append("batch: \(a.batch) → \(b.batch)") }
        if a.catchUp != b.catchUp { out.append("catchUp changed") }
        if a.promote != b.promote { out.append("promote changed") }
        if a.retire != b.retire { out.append("retire changed") }
        if a.onBadRecord != b.onBadRecord { out.append("onBadRecord: \(a.onBadRecord.rawValue) → \(b.onBadRecord.rawValue)") }
        return out
    }
}

extension VersionDiff {
    /// The text `kappactl diff` prints.
    public var text: String {
        var lines = ["job \(job): version \(a) vs version \(b)"]
        lines.append("manifest: " + (manifest.isEmpty ? "identical" : manifest.joined(separator: "; ")))
        lines.append("rows: \(Render.grouped(rowsA)) in version \(a), \(Render.grouped(rowsB)) in version \(b)")
        if let r = rows {
            lines.append("by key (\(r.key.joined(separator: ", "))): \(r.onlyInA) only in \(a), \(r.onlyInB) only in \(b), \(r.changed) changed"
                         + (r.compared.isEmpty ? "" : " (comparing \(r.compared.joined(separator: ", ")))"))
            for (label, examples) in [("only in \(a)", r.examplesOnlyInA), ("only in \(b)", r.examplesOnlyInB), ("changed", r.examplesChanged)] where !examples.isEmpty {
                lines.append("  e.g. \(label): " + examples.map { "(\($0))" }.joined(separator: " "))
            }
        } else {
            lines.append("primary keys differ: rows are not compared")
        }
        return lines.map(TerminalText.escaped).joined(separator: "\n")
    }
}

#if Postgres
/// The sandbox job SQL and promotion checks run in on PostgreSQL.
///
/// A version's statement is the body of a SQL function `<schema>."<role>"()`, `SECURITY
/// DEFINER`, owned by the version's role (no login, no attributes, member of nothing; `USAGE` on
/// the schema, DML on its own table, `SELECT` on the session's `batch`), executable by the
/// catalog user only. Each batch calls that function; the job's text is never sent as SQL.
/// Why it holds:
/// - **One statement.** At deploy the text is wrapped as `WITH kappa_statement AS (…) SELECT 1`
///   and parsed as the extended protocol's unnamed statement, which takes exactly one statement:
///   a second statement, and anything that cannot stand in a `WITH` (COPY, DO, SET, RESET, DDL,
///   GRANT, transaction control, `SELECT … INTO`), is a syntax error. The statement must return
///   rows (text that closes the `WITH` early and ends as a plain INSERT or `SELECT … INTO` does
///   not). The function's body is that same single statement. Nothing is planned or run here.
/// - **Its role.** Inside a security-definer function PostgreSQL refuses to change `role` or
///   `session_authorization` by any spelling (`SET`, `RESET`, `set_config`), so the statement
///   and whatever it calls run as the version's role to the end.
/// - **Its transaction.** A function cannot commit, roll back or take savepoints.
/// - **Its settings.** The function restores `search_path` when it returns; settings the
///   statement made for the session (`set_config(…, false)`) are undone by `RESET ALL` right
///   after it, in the same transaction (a failed statement's go with its savepoint); session
///   advisory locks it took are released.
/// Promotion checks run the same way under a role created for the check that may read only
/// `old` and `new`, inside a savepoint that is always rolled back (role and function included).
extension PostgresBackend {
    static let jobShape = "must be a single INSERT, UPDATE, DELETE or SELECT statement (a WITH of SELECTs may lead it): no second statement, COPY, DO, SET, DDL, GRANT or transaction control"
    static let checkShape = "must be a single SQL expression"

    /// What undoes a statement's session state: settings and session-level advisory locks.
    static let afterStatement = "RESET ALL; \(PGConnection.sessionSettings); SELECT pg_advisory_unlock_all()"

    /// The function a role's statement runs in (its name is the role's).
    func sandboxFunction(_ role: String) -> String { "\(schema).\(SQLText.quote(role))" }

    /// A job's SQL as the one statement of its function. Trailing semicolons go (the statement
    /// stands alone); the job's text begins and ends a line, so a trailing `--` comment ends
    /// before the wrapper's `)`.
    static func wrapped(_ sql: String) -> String {
        var body = Substring(sql)
        while let last = body.last, last == ";" || last.isWhitespace { body = body.dropLast() }
        return "WITH kappa_statement AS (\n\(body)\n) SELECT 1 AS kappa_statement"
    }

    /// Calls `role`'s function; errors lose the line naming it (the statement is the job's own).
    /// - Returns: its value.
    func callSandbox(_ c: any SQLConnection, role: String, name: String) throws -> SQLValue? {
        do {
            return try c.query("SELECT \(sandboxFunction(role))()", [], name: name).first?.first
        } catch var error as PostgresError {
            let context = "CONTEXT:  SQL function \"\(role)\""
            error.message = error.message.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix(context) }.joined(separator: "\n")
            throw error
        }
    }

    /// Creates `role`'s function with `sql` as its body, once PostgreSQL's parser found `sql`
    /// to be one statement returning rows; in the caller's transaction.
    /// - Throws: `PostgresError` (SQLSTATE 42601 with `shape` for text of another form).
    func createSandbox(_ c: any SQLConnection, role: String, sql: String, returns: String, shape: String) throws {
        guard let pg = c as? PGConnection else { preconditionFailure("a PostgreSQL store's connection is a PGConnection") }
        guard !sql.contains("\0") else {
            throw PostgresError(sqlState: "42601", message: "\(shape); it holds a NUL character", statement: "sandbox")
        }
        // The body is quoted as a standard string: only `'` needs doubling.
        try c.execute("SET LOCAL search_path = \(schema); SET LOCAL standard_conforming_strings = on; SET LOCAL check_function_bodies = on",
                      name: "sandbox")
        let columns: [String]
        do {
            columns = try pg.describe(sql, name: "sandbox")
        } catch var error as PostgresError where error.sqlState == "42601" {
            error.message = "\(shape): \(error.message)"
            throw error
        }
        guard !columns.isEmpty else { throw PostgresError(sqlState: "42601", message: shape, statement: "sandbox") }
        let function = sandboxFunction(role), owner = SQLText.quote(role)
        // The owner needs CREATE on the schema only while it takes the function over.
        try lockSchemaGrants(c)
        try c.execute("GRANT CREATE ON SCHEMA \(schema) TO \(owner)", name: "sandbox")
        try c.run("""
            CREATE FUNCTION \(function)() RETURNS \(returns) LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = \(schema)
            AS '\(sql.replacingOccurrences(of: "'", with: "''"))'
            """, [], name: "sandbox")
        try c.execute("""
            ALTER FUNCTION \(function)() OWNER TO \(owner); REVOKE CREATE ON SCHEMA \(schema) FROM \(owner);
            REVOKE ALL ON FUNCTION \(function)() FROM PUBLIC; GRANT EXECUTE ON FUNCTION \(function)() TO CURRENT_USER
            """, name: "sandbox")
    }

    /// The session's temporary `batch` table, readable by `role`.
    func prepareBatchTable(_ c: any SQLConnection, for role: String, fields: [JobSpec.Column]) throws {
        if batchFields != fields {
            // A version of another shape ran last (or none did in this session).
            try c.execute("DROP TABLE IF EXISTS pg_temp.batch; CREATE TEMP TABLE batch (partition INTEGER, \"offset\" BIGINT, timestamp BIGINT, key TEXT, value JSONB, key_bytes BYTEA"
                          + fields.map { ", \(SQLText.quote($0.name)) \(dialect.columnType($0.type))" }.joined() + ")",
                          name: "create batch table")
            batchFields = fields
            grantedRoles = []
        }
        if !grantedRoles.contains(role) {
            try c.execute("GRANT SELECT ON pg_temp.batch TO \(SQLText.quote(role))", name: "grant batch")
            grantedRoles.insert(role)
        }
    }

    /// What the deploy check's run over an empty batch may take.
    static let deployCheckLimitMs: Int64 = 5_000

    // MARK: StoreBackend

    func checkJobSQL(_ c: any SQLConnection, _ spec: JobSpec, statements: String) throws {
        let role = role(job: spec.job, version: spec.version)
        try prepareBatchTable(c, for: role, fields: spec.source.fields)
        do {
            try createSandbox(c, role: role, sql: Self.wrapped(statements), returns: "void", shape: Self.jobShape)
            // Run once over an empty batch, in its sandbox, and undone: what reaches further
            // than the role may is refused here.
            try c.execute("SAVEPOINT kappa_compile; DELETE FROM pg_temp.batch", name: "compile check")
            defer { try? c.execute("ROLLBACK TO SAVEPOINT kappa_compile; RELEASE SAVEPOINT kappa_compile; SELECT pg_advisory_unlock_all()", name: "compile check") }
            // Bounded at 5 s, whatever `transform.timeout` says: a deploy does not wait on an
            // endless query, and over no records the time is the server's (planning, load from
            // other jobs), so a tight batch limit would refuse sound SQL on a busy server.
            let limitMs = Self.deployCheckLimitMs
            try c.execute("SET LOCAL statement_timeout = \(limitMs)", name: "compile check")
            do {
                _ = try callSandbox(c, role: role, name: "transform.sql")
            } catch let error as PostgresError where error.storeClass == .interrupted {
                throw CatalogError(.invalidJob, "transform.sql did not finish over an empty batch within \(DurationText.format(milliseconds: limitMs)) at deploy")
            }
        } catch let error as PostgresError where error.storeClass != .unreachable {
            throw CatalogError(.invalidJob, "transform.sql: \(error.message)")
        }
        sandboxed.insert(role)
    }

    func prepareBatch(_ c: any SQLConnection, _ spec: JobSpec) throws {
        let role = role(job: spec.job, version: spec.version)
        try prepareBatchTable(c, for: role, fields: spec.source.fields)
        guard !sandboxed.contains(role) else { return }
        // A version deployed before job SQL ran in functions gets its function now, checked as
        // at deploy (under the job's lock, so that two hosts do not both create it).
        if try !sandboxExists(c, role) {
            try lockJob(c, spec.job)
            if try !sandboxExists(c, role) {
                do {
                    try createSandbox(c, role: role, sql: Self.wrapped(SQLJob(spec: spec).statements), returns: "void", shape: Self.jobShape)
                } catch let error as PostgresError where error.storeClass == .jobSQL {
                    throw JobFailure(job: spec.job, version: spec.version, message: "transform.sql: \(error.message)")
                }
            }
        }
        sandboxed.insert(role)
    }

    private func sandboxExists(_ c: any SQLConnection, _ role: String) throws -> Bool {
        try !c.query("SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = $2",
                     [.text(schema), .text(role)], name: "find sandbox function").isEmpty
    }

    func runJobSQL(_ c: any SQLConnection, _ spec: JobSpec, statements: String) throws {
        // `statements` is what the function holds (both come from the stored manifest).
        do {
            _ = try callSandbox(c, role: role(job: spec.job, version: spec.version), name: "job \(spec.job) v\(spec.version) SQL")
        } catch {
            unlockPending = true
            throw error
        }
        try c.execute(Self.afterStatement, name: "job sandbox")
    }

    func evaluateCheck(_ c: any SQLConnection, _ sql: String, readable tables: [String], limitMs: Int64) throws -> Bool {
        // In a subtransaction that is always undone, with its role and function.
        let role = checkRole, quoted = SQLText.quote(checkRole)
        try lockSchemaGrants(c)
        try c.execute("SAVEPOINT kappa_check", name: "promote check")
        defer { try? c.execute("ROLLBACK TO SAVEPOINT kappa_check; RELEASE SAVEPOINT kappa_check; SELECT pg_advisory_unlock_all()", name: "promote check") }
        try c.execute("CREATE ROLE \(quoted) NOLOGIN; GRANT \(quoted) TO CURRENT_USER; GRANT USAGE ON SCHEMA \(schema) TO \(quoted)"
                      + tables.map { "; GRANT SELECT ON \(dialect.table($0)) TO \(quoted)" }.joined(), name: "promote check")
        try createSandbox(c, role: role, sql: sql, returns: "integer", shape: Self.checkShape)
        try c.execute("SET LOCAL statement_timeout = \(max(1, limitMs))", name: "promote check")
        do {
            return try callSandbox(c, role: role, name: "promote check") == .integer(1)
        } catch let error as PostgresError where error.sqlState == "57014" {
            throw CheckTimeLimit(limitMs: limitMs)
        }
    }
}
#endif

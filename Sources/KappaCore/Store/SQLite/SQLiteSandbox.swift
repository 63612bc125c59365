import CSQLite

/// What SQL that Kappa did not write may do on SQLite: a job's SQL, a promotion check, an
/// operator's query. Each is compiled under an authorizer that allows only what it lists, and
/// every statement SQLite would let change the file must be a write the authorizer allowed; so
/// what compiles here is what may run, and deploy refuses exactly what the run would.
enum SQLiteSandbox {
    /// Functions that reach past the statement: loading code, files, pointers, tables by name.
    /// Most are absent from a stock SQLite (and the connection disables extensions and
    /// `fts3_tokenizer`); they are refused by name too, so that no build of SQLite runs them.
    static let forbiddenFunctions: Set<String> = ["load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "rtreecheck"]

    /// Table-valued functions of SQLite's own that only compute from their arguments (JSON): a
    /// job's SQL and a check may read them. (Their first use on a connection looks like a write
    /// of `sqlite_schema` to the authorizer, so `SQLiteConnection` uses them once when it opens;
    /// no view may take their names: `ManifestParser.reservedTableReason`.)
    static let tableFunctions: Set<String> = ["json_each", "json_tree"]

    /// Schema queries an operator may run from `kappactl query` (each only reads).
    static let queryPragmas: Set<String> = ["table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"]

    /// A job's SQL may read `batch` and its own table and write only its own table.
    /// - Parameter relations: `SQLiteBackend.relationNames()`: SQLite names no database for a
    ///   read of a whole row (`count(*) FROM batch`) or of a `WITH` query's own name, so such a
    ///   read is allowed for `batch`, the job's table and names that are not relations.
    static func jobPolicy(_ spec: JobSpec, relations: Set<String>) -> AuthorizerPolicy {
        let own = spec.versionTable.lowercased()
        return { request in
            let table = request.first?.lowercased() ?? ""
            switch request.action {
            case SQLITE_SELECT, SQLITE_RECURSIVE:
                return nil
            case SQLITE_FUNCTION:
                return functionRefusal(request, who: "the job's SQL")
            case SQLITE_READ:
                if table == own || (table == "batch" && request.database == "temp") || table.isEmpty { return nil }
                if request.database == nil && (table == "batch" || !relations.contains(table)) { return nil }
                if request.database == "main" && tableFunctions.contains(table) && !relations.contains(table) { return nil }
                return "the job's SQL may not read table \"\(request.first ?? "")\" (it may read batch and output)"
            case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
                if table == own { return nil }
                if ["sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"].contains(table) {
                    return "the job's SQL may not change the schema (it may only read batch and output and write output)"
                }
                return "the job's SQL may not write table \"\(request.first ?? "")\" (it may write only output)"
            default:
                return "the job's SQL may not run \(actionName(request.action)) (it may only read batch and output and write output)"
            }
        }
    }

    /// A promotion check may read only `tables` (old and new).
    static func checkPolicy(readable tables: [String]) -> AuthorizerPolicy {
        let allowed = Set(tables.map { $0.lowercased() } + [""])
        return { request in
            switch request.action {
            case SQLITE_SELECT, SQLITE_RECURSIVE: return nil
            case SQLITE_FUNCTION: return functionRefusal(request, who: "a promotion check")
            case SQLITE_READ where allowed.contains(request.first?.lowercased() ?? ""): return nil
            case SQLITE_READ where request.database != "temp" && tableFunctions.contains(request.first?.lowercased() ?? ""): return nil
            default: return "a promotion check may only read old and new (an analysis check also lag and errors)"
            }
        }
    }

    /// An operator's query (`kappactl query`) may read any table and nothing else.
    static func queryPolicy(_ request: AuthorizerRequest) -> String? {
        switch request.action {
        case SQLITE_SELECT, SQLITE_RECURSIVE, SQLITE_READ: return nil
        case SQLITE_FUNCTION: return functionRefusal(request, who: "a query")
        case SQLITE_PRAGMA where queryPragmas.contains(request.first?.lowercased() ?? ""): return nil
        default: return "a query may only read (it may not run \(actionName(request.action)))"
        }
    }

    private static func functionRefusal(_ request: AuthorizerRequest, who: String) -> String? {
        guard let name = request.second, forbiddenFunctions.contains(name.lowercased()) else { return nil }
        return "\(who) may not call \(name)() (it reaches outside the statement: code, files or other tables)"
    }

    /// Compiles `sql` under `policy`, statement by statement. A statement that SQLite says may
    /// change the database must have been authorized as a write (`writes`: the job's INSERT,
    /// UPDATE or DELETE of its table); that refuses `VACUUM` and `VACUUM INTO`, which the
    /// authorizer is never asked about.
    /// - Throws: `SQLiteError` (phase `prepare`; `SQLITE_AUTH` with the reason for a refusal).
    static func compile(_ db: SQLiteConnection, _ sql: String, name: String, policy: @escaping AuthorizerPolicy,
                        who: String, single: Bool = false) throws -> [SQLiteStatement] {
        let tally = WriteTally()
        db.setAuthorizer { request in
            let reason = policy(request)
            if reason == nil, [SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE].contains(request.action) { tally.writes += 1 }
            return reason
        }
        defer { db.setAuthorizer(nil) }
        let statements: [SQLiteStatement]
        do {
            statements = try db.prepareAll(sql, name: name) { statement in
                defer { tally.writes = 0 }
                guard statement.isReadOnly || tally.writes > 0 else {
                    let scope = who == "the job's SQL" ? " batch and output and write output" : ""
                    throw SQLiteError(resultCode: SQLITE_AUTH, message: "\(who) may not run \(leadingKeyword(statement.sql)) (it may only read\(scope))",
                                      statement: name, phase: .prepare)
                }
            }
        } catch var error as SQLiteError {
            if let denial = db.takeDenial() {
                error.message = denial
                error.resultCode = SQLITE_AUTH
            }
            throw error
        }
        guard !statements.isEmpty else { throw SQLiteError(resultCode: SQLITE_MISUSE, message: "no SQL statement", statement: name, phase: .prepare) }
        if single && statements.count > 1 {
            throw SQLiteError(resultCode: SQLITE_MISUSE, message: "expected one statement", statement: name, phase: .prepare)
        }
        return statements
    }

    /// The statement's first keyword, upper-cased, past whitespace and comments (for messages).
    static func leadingKeyword(_ sql: String) -> String {
        var rest = Substring(sql)
        while true {
            rest = rest.drop(while: \.isWhitespace)
            if rest.hasPrefix("--") {
                rest = rest.drop(while: { $0 != "\n" })
            } else if rest.hasPrefix("/*"), let end = rest.range(of: "*/") {
                rest = rest[end.upperBound...]
            } else {
                break
            }
        }
        let word = rest.prefix(while: { $0.isLetter })
        return word.isEmpty ? "this statement" : word.uppercased()
    }

    static func actionName(_ action: Int32) -> String {
        let names: [Int32: String] = [
            SQLITE_CREATE_INDEX: "CREATE INDEX", SQLITE_CREATE_TABLE: "CREATE TABLE", SQLITE_CREATE_TEMP_INDEX: "CREATE INDEX",
            SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE", SQLITE_CREATE_TEMP_TRIGGER: "CREATE TRIGGER", SQLITE_CREATE_TEMP_VIEW: "CREATE VIEW",
            SQLITE_CREATE_TRIGGER: "CREATE TRIGGER", SQLITE_CREATE_VIEW: "CREATE VIEW", SQLITE_DROP_INDEX: "DROP INDEX",
            SQLITE_DROP_TABLE: "DROP TABLE", SQLITE_DROP_TEMP_INDEX: "DROP INDEX", SQLITE_DROP_TEMP_TABLE: "DROP TABLE",
            SQLITE_DROP_TEMP_TRIGGER: "DROP TRIGGER", SQLITE_DROP_TEMP_VIEW: "DROP VIEW", SQLITE_DROP_TRIGGER: "DROP TRIGGER",
            SQLITE_DROP_VIEW: "DROP VIEW", SQLITE_PRAGMA: "PRAGMA", SQLITE_TRANSACTION: "BEGIN/COMMIT", SQLITE_ATTACH: "ATTACH",
            SQLITE_DETACH: "DETACH", SQLITE_ALTER_TABLE: "ALTER TABLE", SQLITE_REINDEX: "REINDEX", SQLITE_ANALYZE: "ANALYZE",
            SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE", SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE", SQLITE_SAVEPOINT: "SAVEPOINT",
            SQLITE_INSERT: "INSERT", SQLITE_UPDATE: "UPDATE", SQLITE_DELETE: "DELETE",
        ]
        return names[action] ?? "action \(action)"
    }
}

/// Allowed writes the authorizer saw while one statement compiled; used on the connection's
/// thread only, inside one `compile`.
private final class WriteTally {
    var writes = 0
}

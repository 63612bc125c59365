#include <sqlite3.h>

/// SQLITE_TRANSIENT is a macro over a cast Swift cannot import.
static inline sqlite3_destructor_type kappa_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}

/// sqlite3_db_config is variadic: one wrapper for the integer options (SQLITE_DBCONFIG_DEFENSIVE, …).
static inline int kappa_sqlite_db_config_int(sqlite3 *db, int option, int value) {
    return sqlite3_db_config(db, option, value, (int *)0);
}

/// sqlite3_config is variadic: memory statistics off (before the library initializes), so that
/// SQLite's allocator takes no global mutex on every allocation. Returns SQLITE_MISUSE when the
/// library is initialized already.
static inline int kappa_sqlite_config_memstatus(int on) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, on);
}

/// SQLITE_STATIC: SQLite reads the bound bytes in place, during the step that follows.
static inline sqlite3_destructor_type kappa_sqlite_static(void) {
    return SQLITE_STATIC;
}

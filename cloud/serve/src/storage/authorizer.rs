//! What a component's SQL may do to the host: SQLite's authorizer, consulted for every action
//! of every statement as it is prepared.
//!
//! Denied (the statement fails with `not authorized`): attaching a file (`ATTACH`, and `VACUUM
//! INTO`, which attaches its target) and `DETACH`; `load_extension()`; and setting any pragma not
//! listed below: durability and locking (`synchronous`, `journal_mode`, `locking_mode`,
//! `fullfsync`, …), resources (`cache_size`, `mmap_size`, `temp_store`, `busy_timeout`, heap
//! limits, `threads`), the file's layout (`page_size`, `auto_vacuum`, `encoding`), the schema's
//! integrity (`writable_schema`, `schema_version`, `trusted_schema`) and `secure_delete` other
//! than `ON`. Reading any pragma is allowed.
//!
//! Allowed but *tainting*: what changes the connection's own state (temporary tables, indexes,
//! triggers and views, the temporary database a plain `VACUUM` attaches, the pragmas in
//! [`CONNECTION_PRAGMAS`]). A tainted connection is closed when its request ends instead of
//! going back to the pool, so the next request finds none of it.

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::ffi;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Pragmas that change only the behaviour of the connection that sets them (the connection
/// is then not reused).
const CONNECTION_PRAGMAS: &[&str] = &[
    "analysis_limit",
    "automatic_index",
    "case_sensitive_like",
    "cell_size_check",
    "count_changes",
    "defer_foreign_keys",
    "empty_result_callbacks",
    "foreign_keys",
    "full_column_names",
    "ignore_check_constraints",
    "legacy_alter_table",
    "query_only",
    "read_uncommitted",
    "recursive_triggers",
    "reverse_unordered_selects",
    "short_column_names",
];

/// Pragmas whose argument names what to inspect or do, not a setting: schema introspection,
/// checks and maintenance (the Data API runs `wal_checkpoint(TRUNCATE)` after anonymizing).
const ARGUMENT_PRAGMAS: &[&str] = &[
    "foreign_key_check",
    "foreign_key_list",
    "incremental_vacuum",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "optimize",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
    "wal_checkpoint",
];

/// Pragmas stored in the database file for the application's own use, as in Spin.
const FILE_PRAGMAS: &[&str] = &["application_id", "user_version"];

/// What the authorizer answers for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Allowed; the connection's own state changes, so it must not serve another request.
    Taint,
    Deny,
}

/// The verdict for one action (see the module documentation).
pub fn verdict(action: &AuthAction<'_>) -> Verdict {
    match action {
        // The temporary database a plain `VACUUM` works in (and `ATTACH ''`): private to the
        // connection, deleted when it closes. Any file or URI is refused.
        AuthAction::Attach { filename: "" } => Verdict::Taint,
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Verdict::Deny,
        // An `ATTACH` whose file is not a literal (a parameter, an expression) comes without
        // its name.
        AuthAction::Unknown { code, .. }
            if [ffi::SQLITE_ATTACH, ffi::SQLITE_DETACH].contains(code) =>
        {
            Verdict::Deny
        }
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Verdict::Deny
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => pragma(pragma_name, *pragma_value),
        AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => Verdict::Taint,
        _ => Verdict::Allow,
    }
}

fn pragma(name: &str, value: Option<&str>) -> Verdict {
    let name = name.to_ascii_lowercase();
    let listed = |list: &[&str]| list.contains(&name.as_str());
    match value {
        None => Verdict::Allow,
        Some(_) if listed(ARGUMENT_PRAGMAS) || listed(FILE_PRAGMAS) => Verdict::Allow,
        Some(_) if listed(CONNECTION_PRAGMAS) => Verdict::Taint,
        // Already on for every connection: setting it again changes nothing.
        Some(value) if name == "secure_delete" && is_on(value) => Verdict::Allow,
        Some(_) => Verdict::Deny,
    }
}

/// SQLite's spellings of a true boolean pragma value.
fn is_on(value: &str) -> bool {
    ["on", "1", "true", "yes"].iter().any(|on| {
        value
            .trim()
            .trim_matches(['\'', '"'])
            .eq_ignore_ascii_case(on)
    })
}

/// The authorizer of one connection: applies [`verdict`] and records a taint in `tainted`.
pub fn authorize(context: &AuthContext<'_>, tainted: &AtomicBool) -> Authorization {
    match verdict(&context.action) {
        Verdict::Allow => Authorization::Allow,
        Verdict::Taint => {
            tainted.store(true, Ordering::Relaxed);
            Authorization::Allow
        }
        Verdict::Deny => {
            tracing::warn!(action = ?context.action, "refused a component's SQL");
            Authorization::Deny
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma_verdict(name: &str, value: Option<&str>) -> Verdict {
        verdict(&AuthAction::Pragma {
            pragma_name: name,
            pragma_value: value,
        })
    }

    #[test]
    fn pragmas_are_read_freely_and_set_only_when_harmless() {
        for name in ["synchronous", "journal_mode", "secure_delete", "page_size"] {
            assert_eq!(pragma_verdict(name, None), Verdict::Allow, "{name}");
        }
        for (name, value) in [
            ("synchronous", "OFF"),
            ("SYNCHRONOUS", "0"),
            ("journal_mode", "DELETE"),
            ("locking_mode", "EXCLUSIVE"),
            ("writable_schema", "ON"),
            ("secure_delete", "OFF"),
            ("secure_delete", "FAST"),
            ("cache_size", "-1000000"),
            ("mmap_size", "1073741824"),
            ("busy_timeout", "100000000"),
            ("temp_store_directory", "'/tmp'"),
            ("hard_heap_limit", "1"),
        ] {
            assert_eq!(pragma_verdict(name, Some(value)), Verdict::Deny, "{name}");
        }
        for (name, value) in [
            ("secure_delete", "ON"),
            ("secure_delete", "1"),
            ("wal_checkpoint", "TRUNCATE"),
            ("table_info", "kv"),
            ("user_version", "3"),
        ] {
            assert_eq!(pragma_verdict(name, Some(value)), Verdict::Allow, "{name}");
        }
        assert_eq!(pragma_verdict("foreign_keys", Some("OFF")), Verdict::Taint);
    }

    #[test]
    fn files_and_extensions_are_refused() {
        for filename in ["/etc/passwd", "other.db", ":memory:", "file:x?mode=memory"] {
            assert_eq!(
                verdict(&AuthAction::Attach { filename }),
                Verdict::Deny,
                "{filename}"
            );
        }
        assert_eq!(
            verdict(&AuthAction::Attach { filename: "" }),
            Verdict::Taint
        );
        assert_eq!(
            verdict(&AuthAction::Detach { database_name: "x" }),
            Verdict::Deny
        );
        assert_eq!(
            verdict(&AuthAction::Function {
                function_name: "LOAD_EXTENSION"
            }),
            Verdict::Deny
        );
        assert_eq!(
            verdict(&AuthAction::Function {
                function_name: "json_extract"
            }),
            Verdict::Allow
        );
    }

    /// The authorizer on a real connection: what SQLite reports for each statement.
    #[test]
    fn sqlite_asks_and_obeys() {
        let dir = tempfile::tempdir().unwrap();
        let db = rusqlite::Connection::open(dir.path().join("a.db")).unwrap();
        let tainted = std::sync::Arc::new(AtomicBool::new(false));
        let flag = tainted.clone();
        db.authorizer(Some(move |context: AuthContext<'_>| {
            authorize(&context, &flag)
        }));
        db.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        assert!(!tainted.load(Ordering::Relaxed));
        let other = dir.path().join("other.db");
        let err = db
            .execute("ATTACH DATABASE ? AS other", [other.display().to_string()])
            .unwrap_err();
        assert!(err.to_string().contains("not authorized"), "{err}");
        for sql in [
            format!("ATTACH DATABASE '{}' AS other", other.display()),
            format!("VACUUM INTO '{}'", other.display()),
            "PRAGMA synchronous = OFF".to_owned(),
            "SELECT load_extension('x')".to_owned(),
        ] {
            let err = db.execute_batch(&sql).unwrap_err().to_string();
            // `VACUUM INTO` fails in the `ATTACH` it runs inside.
            assert!(
                err.contains("not authorized") || err.contains("authorization denied"),
                "{sql}: {err}"
            );
        }
        assert!(!other.exists(), "nothing was created");
        db.execute_batch("VACUUM").unwrap();
        assert!(
            tainted.load(Ordering::Relaxed),
            "VACUUM's temporary database"
        );
    }
}

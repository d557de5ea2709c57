//! The ACL file: `user <name> <rules...>` lines, loaded whole or not at all (Redis's
//! `ACLLoadFromFile`), and written atomically by ACL SAVE.

use super::user::{has_spaces, merge_selector_args, User};
use std::collections::BTreeMap;
use std::path::Path;

/// The text of an I/O error as C's `strerror` gives it (without Rust's "(os error N)").
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Parses the ACL file at `path`. `Err` is Redis's one-line description of every problem.
pub fn load(path: &Path) -> Result<BTreeMap<Vec<u8>, User>, String> {
    let shown = path.display().to_string();
    let data = std::fs::read(path).map_err(|e| {
        format!(
            "Error loading ACLs, opening file '{shown}': {}",
            strerror(&e)
        )
    })?;
    parse(&data, &shown)
}

/// Parses ACL file text; `shown` is the file name used in messages.
pub fn parse(data: &[u8], shown: &str) -> Result<BTreeMap<Vec<u8>, User>, String> {
    let mut users: BTreeMap<Vec<u8>, User> = BTreeMap::new();
    let mut errors = String::new();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let linenum = i + 1;
        let line = trim(raw, b" \t\r\n");
        if line.is_empty() {
            continue;
        }
        let argv: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        if argv[0] != b"user" || argv.len() < 2 {
            errors.push_str(&format!(
                "{shown}:{linenum} should start with user keyword followed by the username. "
            ));
            continue;
        }
        let name = argv[1];
        if has_spaces(name) {
            errors.push_str(&format!(
                "'{shown}:{linenum}: username '{}' contains invalid characters. ",
                String::from_utf8_lossy(name)
            ));
            continue;
        }
        if users.contains_key(name) {
            errors.push_str(&format!(
                "WARNING: Duplicate user '{}' found on line {linenum}. ",
                String::from_utf8_lossy(name)
            ));
            continue;
        }
        let mut u = User::new(name);
        match merge_selector_args(&argv[2..]) {
            Err(_) => errors.push_str(&format!(
                "{shown}:{linenum}: Unmatched parenthesis in selector definition."
            )),
            Ok(rules) => {
                for r in rules {
                    let r = trim(&r, b"\t\r\n");
                    if let Err(e) = u.apply(r) {
                        errors.push_str(&format!(
                            "{shown}:{linenum}: Error in applying operation '{}': {e}. ",
                            String::from_utf8_lossy(r)
                        ));
                    }
                }
            }
        }
        users.insert(name.to_vec(), u);
    }
    if !errors.is_empty() {
        errors.push_str(
            "WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
        );
        return Err(errors);
    }
    users
        .entry(b"default".to_vec())
        .or_insert_with(User::default_user);
    Ok(users)
}

fn trim<'a>(mut s: &'a [u8], set: &[u8]) -> &'a [u8] {
    while let Some((f, rest)) = s.split_first() {
        if !set.contains(f) {
            break;
        }
        s = rest;
    }
    while let Some((l, rest)) = s.split_last() {
        if !set.contains(l) {
            break;
        }
        s = rest;
    }
    s
}

/// The file text for `users` (one `user` line each, by name).
pub fn render(users: &[User]) -> Vec<u8> {
    let mut out = Vec::new();
    for u in users {
        out.extend_from_slice(b"user ");
        out.extend_from_slice(&u.name);
        out.push(b' ');
        out.extend_from_slice(u.describe().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Writes `users` to `path` through a temporary file and a rename, so a crash never leaves a
/// half-written ACL file.
pub fn save(path: &Path, users: &[User]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let res = std::fs::write(&tmp, render(users)).and_then(|()| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip() {
        let text = b"user alice on >pw ~a* +get\n\nuser bob off (~x +set)\n";
        let users = parse(text, "f.acl").expect("parse");
        assert_eq!(users.len(), 3, "alice, bob and an implicit default");
        let list: Vec<User> = users.values().cloned().collect();
        let out = render(&list);
        let again = parse(&out, "f.acl").expect("reparse");
        let list2: Vec<User> = again.values().cloned().collect();
        assert_eq!(render(&list2), out);
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.contains("user alice on #"), "{s}");
        assert!(s.contains("user default on nopass ~* &* +@all\n"), "{s}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse(b"user a on +nosuch\nfoo\nuser a on\n", "f.acl").expect_err("bad");
        assert_eq!(
            err,
            "f.acl:1: Error in applying operation '+nosuch': Unknown command or category name in ACL. f.acl:2 should start with user keyword followed by the username. WARNING: Duplicate user 'a' found on line 3. WARNING: ACL errors detected, no change to the previously active ACL rules was performed"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("none.acl");
        let err = load(&missing).expect_err("missing");
        assert!(err.ends_with(": No such file or directory"), "{err}");
    }
}

//! Unit tests of the simulated file system the crash tests rely on.

use pinnacle_lsm::{SimFs, SimOp, Vfs};
use std::path::Path;

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn fs_with_dir() -> SimFs {
    let fs = SimFs::new();
    fs.create_dir_all(p("/db")).unwrap();
    fs
}

#[test]
fn write_read_list_rename_remove() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/db/a")).unwrap();
    f.append(b"hello ").unwrap();
    f.append(b"world").unwrap();
    assert_eq!(f.len(), 11);
    assert_eq!(fs.read_all(p("/db/a")).unwrap(), b"hello world");
    let r = fs.open(p("/db/a")).unwrap();
    assert_eq!(r.len(), 11);
    assert_eq!(r.read_at(6, 5).unwrap(), b"world");
    assert_eq!(
        r.read_at(8, 10).unwrap_err().kind(),
        std::io::ErrorKind::UnexpectedEof
    );
    fs.rename(p("/db/a"), p("/db/b")).unwrap();
    assert!(!fs.exists(p("/db/a")));
    assert!(fs.exists(p("/db/b")));
    assert_eq!(fs.list(p("/db")).unwrap(), vec!["b".to_string()]);
    // An open reader keeps the unlinked file readable, as on POSIX.
    fs.remove(p("/db/b")).unwrap();
    assert_eq!(r.read_at(0, 5).unwrap(), b"hello");
    assert!(fs.list(p("/db")).unwrap().is_empty());
    assert!(fs.remove(p("/db/b")).is_err());
    assert!(fs.create(p("/nodir/x")).is_err());
}

#[test]
fn list_shows_subdirectories_and_root_exists() {
    let fs = fs_with_dir();
    fs.create_dir_all(p("/db/ckpt/inner")).unwrap();
    drop(fs.create(p("/db/f")).unwrap());
    let mut names = fs.list(p("/db")).unwrap();
    names.sort();
    assert_eq!(names, vec!["ckpt", "f"]);
    assert!(fs.exists(p("/")));
    assert!(fs.exists(p("/db/ckpt/inner")));
}

/// A WAL with 7 synced bytes and 9 unsynced ones, plus a synced file whose entry is not durable.
fn half_synced() -> (SimFs, Box<dyn pinnacle_lsm::WritableFile>) {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/db/wal")).unwrap();
    f.append(b"durable").unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/db")).unwrap();
    f.append(b"-volatile").unwrap();
    let mut g = fs.create(p("/db/lost")).unwrap();
    g.append(b"x").unwrap();
    g.sync().unwrap();
    (fs, f)
}

#[test]
fn crash_keeps_only_synced_bytes_and_durable_entries() {
    let (fs, _f) = half_synced();
    assert_eq!(fs.durable_len(p("/db/wal")).unwrap(), 7);
    assert!(!fs.is_entry_durable(p("/db/lost")));
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let (fs, mut f) = half_synced();
        fs.crash(seed);
        // The old handle belongs to the dead process.
        assert!(f.append(b"zombie").is_err());
        assert!(f.sync().is_err());
        assert!(!fs.exists(p("/db/lost")), "unsynced create survived");
        let data = fs.read_all(p("/db/wal")).unwrap();
        assert!(data.starts_with(b"durable"));
        assert!(b"durable-volatile".starts_with(&data));
        lengths.insert(data.len());
    }
    assert!(lengths.contains(&7), "some crash drops the whole tail");
    assert!(
        lengths.len() > 3,
        "torn tails of several lengths: {lengths:?}"
    );
    // Crashes replay exactly from their seed.
    let run = |seed| {
        let (fs, _f) = half_synced();
        fs.crash(seed);
        fs.read_all(p("/db/wal")).unwrap()
    };
    for seed in 0..8 {
        assert_eq!(run(seed), run(seed));
    }
}

#[test]
fn unsynced_rename_and_remove_are_undone() {
    let fs = fs_with_dir();
    for name in ["CURRENT", "old"] {
        let mut f = fs.create(&Path::new("/db").join(name)).unwrap();
        f.append(name.as_bytes()).unwrap();
        f.sync().unwrap();
    }
    fs.sync_dir(p("/db")).unwrap();
    let mut t = fs.create(p("/db/CURRENT.tmp")).unwrap();
    t.append(b"NEW").unwrap();
    t.sync().unwrap();
    fs.rename(p("/db/CURRENT.tmp"), p("/db/CURRENT")).unwrap();
    fs.remove(p("/db/old")).unwrap();
    assert_eq!(fs.read_all(p("/db/CURRENT")).unwrap(), b"NEW");
    fs.crash(1);
    assert_eq!(fs.read_all(p("/db/CURRENT")).unwrap(), b"CURRENT");
    assert_eq!(fs.read_all(p("/db/old")).unwrap(), b"old");
    assert!(!fs.exists(p("/db/CURRENT.tmp")));

    // The same sequence followed by sync_dir survives.
    let mut t = fs.create(p("/db/CURRENT.tmp")).unwrap();
    t.append(b"NEW").unwrap();
    t.sync().unwrap();
    fs.rename(p("/db/CURRENT.tmp"), p("/db/CURRENT")).unwrap();
    fs.remove(p("/db/old")).unwrap();
    fs.sync_dir(p("/db")).unwrap();
    fs.crash(2);
    assert_eq!(fs.read_all(p("/db/CURRENT")).unwrap(), b"NEW");
    assert!(!fs.exists(p("/db/old")));
}

#[test]
fn hard_links_share_data_and_survive_removal_of_the_original() {
    let fs = fs_with_dir();
    fs.create_dir_all(p("/ckpt")).unwrap();
    let mut f = fs.create(p("/db/1.sst")).unwrap();
    f.append(b"table").unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/db")).unwrap();
    fs.hard_link(p("/db/1.sst"), p("/ckpt/1.sst")).unwrap();
    assert!(fs.hard_link(p("/db/1.sst"), p("/ckpt/1.sst")).is_err());
    fs.sync_dir(p("/ckpt")).unwrap();
    fs.remove(p("/db/1.sst")).unwrap();
    fs.sync_dir(p("/db")).unwrap();
    fs.crash(3);
    assert!(!fs.exists(p("/db/1.sst")));
    assert_eq!(fs.read_all(p("/ckpt/1.sst")).unwrap(), b"table");
}

#[test]
fn create_truncates_existing_file_like_o_trunc() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/db/m")).unwrap();
    f.append(b"first version").unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/db")).unwrap();
    let mut g = fs.create(p("/db/m")).unwrap();
    assert_eq!(fs.read_all(p("/db/m")).unwrap(), b"");
    g.append(b"second").unwrap();
    // The truncation is not durable until the file is synced.
    fs.crash(9);
    assert_eq!(fs.read_all(p("/db/m")).unwrap(), b"first version");
    let mut g = fs.create(p("/db/m")).unwrap();
    g.append(b"second").unwrap();
    g.sync().unwrap();
    fs.crash(9);
    assert_eq!(fs.read_all(p("/db/m")).unwrap(), b"second");
}

#[test]
fn injected_sync_and_append_failures_hit_the_nth_call_once() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/db/wal")).unwrap();
    fs.fail_nth(SimOp::Sync, 2);
    fs.fail_nth(SimOp::Append, 3);
    f.append(b"a").unwrap();
    f.sync().unwrap();
    f.append(b"b").unwrap();
    assert!(f.sync().is_err(), "second sync fails");
    assert!(f.append(b"c").is_err(), "third append fails");
    f.append(b"d").unwrap();
    f.sync().unwrap();
    assert_eq!(fs.read_all(p("/db/wal")).unwrap(), b"abd");
    assert_eq!(fs.op_count(SimOp::Sync), 3);
    assert_eq!(fs.op_count(SimOp::Append), 4);

    // Faults can be restricted to matching paths.
    let mut other = fs.create(p("/db/data.sst")).unwrap();
    fs.fail_nth_matching(SimOp::Sync, 1, ".log");
    other.sync().unwrap();
    let mut log = fs.create(p("/db/000001.log")).unwrap();
    assert!(log.sync().is_err());
    log.sync().unwrap();
}

#[test]
fn power_cut_after_n_ops_stops_everything_until_crash() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/db/wal")).unwrap();
    fs.sync_dir(p("/db")).unwrap();
    fs.power_cut_after(2);
    f.append(b"12").unwrap();
    f.sync().unwrap();
    assert!(!fs.is_powered_off());
    assert!(f.append(b"34").is_err());
    assert!(fs.is_powered_off());
    assert_eq!(
        fs.power_cut_point(),
        Some((SimOp::Append, "/db/wal".into()))
    );
    assert!(fs.create(p("/db/x")).is_err());
    assert!(fs.open(p("/db/wal")).is_err());
    assert!(fs.list(p("/db")).is_err());
    fs.crash(0);
    assert!(!fs.is_powered_off());
    assert_eq!(fs.power_cut_point(), None);
    assert_eq!(fs.read_all(p("/db/wal")).unwrap(), b"12");
    assert_eq!(fs.crashes(), 1);
}

#[test]
fn flip_byte_and_truncate_change_stored_bytes() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/db/t")).unwrap();
    f.append(&[0u8, 1, 2, 3]).unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/db")).unwrap();
    fs.flip_byte(p("/db/t"), 2).unwrap();
    assert_eq!(fs.contents(p("/db/t")).unwrap(), vec![0, 1, !2u8, 3]);
    assert!(fs.flip_byte(p("/db/t"), 4).is_err());
    // Corruption is on the medium: it survives a crash.
    fs.crash(5);
    assert_eq!(fs.read_all(p("/db/t")).unwrap(), vec![0, 1, !2u8, 3]);
    fs.truncate(p("/db/t"), 1).unwrap();
    assert_eq!(fs.read_all(p("/db/t")).unwrap(), vec![0]);
    assert_eq!(fs.bytes_under(p("/db")), 1);
    assert_eq!(fs.files().len(), 1);
}

#[test]
fn process_handles_die_with_their_process() {
    let fs = fs_with_dir();
    let old = fs.process();
    drop(old.create(p("/db/a")).unwrap());
    old.sync_dir(p("/db")).unwrap();
    fs.crash(0);
    // A zombie thread of the dead engine can no longer change anything.
    assert!(old.remove(p("/db/a")).is_err());
    assert!(old.create(p("/db/b")).is_err());
    assert!(old.open(p("/db/a")).is_err());
    assert!(old.list(p("/db")).is_err());
    let new = fs.process();
    assert!(new.exists(p("/db/a")));
    drop(new.create(p("/db/c")).unwrap());
    assert!(fs.exists(p("/db/c")));
}

#[test]
fn fork_is_an_independent_copy() {
    let fs = fs_with_dir();
    let mut f = fs.create(p("/db/a")).unwrap();
    f.append(b"abc").unwrap();
    f.sync().unwrap();
    fs.sync_dir(p("/db")).unwrap();
    let copy = fs.fork();
    copy.flip_byte(p("/db/a"), 0).unwrap();
    copy.remove(p("/db/a")).unwrap();
    assert_eq!(fs.read_all(p("/db/a")).unwrap(), b"abc");
    f.append(b"d").unwrap();
    assert!(!copy.exists(p("/db/a")));
    copy.crash(0);
    assert_eq!(copy.read_all(p("/db/a")).unwrap(), vec![!b'a', b'b', b'c']);
    assert_eq!(fs.read_all(p("/db/a")).unwrap(), b"abcd");
}

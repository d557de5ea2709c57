//! Writers are slowed, never failed, when flushes and compactions fall behind.

mod common;

use common::{b, dump, Model};
use pinnacle_lsm::{Engine, Lsm, Options, WriteBatch};

#[test]
fn concurrent_writers_stall_but_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        memtable_size: 4 << 10,
        max_immutable_memtables: 1,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 3,
        l0_stop_trigger: 4,
        level_base_bytes: 16 << 10,
        target_file_size: 8 << 10,
        ..Options::small_for_tests()
    };
    let e = Lsm::open(dir.path(), opts).unwrap();
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 600;
    std::thread::scope(|sc| {
        for w in 0..WRITERS {
            let e = &e;
            sc.spawn(move || {
                for i in 0..PER_WRITER {
                    let mut wb = WriteBatch::new();
                    wb.put(
                        b(format!("w{w}-{:04}", i % 300)),
                        b(format!("{i}").repeat(40)),
                    );
                    e.write(wb).expect("a stalled write must still succeed");
                }
            });
        }
    });
    let mut model = Model::default();
    for w in 0..WRITERS {
        for i in PER_WRITER - 300..PER_WRITER {
            model.map.insert(
                b(format!("w{w}-{:04}", i % 300)),
                b(format!("{i}").repeat(40)),
            );
        }
    }
    assert_eq!(dump(&e, None), model.pairs());
    let st = e.stats();
    eprintln!("write stalls: {}, levels: {:?}", st.write_stalls, st.levels);
    assert!(
        st.write_stalls > 0,
        "the tiny limits never stalled a writer: {st:?}"
    );
    assert!(
        st.levels[0].files <= 4 + 1,
        "L0 kept under the stop trigger: {:?}",
        st.levels
    );
}

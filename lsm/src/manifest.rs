//! The manifest: a log of version edits (files added and removed per level, the WAL log
//! number, the next file number, the last sequence number), and the `CURRENT` pointer to it.
//!
//! Record: `u32 len | u32 crc32c(len) | u32 crc32c(payload) | payload`. A new manifest starts
//! with a snapshot of the whole state; `CURRENT` is replaced by writing `CURRENT.tmp` and
//! renaming it, with the directory fsynced after each step.

use crate::coding::{get_bytes, get_u32, get_varint, put_bytes, put_varint};
use crate::space::Reservation;
use crate::sstable::FileMeta;
use crate::vfs::{Vfs, WritableFile};
use crate::{Error, Result};
use bytes::Bytes;
use std::path::{Path, PathBuf};

const HEADER: usize = 12;
// Manifest space is reserved this far ahead (edits are small).
const RESERVE_STEP: u64 = 64 << 10;
const TAG_LOG: u8 = 1;
const TAG_NEXT_FILE: u8 = 2;
const TAG_LAST_SEQ: u8 = 3;
const TAG_ADD: u8 = 4;
const TAG_REMOVE: u8 = 5;
// Levels beyond this in a record mean the record is garbage.
const MAX_LEVELS: usize = 64;

/// The name of manifest `id`.
pub(crate) fn manifest_name(id: u64) -> String {
    format!("MANIFEST-{id:06}")
}

/// One change to the engine's file set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    /// WAL segments with a smaller id are fully flushed.
    pub(crate) log_number: Option<u64>,
    pub(crate) next_file: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) added: Vec<(usize, FileMeta)>,
    pub(crate) removed: Vec<(usize, u64)>,
}

impl VersionEdit {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for (tag, v) in [
            (TAG_LOG, self.log_number),
            (TAG_NEXT_FILE, self.next_file),
            (TAG_LAST_SEQ, self.last_seq),
        ] {
            if let Some(v) = v {
                b.push(tag);
                put_varint(&mut b, v);
            }
        }
        for (level, id) in &self.removed {
            b.push(TAG_REMOVE);
            put_varint(&mut b, *level as u64);
            put_varint(&mut b, *id);
        }
        for (level, f) in &self.added {
            b.push(TAG_ADD);
            put_varint(&mut b, *level as u64);
            put_varint(&mut b, f.id);
            put_varint(&mut b, f.size);
            put_bytes(&mut b, &f.smallest);
            put_bytes(&mut b, &f.largest);
            b.push(u8::from(f.largest_exclusive));
            put_varint(&mut b, f.min_seq);
            put_varint(&mut b, f.max_seq);
        }
        b
    }

    fn decode(d: &[u8]) -> Option<VersionEdit> {
        let mut e = VersionEdit::default();
        let mut p = 0;
        while p < d.len() {
            let tag = d[p];
            p += 1;
            match tag {
                TAG_LOG => e.log_number = Some(get_varint(d, &mut p)?),
                TAG_NEXT_FILE => e.next_file = Some(get_varint(d, &mut p)?),
                TAG_LAST_SEQ => e.last_seq = Some(get_varint(d, &mut p)?),
                TAG_REMOVE => {
                    let level = get_varint(d, &mut p)? as usize;
                    if level >= MAX_LEVELS {
                        return None;
                    }
                    e.removed.push((level, get_varint(d, &mut p)?));
                }
                TAG_ADD => {
                    let level = get_varint(d, &mut p)? as usize;
                    if level >= MAX_LEVELS {
                        return None;
                    }
                    let id = get_varint(d, &mut p)?;
                    let size = get_varint(d, &mut p)?;
                    let smallest = Bytes::copy_from_slice(get_bytes(d, &mut p)?);
                    let largest = Bytes::copy_from_slice(get_bytes(d, &mut p)?);
                    let excl = *d.get(p)?;
                    p += 1;
                    let min_seq = get_varint(d, &mut p)?;
                    let max_seq = get_varint(d, &mut p)?;
                    e.added.push((
                        level,
                        FileMeta {
                            id,
                            size,
                            smallest,
                            largest,
                            largest_exclusive: excl != 0,
                            min_seq,
                            max_seq,
                        },
                    ));
                }
                _ => return None,
            }
        }
        Some(e)
    }
}

/// The file set and counters a manifest describes.
#[derive(Clone, Debug, Default)]
pub(crate) struct ManifestState {
    /// Files per level; L0 newest first, other levels sorted by smallest key.
    pub(crate) levels: Vec<Vec<FileMeta>>,
    pub(crate) log_number: u64,
    pub(crate) next_file: u64,
    pub(crate) last_seq: u64,
}

impl ManifestState {
    /// An empty state with `levels` levels.
    pub(crate) fn new(levels: usize) -> ManifestState {
        ManifestState {
            levels: vec![Vec::new(); levels.max(2)],
            log_number: 0,
            next_file: 1,
            last_seq: 0,
        }
    }

    /// Applies an edit.
    pub(crate) fn apply(&mut self, e: &VersionEdit) {
        if let Some(v) = e.log_number {
            self.log_number = self.log_number.max(v);
        }
        if let Some(v) = e.next_file {
            self.next_file = self.next_file.max(v);
        }
        if let Some(v) = e.last_seq {
            self.last_seq = self.last_seq.max(v);
        }
        for (level, id) in &e.removed {
            if let Some(l) = self.levels.get_mut(*level) {
                l.retain(|f| f.id != *id);
            }
        }
        for (level, f) in &e.added {
            while self.levels.len() <= *level {
                self.levels.push(Vec::new());
            }
            self.levels[*level].push(f.clone());
            self.next_file = self.next_file.max(f.id + 1);
        }
        sort_levels(&mut self.levels);
    }

    /// An edit that recreates this state from nothing.
    pub(crate) fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            log_number: Some(self.log_number),
            next_file: Some(self.next_file),
            last_seq: Some(self.last_seq),
            added: self
                .levels
                .iter()
                .enumerate()
                .flat_map(|(l, fs)| fs.iter().map(move |f| (l, f.clone())))
                .collect(),
            removed: Vec::new(),
        }
    }
}

/// Orders L0 newest first and the other levels by smallest key.
pub(crate) fn sort_levels(levels: &mut [Vec<FileMeta>]) {
    if let Some(l0) = levels.first_mut() {
        l0.sort_by(|a, b| b.max_seq.cmp(&a.max_seq).then(b.id.cmp(&a.id)));
    }
    for l in levels.iter_mut().skip(1) {
        l.sort_by(|a, b| a.smallest.cmp(&b.smallest));
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&out[..4]).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn record_at(d: &[u8], pos: usize) -> Option<(usize, &[u8])> {
    let h = d.get(pos..pos.checked_add(HEADER)?)?;
    if get_u32(h, 4)? != crc32c::crc32c(&h[..4]) {
        return None;
    }
    let end = (pos + HEADER).checked_add(get_u32(h, 0)? as usize)?;
    let payload = d.get(pos + HEADER..end)?;
    (get_u32(h, 8)? == crc32c::crc32c(payload)).then_some((end, payload))
}

/// Reads `CURRENT` and replays the manifest it names; `None` for a new database.
pub(crate) fn load(
    vfs: &dyn Vfs,
    dir: &Path,
    max_levels: usize,
) -> Result<Option<(u64, ManifestState)>> {
    let cur = dir.join("CURRENT");
    if !vfs.exists(&cur) {
        return Ok(None);
    }
    let raw = vfs.read_all(&cur).map_err(|e| Error::io(&cur, e))?;
    let name = std::str::from_utf8(&raw)
        .ok()
        .map(str::trim)
        .filter(|n| n.starts_with("MANIFEST-"))
        .ok_or_else(|| Error::corruption(&cur, 0, "CURRENT does not name a manifest"))?;
    let id: u64 = name["MANIFEST-".len()..]
        .parse()
        .map_err(|_| Error::corruption(&cur, 0, "CURRENT does not name a manifest"))?;
    let path = dir.join(name);
    let data = vfs.read_all(&path).map_err(|e| Error::io(&path, e))?;
    let mut st = ManifestState::new(max_levels);
    let mut pos = 0;
    let mut records = 0;
    while pos < data.len() {
        match record_at(&data, pos) {
            Some((end, payload)) => {
                let e = VersionEdit::decode(payload).ok_or_else(|| {
                    Error::corruption(&path, pos as u64, "manifest record does not decode")
                })?;
                st.apply(&e);
                records += 1;
                pos = end;
            }
            None => {
                let later_valid = (pos + 1..data.len().saturating_sub(HEADER - 1))
                    .any(|q| record_at(&data, q).is_some());
                if later_valid || records == 0 {
                    return Err(Error::corruption(
                        &path,
                        pos as u64,
                        "damaged manifest record",
                    ));
                }
                tracing::warn!(path = %path.display(), offset = pos, "dropping torn manifest tail");
                break;
            }
        }
    }
    if records == 0 {
        return Err(Error::corruption(&path, 0, "empty manifest"));
    }
    Ok(Some((id, st)))
}

/// Appends edits to the live manifest.
pub(crate) struct ManifestWriter {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    // Space for the next edits, so a full disk refuses an edit whole instead of tearing it.
    space: Reservation,
    /// The manifest's file number.
    pub(crate) id: u64,
}

impl ManifestWriter {
    /// Writes manifest `id` in `dir` holding `state`, then points `CURRENT` at it.
    pub(crate) fn create(
        vfs: &dyn Vfs,
        dir: &Path,
        id: u64,
        state: &ManifestState,
    ) -> Result<ManifestWriter> {
        let path = dir.join(manifest_name(id));
        let mut file = vfs
            .create(&path)
            .map_err(|e| Error::io_or_no_space(&path, e))?;
        let mut space = Reservation::for_file(&*file, RESERVE_STEP);
        let first = frame(&state.snapshot_edit().encode());
        space
            .ensure(first.len() as u64)
            .map_err(|e| Error::io_or_no_space(&path, e))?;
        file.append(&first)
            .and_then(|_| file.sync())
            .map_err(|e| Error::io(&path, e))?;
        let tmp = dir.join("CURRENT.tmp");
        let cur = dir.join("CURRENT");
        // Until the rename, `CURRENT` names the old manifest: a full disk up to here leaves
        // everything as it was (`NoSpace`).
        let mut t = vfs
            .create(&tmp)
            .map_err(|e| Error::io_or_no_space(&tmp, e))?;
        t.append(format!("{}\n", manifest_name(id)).as_bytes())
            .map_err(|e| Error::io_or_no_space(&tmp, e))?;
        t.sync().map_err(|e| Error::io(&tmp, e))?;
        drop(t);
        vfs.rename(&tmp, &cur).map_err(|e| Error::io(&cur, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(ManifestWriter {
            file,
            path,
            space,
            id,
        })
    }

    /// A writer that fails every call (only used while the engine is being opened).
    pub(crate) fn placeholder() -> ManifestWriter {
        ManifestWriter {
            file: Box::new(crate::vfs::NullFile),
            path: PathBuf::new(),
            space: Reservation::none(),
            id: 0,
        }
    }

    /// Appends and fsyncs one edit. `Error::NoSpace` means nothing was written (the
    /// manifest is intact and the edit may be retried).
    pub(crate) fn write(&mut self, e: &VersionEdit) -> Result<()> {
        let rec = frame(&e.encode());
        self.space
            .ensure(self.file.len() + rec.len() as u64)
            .map_err(|e| Error::io_or_no_space(&self.path, e))?;
        self.file
            .append(&rec)
            .and_then(|_| self.file.sync())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.file.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::RealFs;

    fn meta(id: u64, s: &str, l: &str, seq: u64) -> FileMeta {
        FileMeta {
            id,
            size: 100 * id,
            smallest: Bytes::copy_from_slice(s.as_bytes()),
            largest: Bytes::copy_from_slice(l.as_bytes()),
            largest_exclusive: id.is_multiple_of(2),
            min_seq: seq,
            max_seq: seq + 10,
        }
    }

    fn edits() -> Vec<VersionEdit> {
        vec![
            VersionEdit {
                log_number: Some(3),
                added: vec![(0, meta(4, "a", "m", 1))],
                ..Default::default()
            },
            VersionEdit {
                log_number: Some(5),
                added: vec![(0, meta(6, "b", "z", 20))],
                ..Default::default()
            },
            VersionEdit {
                removed: vec![(0, 4), (0, 6)],
                added: vec![(1, meta(8, "n", "z", 1)), (1, meta(7, "a", "m", 1))],
                next_file: Some(9),
                last_seq: Some(30),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn write_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(&RealFs, dir.path(), 2, &ManifestState::new(7)).unwrap();
        for e in edits() {
            w.write(&e).unwrap();
        }
        let (id, st) = load(&RealFs, dir.path(), 7).unwrap().unwrap();
        assert_eq!(id, 2);
        assert_eq!(st.log_number, 5);
        assert_eq!(st.next_file, 9);
        assert_eq!(st.last_seq, 30);
        assert!(st.levels[0].is_empty());
        let ids: Vec<u64> = st.levels[1].iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![7, 8]);
        assert_eq!(st.levels[1][1], meta(8, "n", "z", 1));
    }

    #[test]
    fn torn_tail_dropped_middle_corruption_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(&RealFs, dir.path(), 2, &ManifestState::new(7)).unwrap();
        for e in edits() {
            w.write(&e).unwrap();
        }
        let p = dir.path().join(manifest_name(2));
        let data = std::fs::read(&p).unwrap();
        std::fs::write(&p, &data[..data.len() - 3]).unwrap();
        let (_, st) = load(&RealFs, dir.path(), 7).unwrap().unwrap();
        assert_eq!(st.levels[0].len(), 2);
        let mut d = data.clone();
        d[20] ^= 0x10;
        std::fs::write(&p, &d).unwrap();
        match load(&RealFs, dir.path(), 7) {
            Err(Error::Corruption { path, offset, .. }) => {
                assert_eq!(path, p);
                assert!(offset <= 20);
            }
            other => panic!("expected corruption: {other:?}"),
        }
    }
}

//! A bounded, crash-safe, in-order disk queue of encoded events for one output.
//!
//! Records (one encoded event each, never containing a newline) are appended as lines to
//! segment files `<20-digit id>.seg` in the output's directory; a `cursor` file, replaced
//! atomically, says how far delivery got (`<segment id> <byte offset>`). Fully delivered
//! segments are deleted. On open, segments and cursor are read back, so what was spooled before
//! a restart is delivered after it, in order. A record is delivered at least once: one cut off
//! between delivery and cursor update is sent again after a crash.
//!
//! Damage never wedges delivery: a record cut off by a crash or a full disk (no final newline)
//! is removed on open, a cursor past its segment's end or inside a record is moved to the next
//! record boundary, and a segment that vanished or cannot be read is skipped. Every skipped
//! record is counted ([`Spool::take_skipped`]) and logged by the caller. The spool holds captured
//! credentials: its directory is 0700 and its files 0600.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// A segment is closed and a new one started beyond this size.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// One segment file, as the spool knows it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    /// Its size in bytes.
    size: u64,
    /// Its records not yet delivered (counted once at open, then as records come and go, so a
    /// segment that vanishes loses a known number without reading the others again).
    records: u64,
}

/// The disk queue.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Segments, oldest first; the last one is appended to.
    segments: VecDeque<Segment>,
    /// Delivered bytes of the oldest segment.
    head_offset: u64,
    /// Bytes not yet delivered.
    pending: u64,
    /// Records not yet delivered (the sum of the segments').
    records: u64,
    /// Damaged records skipped since the last [`Spool::take_skipped`].
    skipped: u64,
}

/// Creates (or truncates) a file readable by the owner only.
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Cuts a record left without its newline (a crash or a full disk mid-write) off the end of
/// `path`; returns the file's size after, and whether anything was cut.
fn trim_partial_record(path: &Path) -> io::Result<(u64, bool)> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok((0, false));
    }
    // Scan back, a block at a time, to the last newline.
    let mut end = size;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let len = usize::try_from(end - start).unwrap_or(block.len());
        let chunk = block.get_mut(..len).unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep == size {
                return Ok((size, false));
            }
            file.set_len(keep)?;
            return Ok((keep, true));
        }
        end = start;
    }
    file.set_len(0)?;
    Ok((0, true))
}

/// The first record boundary at or after `offset` in `path` (the offset itself when the byte
/// before it is a newline), or the file's size.
fn next_boundary(path: &Path, offset: u64) -> io::Result<u64> {
    if offset == 0 {
        return Ok(0);
    }
    let mut reader = BufReader::new(File::open(path)?);
    reader.seek(SeekFrom::Start(offset - 1))?;
    let mut rest = Vec::new();
    let n = reader.read_until(b'\n', &mut rest)?;
    if rest.first() == Some(&b'\n') {
        return Ok(offset);
    }
    Ok(offset - 1 + n as u64)
}

/// The records (newlines) of `path` from `offset` on; 0 for a file that is gone.
fn count_records(path: &Path, offset: u64) -> io::Result<u64> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut block = vec![0u8; 64 * 1024];
    let mut records = 0u64;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(records);
        }
        let read = block.get(..n).unwrap_or_default();
        records += read.iter().filter(|b| **b == b'\n').count() as u64;
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, holding at most `max_bytes` undelivered.
    ///
    /// # Errors
    /// The directory or its files cannot be read or created.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let (cursor_id, cursor_offset) = fs::read_to_string(dir.join("cursor"))
            .ok()
            .and_then(|t| {
                let (a, b) = t.trim().split_once(' ')?;
                Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
            })
            .unwrap_or((0, 0));
        // Segments wholly before the cursor were delivered: remove them.
        for id in ids.iter().filter(|id| **id < cursor_id) {
            fs::remove_file(segment_path(dir, *id))?;
        }
        ids.retain(|id| *id >= cursor_id);
        if ids.is_empty() {
            ids.push(cursor_id.max(1));
            create_private(&segment_path(dir, cursor_id.max(1)))?;
        }
        // Segment ids are consecutive from the cursor's: a gap is a segment that vanished, and
        // its records with it (counted as one each: their number is unknown).
        let mut skipped = 0u64;
        let mut expected = if cursor_id == 0 {
            None
        } else {
            Some(cursor_id)
        };
        for id in &ids {
            if let Some(want) = expected {
                skipped = skipped.saturating_add(id.saturating_sub(want));
            }
            expected = id.checked_add(1);
        }
        let mut segments = VecDeque::with_capacity(ids.len());
        for id in ids {
            let path = segment_path(dir, id);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            let (size, cut) = trim_partial_record(&path)?;
            skipped += u64::from(cut);
            segments.push_back(Segment {
                id,
                size,
                records: 0,
            });
        }
        if let Ok(cursor) = fs::metadata(dir.join("cursor")) {
            let mut perms = cursor.permissions();
            perms.set_mode(0o600);
            fs::set_permissions(dir.join("cursor"), perms)?;
        }
        let mut head_offset = 0;
        if let Some(head) = segments.front() {
            if head.id == cursor_id {
                head_offset = cursor_offset.min(head.size);
            }
            // A cursor inside a record (a damaged cursor file): resume at the next record.
            let aligned = next_boundary(&segment_path(dir, head.id), head_offset)?;
            skipped += u64::from(aligned != head_offset);
            head_offset = aligned;
        }
        let (mut pending, mut records) = (0u64, 0u64);
        for (i, segment) in segments.iter_mut().enumerate() {
            let from = if i == 0 { head_offset } else { 0 };
            segment.records = count_records(&segment_path(dir, segment.id), from)?;
            pending = pending.saturating_add(segment.size.saturating_sub(from));
            records = records.saturating_add(segment.records);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segments,
            head_offset,
            pending,
            records,
            skipped,
        })
    }

    /// Damaged records skipped since the last call (each is a lost event to count).
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Whether nothing is waiting.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Undelivered bytes.
    #[must_use]
    pub const fn pending_bytes(&self) -> u64 {
        self.pending
    }

    /// Undelivered records.
    #[must_use]
    pub const fn pending_records(&self) -> u64 {
        self.records
    }

    /// Appends records in order until one would not fit; returns how many were stored.
    ///
    /// # Errors
    /// Writing the segment failed (the records not stored are the caller's to count).
    pub fn push(&mut self, records: &[&[u8]]) -> io::Result<usize> {
        let mut stored = 0;
        let mut buf = Vec::new();
        let mut size = 0u64;
        for r in records {
            let len = r.len() as u64 + 1;
            if self.pending + size + len > self.max_bytes {
                break;
            }
            buf.extend_from_slice(r);
            buf.push(b'\n');
            size += len;
            stored += 1;
        }
        if stored == 0 {
            return Ok(0);
        }
        let full = self.segments.back().is_none_or(|t| t.size >= SEGMENT_BYTES);
        if full {
            let id = self.segments.back().map_or(1, |t| t.id.saturating_add(1));
            create_private(&segment_path(&self.dir, id))?;
            self.segments.push_back(Segment {
                id,
                size: 0,
                records: 0,
            });
        }
        let Some(tail) = self.segments.back_mut() else {
            return Ok(0);
        };
        let mut file = OpenOptions::new()
            .append(true)
            .open(segment_path(&self.dir, tail.id))?;
        if let Err(err) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // Never leave part of a record behind (a full disk): cut back to where it was.
            let _ = file.set_len(tail.size);
            return Err(err);
        }
        tail.size += size;
        tail.records += stored as u64;
        self.pending += size;
        self.records += stored as u64;
        Ok(stored)
    }

    /// Reads up to `max` undelivered records, oldest first, without consuming them; returns
    /// them and the bytes to pass to [`Self::commit`] once they are delivered.
    ///
    /// # Errors
    /// Reading the segment failed.
    pub fn peek(&mut self, max: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
        let mut out = Vec::new();
        let Some(head) = self.segments.front() else {
            return Ok((out, 0));
        };
        let path = segment_path(&self.dir, head.id);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound && self.segments.len() > 1 => {
                // The segment vanished: what it held is lost; go on with the next one.
                self.drop_head()?;
                return self.peek(max);
            }
            Err(err) => return Err(err),
        };
        if file.metadata()?.len() <= self.head_offset && self.segments.len() > 1 {
            // Nothing left in this segment (a cursor at or past its end): on to the next.
            self.drop_head()?;
            return self.peek(max);
        }
        file.seek(SeekFrom::Start(self.head_offset))?;
        let mut reader = BufReader::new(file);
        let mut consumed = 0u64;
        while out.len() < max {
            let mut line = Vec::new();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            consumed += n as u64;
            line.pop();
            out.push(line);
        }
        Ok((out, consumed))
    }

    /// Marks `bytes` holding `records` records (from [`Self::peek`]) delivered: moves the
    /// cursor, deletes finished segments.
    ///
    /// # Errors
    /// Updating the cursor or deleting a segment failed.
    pub fn commit(&mut self, bytes: u64, records: u64) -> io::Result<()> {
        self.head_offset += bytes;
        self.pending = self.pending.saturating_sub(bytes);
        let records = records.min(self.records);
        self.records -= records;
        if let Some(head) = self.segments.front_mut() {
            head.records = head.records.saturating_sub(records);
        }
        while self.segments.len() > 1 {
            match self.segments.front() {
                Some(head) if self.head_offset >= head.size => self.drop_head()?,
                _ => break,
            }
        }
        self.write_cursor()
    }

    /// Drops the oldest segment (delivered, vanished or emptied): the records it still counted
    /// are no longer there and are skipped (lost).
    fn drop_head(&mut self) -> io::Result<()> {
        let Some(head) = self.segments.pop_front() else {
            return Ok(());
        };
        self.pending = self
            .pending
            .saturating_sub(head.size.saturating_sub(self.head_offset));
        self.records = self.records.saturating_sub(head.records);
        self.skipped = self.skipped.saturating_add(head.records);
        self.head_offset = 0;
        self.write_cursor()?;
        match fs::remove_file(segment_path(&self.dir, head.id)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    fn write_cursor(&self) -> io::Result<()> {
        let head = self.segments.front().map_or(1, |s| s.id);
        let tmp = self.dir.join("cursor.tmp");
        let mut file = create_private(&tmp)?;
        writeln!(file, "{head} {}", self.head_offset)?;
        file.sync_data()?;
        fs::rename(tmp, self.dir.join("cursor"))
    }
}

#[cfg(test)]
mod tests {
    use super::Spool;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sensor-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn records(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
        range
            .map(|i| format!("{{\"n\":{i}}}").into_bytes())
            .collect()
    }

    /// Peeks and commits until nothing is left (at most 10 batches of 100): what came out.
    fn deliver_all(s: &mut Spool) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for _ in 0..10 {
            let (batch, bytes) = s.peek(100).unwrap();
            if batch.is_empty() {
                break;
            }
            s.commit(bytes, batch.len() as u64).unwrap();
            got.extend(batch);
        }
        got
    }

    /// The segment files of the spool in `d`, oldest first.
    fn segment_files(d: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut segs: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        segs
    }

    fn refs(r: &[Vec<u8>]) -> Vec<&[u8]> {
        r.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn delivers_in_order_across_reopen_and_never_twice() {
        let d = dir("order");
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.push(&refs(&records(0..10))).unwrap(), 10);
        let (batch, bytes) = s.peek(4).unwrap();
        assert_eq!(batch, records(0..4));
        s.commit(bytes, batch.len() as u64).unwrap();
        drop(s);
        // A restart: the rest is still there, in order.
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(s.push(&refs(&records(10..12))).unwrap(), 2);
        let (batch, bytes) = s.peek(100).unwrap();
        assert_eq!(batch, records(4..12));
        s.commit(bytes, batch.len() as u64).unwrap();
        assert!(s.is_empty());
        drop(s);
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        assert!(s.is_empty());
        assert!(s.peek(10).unwrap().0.is_empty());
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_full_spool_refuses_exactly_what_does_not_fit() {
        let d = dir("full");
        // Each record is `{"n":10000}`, 11 bytes, plus a newline.
        let mut s = Spool::open(&d, 12 * 5).unwrap();
        assert_eq!(s.push(&refs(&records(10_000..10_008))).unwrap(), 5);
        assert_eq!(s.pending_bytes(), 60);
        assert_eq!(s.push(&refs(&records(10_000..10_001))).unwrap(), 0);
        let (batch, bytes) = s.peek(2).unwrap();
        s.commit(bytes, batch.len() as u64).unwrap();
        assert_eq!(s.push(&refs(&records(10_000..10_003))).unwrap(), 2);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn segments_rotate_and_are_deleted_once_delivered() {
        let d = dir("rotate");
        let mut s = Spool::open(&d, 64 << 20).unwrap();
        let big = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            assert_eq!(s.push(&[&big]).unwrap(), 1);
        }
        let segments = || {
            std::fs::read_dir(&d)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count()
        };
        assert!(segments() >= 2);
        loop {
            let (batch, bytes) = s.peek(3).unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.iter().all(|r| r.len() == 1 << 20));
            s.commit(bytes, batch.len() as u64).unwrap();
        }
        assert!(s.is_empty());
        assert_eq!(segments(), 1);
        std::fs::remove_dir_all(&d).ok();
    }

    fn mode(path: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_record_cut_off_by_a_crash_is_skipped_and_counted_never_wedging() {
        let d = dir("cut");
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(s.push(&refs(&records(0..3))).unwrap(), 3);
        drop(s);
        // A crash (or a full disk) in the middle of appending the fourth record.
        let seg = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, b"{\"n\":3, \"cut").unwrap();
        drop(f);
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(s.take_skipped(), 1);
        assert_eq!(s.take_skipped(), 0);
        // New records go after the three whole ones, on a clean line.
        assert_eq!(s.push(&refs(&records(4..6))).unwrap(), 2);
        let (batch, bytes) = s.peek(100).unwrap();
        assert_eq!(batch, [records(0..3), records(4..6)].concat());
        s.commit(bytes, batch.len() as u64).unwrap();
        assert!(s.is_empty());
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_damaged_cursor_resumes_at_the_next_record_and_a_vanished_segment_is_skipped() {
        let d = dir("cursor");
        let mut s = Spool::open(&d, 64 << 20).unwrap();
        let big = vec![b'x'; 5 << 20];
        // Segments rotate past 4 MiB: [big], [n0, big], [n1, n2, n3].
        for i in 0..2u32 {
            assert_eq!(s.push(&[&big]).unwrap(), 1);
            assert_eq!(s.push(&refs(&records(i..i + 1))).unwrap(), 1);
        }
        assert_eq!(s.push(&refs(&records(2..4))).unwrap(), 2);
        drop(s);
        let segs = segment_files(&d);
        assert_eq!(segs.len(), 3);
        // The cursor points into the middle of the first big record.
        let first: u64 = segs[0]
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        std::fs::write(d.join("cursor"), format!("{first} 1000\n")).unwrap();
        // The second segment (n0 and a big record) is gone.
        std::fs::remove_file(&segs[1]).unwrap();
        let mut s = Spool::open(&d, 64 << 20).unwrap();
        // The big record the cursor cut, and the vanished segment (a gap in the ids).
        assert_eq!(s.take_skipped(), 2);
        let got = deliver_all(&mut s);
        assert_eq!(s.take_skipped(), 0);
        assert_eq!(got, records(1..4));
        assert!(s.is_empty());
        assert_eq!(s.pending_records(), 0);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_segment_vanishing_while_open_loses_exactly_its_records() {
        let d = dir("vanish");
        let mut s = Spool::open(&d, 64 << 20).unwrap();
        let big = vec![b'y'; 5 << 20];
        // [big], [n0..n9, big], [n10, n11]: the middle segment holds 11 records.
        assert_eq!(s.push(&[&big]).unwrap(), 1);
        assert_eq!(s.push(&refs(&records(0..10))).unwrap(), 10);
        assert_eq!(s.push(&[&big]).unwrap(), 1);
        assert_eq!(s.push(&refs(&records(10..12))).unwrap(), 2);
        assert_eq!(s.pending_records(), 14);
        let segs = segment_files(&d);
        assert_eq!(segs.len(), 3);
        std::fs::remove_file(&segs[1]).unwrap();
        let got: Vec<_> = deliver_all(&mut s)
            .into_iter()
            .filter(|r| r.len() < 100)
            .collect();
        assert_eq!(got, records(10..12));
        assert_eq!(s.take_skipped(), 11);
        assert!(s.is_empty());
        assert_eq!(s.pending_records(), 0);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn the_spool_is_private_to_its_owner() {
        let d = dir("mode");
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(s.push(&refs(&records(0..2))).unwrap(), 2);
        let (batch, bytes) = s.peek(1).unwrap();
        s.commit(bytes, batch.len() as u64).unwrap();
        assert_eq!(mode(&d), 0o700);
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
        std::fs::remove_dir_all(&d).ok();
    }
}

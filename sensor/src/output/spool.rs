//! A bounded, crash-safe, in-order disk queue of encoded events for one output.
//!
//! Records (one encoded event each, never containing a newline) are appended as lines to
//! segment files `<20-digit id>.seg` in the output's directory; a `cursor` file, replaced
//! atomically, says how far delivery got (`<segment id> <byte offset>`). Fully delivered
//! segments are deleted. On open, segments and cursor are read back, so what was spooled before
//! a restart is delivered after it, in order. A record is delivered at least once: one cut off
//! between delivery and cursor update is sent again after a crash.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, BufRead as _, BufReader, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
};

/// A segment is closed and a new one started beyond this size.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// The disk queue.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Segment ids, oldest first; the last one is appended to.
    segments: VecDeque<u64>,
    /// Delivered bytes of the oldest segment.
    head_offset: u64,
    /// Bytes not yet delivered.
    pending: u64,
    /// Size of the newest segment.
    tail_size: u64,
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
        fs::create_dir_all(dir)?;
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
        let mut segments: VecDeque<u64> = ids.into_iter().collect();
        if segments.is_empty() {
            segments.push_back(cursor_id.max(1));
            File::create(segment_path(dir, cursor_id.max(1)))?;
        }
        let head_offset = if segments.front() == Some(&cursor_id) {
            cursor_offset
        } else {
            0
        };
        let mut pending = 0;
        let mut tail_size = 0;
        for (i, id) in segments.iter().enumerate() {
            let size = fs::metadata(segment_path(dir, *id))?.len();
            pending += if i == 0 {
                size.saturating_sub(head_offset)
            } else {
                size
            };
            tail_size = size;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segments,
            head_offset,
            pending,
            tail_size,
        })
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
        if self.tail_size >= SEGMENT_BYTES {
            let next = self.segments.back().copied().unwrap_or(0) + 1;
            File::create(segment_path(&self.dir, next))?;
            self.segments.push_back(next);
            self.tail_size = 0;
        }
        let tail = self.segments.back().copied().unwrap_or(1);
        let mut file = OpenOptions::new()
            .append(true)
            .open(segment_path(&self.dir, tail))?;
        file.write_all(&buf)?;
        file.sync_data()?;
        self.tail_size += size;
        self.pending += size;
        Ok(stored)
    }

    /// Reads up to `max` undelivered records, oldest first, without consuming them; returns
    /// them and the bytes to pass to [`Self::commit`] once they are delivered.
    ///
    /// # Errors
    /// Reading the segment failed.
    pub fn peek(&mut self, max: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
        let mut out = Vec::new();
        let Some(&head) = self.segments.front() else {
            return Ok((out, 0));
        };
        let mut file = File::open(segment_path(&self.dir, head))?;
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

    /// Marks `bytes` (from [`Self::peek`]) delivered: moves the cursor, deletes finished segments.
    ///
    /// # Errors
    /// Updating the cursor or deleting a segment failed.
    pub fn commit(&mut self, bytes: u64) -> io::Result<()> {
        self.head_offset += bytes;
        self.pending = self.pending.saturating_sub(bytes);
        while self.segments.len() > 1 {
            let Some(&head) = self.segments.front() else {
                break;
            };
            let size = fs::metadata(segment_path(&self.dir, head))?.len();
            if self.head_offset < size {
                break;
            }
            self.segments.pop_front();
            self.head_offset = 0;
            self.write_cursor()?;
            fs::remove_file(segment_path(&self.dir, head))?;
        }
        self.write_cursor()
    }

    fn write_cursor(&self) -> io::Result<()> {
        let head = self.segments.front().copied().unwrap_or(1);
        let tmp = self.dir.join("cursor.tmp");
        let mut file = File::create(&tmp)?;
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
        s.commit(bytes).unwrap();
        drop(s);
        // A restart: the rest is still there, in order.
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(s.push(&refs(&records(10..12))).unwrap(), 2);
        let (batch, bytes) = s.peek(100).unwrap();
        assert_eq!(batch, records(4..12));
        s.commit(bytes).unwrap();
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
        let (_, bytes) = s.peek(2).unwrap();
        s.commit(bytes).unwrap();
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
            s.commit(bytes).unwrap();
        }
        assert!(s.is_empty());
        assert_eq!(segments(), 1);
        std::fs::remove_dir_all(&d).ok();
    }
}

//! The metadata log on disk: an append-only file of CRC-framed record batches.
//!
//! Frame layout: `length: u32 BE` (of the payload), `crc32c: u32 BE` (of the payload),
//! payload = JSON array of [`MetadataRecord`]. A batch is the unit of atomicity: a change
//! that needs several records (a topic and its partitions) is one frame, so a torn write
//! can never leave half a topic behind.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::ControllerError;
use crate::record::MetadataRecord;

const FRAME_HEADER: usize = 8;
/// No single metadata change comes near this; a larger length means a corrupt frame.
const MAX_FRAME: usize = 64 * 1024 * 1024;

pub struct MetadataLog {
    path: PathBuf,
    file: File,
    len: u64,
}

impl MetadataLog {
    /// Opens the log in `dir` (created if missing) and returns every committed batch.
    ///
    /// Every append is fsynced before it is acknowledged and appends are serialised, so at
    /// a crash only the last frame can be half-written. That torn tail is cut, with a WARN
    /// naming how many bytes went. A bad frame with a valid frame after it is different: it
    /// was fsynced (the later append proves it) and then damaged, and cutting there would
    /// silently forget every later change — topics included, whose data the broker would
    /// then treat as strays. Such a log stops the start with an error naming the file and
    /// the byte position.
    pub fn open(dir: &Path) -> Result<(MetadataLog, Vec<Vec<MetadataRecord>>), ControllerError> {
        let created = !dir.exists();
        fs::create_dir_all(dir)
            .map_err(|e| ControllerError::io(format!("create {}", dir.display()), e))?;
        if created {
            // The new directory's entry lives in its parent: make it durable too.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let path = dir.join("metadata.log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| ControllerError::io(format!("open {}", path.display()), e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| ControllerError::io(format!("read {}", path.display()), e))?;

        let mut batches = Vec::new();
        let mut pos = 0usize;
        while let Some(batch) = decode_frame(&data[pos..]) {
            let (records, used) = batch;
            batches.push(records);
            pos += used;
        }
        if pos < data.len() {
            if let Some(next) = next_valid_frame(&data, pos) {
                return Err(ControllerError::Corrupt(format!(
                    "{}: the record at byte {pos} is damaged (bad length, checksum or \
                     encoding) but a valid record follows at byte {next}; refusing to start \
                     rather than drop committed metadata. Restore this file from a backup.",
                    path.display()
                )));
            }
            tracing::warn!(
                path = %path.display(),
                valid_bytes = pos,
                dropped_bytes = data.len() - pos,
                "metadata log ends in a torn write (the last append did not finish); cutting it"
            );
            file.set_len(pos as u64)
                .map_err(|e| ControllerError::io(format!("truncate {}", path.display()), e))?;
            file.sync_all()
                .map_err(|e| ControllerError::io(format!("fsync {}", path.display()), e))?;
        }
        // A freshly created file is only durable once its directory entry is.
        sync_dir(dir)?;
        Ok((
            MetadataLog {
                path,
                file,
                len: pos as u64,
            },
            batches,
        ))
    }

    /// Appends one batch and fsyncs it: once this returns, the change survives a crash.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), ControllerError> {
        let payload = serde_json::to_vec(records)
            .map_err(|e| ControllerError::Corrupt(format!("cannot encode record: {e}")))?;
        let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        frame.extend_from_slice(&payload);
        let res = self
            .file
            .write_all(&frame)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = res {
            // Leave no half-written frame behind for the next append to follow.
            let _ = self.file.set_len(self.len);
            return Err(ControllerError::io(
                format!("append to {}", self.path.display()),
                e,
            ));
        }
        self.len += frame.len() as u64;
        Ok(())
    }
}

/// Decodes the frame at the start of `data`, or `None` if it is incomplete or corrupt.
fn decode_frame(data: &[u8]) -> Option<(Vec<MetadataRecord>, usize)> {
    if data.len() < FRAME_HEADER {
        return None;
    }
    let len = u32::from_be_bytes(data[0..4].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(data[4..8].try_into().ok()?);
    if len > MAX_FRAME || data.len() < FRAME_HEADER + len {
        return None;
    }
    let payload = &data[FRAME_HEADER..FRAME_HEADER + len];
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let records = serde_json::from_slice(payload).ok()?;
    Some((records, FRAME_HEADER + len))
}

/// The position of the first frame after `bad` that decodes cleanly, if any. Every byte
/// position is tried because the damaged frame's own length cannot be trusted. This is
/// cheap: the JSON payloads are ASCII, so a length read from inside one is far over
/// `MAX_FRAME` and is rejected before any checksum is computed.
fn next_valid_frame(data: &[u8], bad: usize) -> Option<usize> {
    (bad + 1..data.len()).find(|&at| decode_frame(&data[at..]).is_some())
}

fn sync_dir(dir: &Path) -> Result<(), ControllerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ControllerError::io(format!("fsync {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node_id: n,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            incarnation: None,
            listeners: vec![],
        }
    }

    #[test]
    fn replays_appended_batches() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, batches) = MetadataLog::open(dir.path()).unwrap();
            assert!(batches.is_empty());
            log.append(&[rec(1)]).unwrap();
            log.append(&[rec(2), rec(3)]).unwrap();
        }
        let (_, batches) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(batches, vec![vec![rec(1)], vec![rec(2), rec(3)]]);
    }

    #[test]
    fn torn_tail_is_cut_at_every_position() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
            log.append(&[rec(1)]).unwrap();
            log.append(&[rec(2)]).unwrap();
        }
        let path = dir.path().join("metadata.log");
        let full = fs::read(&path).unwrap();
        let first_len = decode_frame(&full).unwrap().1;
        for cut in 0..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let (mut log, batches) = MetadataLog::open(dir.path()).unwrap();
            let expected = if cut >= first_len { 1 } else { 0 };
            assert_eq!(batches.len(), expected, "cut at {cut}");
            // The log must accept appends after the cut and replay them.
            log.append(&[rec(9)]).unwrap();
            drop(log);
            let (_, batches) = MetadataLog::open(dir.path()).unwrap();
            assert_eq!(batches.len(), expected + 1, "append after cut at {cut}");
            assert_eq!(batches.last().unwrap(), &vec![rec(9)]);
        }
    }

    /// Writes three frames and returns the file path and where each frame starts.
    fn three_frames(dir: &Path) -> (PathBuf, Vec<usize>) {
        let (mut log, _) = MetadataLog::open(dir).unwrap();
        log.append(&[rec(1)]).unwrap();
        log.append(&[rec(2)]).unwrap();
        log.append(&[rec(3)]).unwrap();
        drop(log);
        let path = dir.join("metadata.log");
        let full = fs::read(&path).unwrap();
        let mut starts = vec![0];
        while let Some((_, used)) = decode_frame(&full[*starts.last().unwrap()..]) {
            starts.push(starts.last().unwrap() + used);
        }
        assert_eq!(starts.len(), 4);
        (path, starts)
    }

    #[test]
    fn damaged_record_before_valid_ones_stops_the_start() {
        // A flipped payload byte in the first and in the middle frame, and a flipped
        // length byte (which hides where the next frame starts): all refuse to open, name
        // the file and the position, and leave the file exactly as it was.
        for (frame, offset) in [(0, FRAME_HEADER + 3), (1, FRAME_HEADER + 5), (1, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let (path, starts) = three_frames(dir.path());
            let mut full = fs::read(&path).unwrap();
            full[starts[frame] + offset] ^= 0x55;
            fs::write(&path, &full).unwrap();
            let err = match MetadataLog::open(dir.path()) {
                Ok(_) => panic!("frame {frame} offset {offset}: opened a damaged log"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(&format!("at byte {}", starts[frame])), "{err}");
            assert_eq!(fs::read(&path).unwrap(), full, "the file was changed");
        }
    }

    #[test]
    fn damaged_last_record_is_cut_as_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let (path, starts) = three_frames(dir.path());
        let mut full = fs::read(&path).unwrap();
        let last = full.len() - 2;
        full[last] ^= 0x55;
        fs::write(&path, &full).unwrap();
        let (_, batches) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(batches, vec![vec![rec(1)], vec![rec(2)]]);
        assert_eq!(fs::metadata(&path).unwrap().len(), starts[2] as u64);
    }

    #[test]
    fn zeroed_tail_is_cut() {
        // What a power loss can leave when the file size reached disk before the data.
        let dir = tempfile::tempdir().unwrap();
        let (path, starts) = three_frames(dir.path());
        let mut full = fs::read(&path).unwrap();
        full.extend_from_slice(&[0u8; 4096]);
        fs::write(&path, &full).unwrap();
        let (_, batches) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(batches.len(), 3);
        assert_eq!(fs::metadata(&path).unwrap().len(), starts[3] as u64);
    }
}

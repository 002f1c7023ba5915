//! The high-watermark checkpoint (`replication-offset-checkpoint`, as Kafka names it):
//! each partition's high watermark, written periodically and at shutdown, so that a
//! restarted replica does not show consumers records it cannot prove committed, nor
//! hide from them what was.
//!
//! Format, as Kafka's: a version line (0), a count line, then `topic partition offset`
//! per line. A missing or unreadable file only means starting from the log start: the
//! high watermark then catches up as soon as the followers fetch.

use std::collections::HashMap;
use std::path::Path;

use crate::error::BrokerError;

const FILE: &str = "replication-offset-checkpoint";

pub fn read(data_dir: &Path) -> HashMap<(String, i32), i64> {
    let path = data_dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the high watermark checkpoint; replicated partitions start from their log start");
            return HashMap::new();
        }
    };
    match parse(&text) {
        Some(m) => m,
        None => {
            tracing::warn!(file = %path.display(), "the high watermark checkpoint is malformed; replicated partitions start from their log start");
            HashMap::new()
        }
    }
}

fn parse(text: &str) -> Option<HashMap<(String, i32), i64>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = HashMap::with_capacity(count.min(1 << 16));
    for line in lines.by_ref().take(count) {
        let mut f = line.split_whitespace();
        let (topic, partition, offset) =
            (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
        out.insert((topic.to_string(), partition), offset);
    }
    (out.len() == count).then_some(out)
}

pub fn write(data_dir: &Path, entries: &[(String, i32, i64)]) -> Result<(), BrokerError> {
    let mut text = format!("0\n{}\n", entries.len());
    for (topic, partition, offset) in entries {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    crate::replica::write_replacing(&data_dir.join(FILE), text.as_bytes())?;
    crate::replica::sync_dir(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_a_torn_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("a".into(), 0, 5), ("b-c".into(), 3, 9)]).unwrap();
        let m = read(dir.path());
        assert_eq!(m.get(&("a".to_string(), 0)), Some(&5));
        assert_eq!(m.get(&("b-c".to_string(), 3)), Some(&9));
        assert_eq!(parse("0\n2\na 0 5\n"), None);
        assert!(read(&dir.path().join("missing")).is_empty());
    }
}

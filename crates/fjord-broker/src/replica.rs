//! The replica manager: the partitions this broker hosts, each a log plus the replication
//! state Kafka keeps beside it (leader, leader epoch, ISR, high watermark), and the signal
//! that wakes long-polling fetches when data arrives.
//!
//! The set of partitions follows the metadata image: [`ReplicaManager::reconcile`] opens
//! logs for partitions assigned here and deletes those whose topic is gone.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;

use fjord_controller::MetadataImage;
use fjord_log::{batch, AppendInfo, Log, LogConfig, LogError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::{code, BrokerError};
use crate::topic_config;

/// Kafka keeps the last five batches per producer to answer retries of in-flight requests.
const PRODUCER_BATCH_CACHE: usize = 5;
/// Written in each partition directory so a directory can never be mistaken for the
/// partition of a later topic with the same name.
const PARTITION_METADATA: &str = "partition.metadata";

/// Sequence bookkeeping for one idempotent producer on one partition.
#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    /// (first sequence, last sequence, base offset) of the latest batches, oldest first.
    batches: VecDeque<(i32, i32, i64)>,
}

/// What the idempotence check says about an incoming batch.
enum SequenceCheck {
    Append,
    /// A retry of a batch already in the log: answer with its original base offset.
    Duplicate(i64),
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub log: Arc<Log>,
    pub leader: AtomicI32,
    pub leader_epoch: AtomicI32,
    pub replicas: RwLock<Vec<i32>>,
    pub isr: RwLock<Vec<i32>>,
    /// Offsets below this are replicated to the whole ISR and visible to consumers.
    high_watermark: AtomicI64,
    /// Serialises appends with the idempotence check that precedes them.
    producers: Mutex<HashMap<i64, ProducerEntry>>,
    /// Whether `cleanup.policy` includes `delete`: a compact-only topic (such as
    /// `__consumer_offsets`) is never trimmed by time or size, as in Kafka.
    delete_retention: AtomicBool,
}

impl Partition {
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The current leader epoch, after checking the one a client believes in (KIP-320):
    /// newer than ours means our metadata lags (UNKNOWN_LEADER_EPOCH, retry), older means
    /// the client's does (FENCED_LEADER_EPOCH, refresh metadata). -1 skips the check.
    pub fn check_leader_epoch(&self, client_epoch: i32) -> Result<i32, i16> {
        let current = self.leader_epoch.load(Ordering::Acquire);
        if client_epoch < 0 || client_epoch == current {
            Ok(current)
        } else if client_epoch > current {
            Err(code::UNKNOWN_LEADER_EPOCH)
        } else {
            Err(code::FENCED_LEADER_EPOCH)
        }
    }

    /// Validates and appends a producer's batches; returns where they landed.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendInfo, BrokerError> {
        let mut producers = self.producers.lock();
        // Validate the whole input before looking at sequences, so that a corrupt batch
        // is reported as corrupt rather than as a sequence problem.
        let mut headers = Vec::new();
        for item in batch::iter(records) {
            let (header, _) = item?;
            headers.push(header);
        }
        if headers.is_empty() {
            return Err(BrokerError::Kafka(
                code::CORRUPT_MESSAGE,
                "produce request carried no record batch".into(),
            ));
        }
        let idempotent: Vec<_> = headers
            .iter()
            .filter(|h| h.producer_id >= 0 && h.base_sequence >= 0)
            .collect();
        if headers.len() == 1 && idempotent.len() == 1 {
            if let SequenceCheck::Duplicate(base) = check_sequence(&producers, idempotent[0])? {
                let h = idempotent[0];
                return Ok(AppendInfo {
                    base_offset: base,
                    last_offset: base + h.last_offset_delta as i64,
                    log_append_time: -1,
                    log_start_offset: self.log.log_start_offset(),
                });
            }
        } else {
            for h in &idempotent {
                check_sequence(&producers, h)?;
            }
        }
        let leader_epoch = self.leader_epoch.load(Ordering::Acquire);
        let info = self.log.append(records, leader_epoch, now_ms)?;
        let mut offset = info.base_offset;
        for h in &headers {
            if h.producer_id >= 0 && h.base_sequence >= 0 {
                let entry = producers.entry(h.producer_id).or_default();
                if entry.epoch != h.producer_epoch {
                    entry.epoch = h.producer_epoch;
                    entry.batches.clear();
                }
                let last_seq = h.base_sequence.wrapping_add(h.last_offset_delta);
                entry.batches.push_back((h.base_sequence, last_seq, offset));
                if entry.batches.len() > PRODUCER_BATCH_CACHE {
                    entry.batches.pop_front();
                }
            }
            offset += h.last_offset_delta as i64 + 1;
        }
        // One replica: everything appended is fully replicated at once. With followers this
        // becomes the minimum log end offset across the ISR.
        if self.isr.read().len() <= 1 {
            self.high_watermark
                .fetch_max(self.log.log_end_offset(), Ordering::AcqRel);
        }
        Ok(info)
    }

    /// Re-reads the high watermark after the log shrank or grew outside `append`.
    fn refresh_high_watermark(&self) {
        self.high_watermark
            .store(self.log.log_end_offset(), Ordering::Release);
    }
}

fn check_sequence(
    producers: &HashMap<i64, ProducerEntry>,
    h: &batch::BatchHeader,
) -> Result<SequenceCheck, BrokerError> {
    let Some(entry) = producers.get(&h.producer_id) else {
        // State for this producer was lost (restart) or it is new: accept its sequence.
        return Ok(SequenceCheck::Append);
    };
    if h.producer_epoch < entry.epoch {
        return Err(BrokerError::Kafka(
            code::INVALID_PRODUCER_EPOCH,
            format!(
                "Producer's epoch {} is older than the latest epoch {} for producer {}",
                h.producer_epoch, entry.epoch, h.producer_id
            ),
        ));
    }
    if h.producer_epoch > entry.epoch {
        return Ok(SequenceCheck::Append);
    }
    let last_seq = h.base_sequence.wrapping_add(h.last_offset_delta);
    if let Some(&(_, _, base)) = entry
        .batches
        .iter()
        .find(|(first, last, _)| *first == h.base_sequence && *last == last_seq)
    {
        return Ok(SequenceCheck::Duplicate(base));
    }
    let expected = entry
        .batches
        .back()
        .map(|(_, last, _)| if *last == i32::MAX { 0 } else { last + 1 })
        .unwrap_or(0);
    if h.base_sequence != expected {
        return Err(BrokerError::Kafka(
            code::OUT_OF_ORDER_SEQUENCE_NUMBER,
            format!(
                "Out of order sequence number for producer {}: {} (incoming seq. number), {} (expected)",
                h.producer_id, h.base_sequence, expected
            ),
        ));
    }
    Ok(SequenceCheck::Append)
}

pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    config: BrokerConfig,
    partitions: RwLock<BTreeMap<(String, i32), Arc<Partition>>>,
    /// Serialises reconciles so two metadata changes cannot open the same log twice.
    reconcile_lock: Mutex<()>,
    /// Bumped after every append; long-polling fetches wait on it.
    appended: watch::Sender<u64>,
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl ReplicaManager {
    pub fn new(config: &BrokerConfig) -> ReplicaManager {
        let (appended, _) = watch::channel(0);
        ReplicaManager {
            node_id: config.node_id,
            data_dir: config.data_dir.clone(),
            config: config.clone(),
            partitions: RwLock::new(BTreeMap::new()),
            reconcile_lock: Mutex::new(()),
            appended,
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Wakes every fetch waiting for data.
    pub fn notify_append(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Brings the hosted partitions in line with the metadata image: opens logs for new
    /// partitions, applies config and leadership changes, deletes logs of removed topics.
    pub fn reconcile(&self, image: &MetadataImage) -> Result<(), BrokerError> {
        let _guard = self.reconcile_lock.lock();
        let mut wanted = BTreeMap::new();
        for topic in image.topics.values() {
            for p in &topic.partitions {
                if p.replicas.contains(&self.node_id) {
                    wanted.insert((topic.name.clone(), p.partition), (topic, p));
                }
            }
        }

        let current: Vec<_> = self.partitions.read().keys().cloned().collect();
        for key in current {
            let stale = match (wanted.get(&key), self.get(&key.0, key.1)) {
                (Some((topic, _)), Some(existing)) => existing.topic_id != topic.topic_id,
                _ => true,
            };
            if stale {
                if let Some(p) = self.partitions.write().remove(&key) {
                    self.remove_partition(p)?;
                }
            }
        }

        let mut opened = RecoveryTotals::default();
        for ((name, index), (topic, p)) in &wanted {
            let log_config = topic_config::log_config(&self.config, &topic.configs);
            let delete_retention = topic_config::has_delete_policy(&self.config, &topic.configs);
            if let Some(existing) = self.get(name, *index) {
                if existing.log.config() != log_config {
                    existing.log.update_config(log_config);
                }
                existing
                    .delete_retention
                    .store(delete_retention, Ordering::Release);
                existing.leader.store(p.leader, Ordering::Release);
                existing
                    .leader_epoch
                    .store(p.leader_epoch, Ordering::Release);
                *existing.replicas.write() = p.replicas.clone();
                *existing.isr.write() = p.isr.clone();
                continue;
            }
            let dir = partition_dir(&self.data_dir, name, *index);
            prepare_dir(&dir, &topic.topic_id)?;
            let log = Log::open(&dir, log_config)?;
            opened.add(log.recovery_summary());
            let leo = log.log_end_offset();
            let partition = Arc::new(Partition {
                topic: name.clone(),
                topic_id: topic.topic_id,
                index: *index,
                log: Arc::new(log),
                leader: AtomicI32::new(p.leader),
                leader_epoch: AtomicI32::new(p.leader_epoch),
                replicas: RwLock::new(p.replicas.clone()),
                isr: RwLock::new(p.isr.clone()),
                high_watermark: AtomicI64::new(leo),
                producers: Mutex::new(HashMap::new()),
                delete_retention: AtomicBool::new(delete_retention),
            });
            self.partitions
                .write()
                .insert((name.clone(), *index), partition);
        }
        opened.report();
        self.remove_strays(&wanted)?;
        Ok(())
    }

    fn remove_partition(&self, p: Arc<Partition>) -> Result<(), BrokerError> {
        tracing::info!(topic = %p.topic, partition = p.index, "deleting partition");
        // Readers holding the partition keep their file handles; the directory goes now.
        let dir = p.log.dir().to_path_buf();
        match Arc::try_unwrap(p) {
            Ok(p) => match Arc::try_unwrap(p.log) {
                Ok(log) => log.delete()?,
                Err(_) => remove_dir(&dir)?,
            },
            Err(_) => remove_dir(&dir)?,
        }
        Ok(())
    }

    /// Deletes partition directories left by a topic deleted while the broker was down
    /// (or killed between committing the delete and removing the files). Only directories
    /// Fjord made itself (they hold `partition.metadata`) are ever touched.
    fn remove_strays(
        &self,
        wanted: &BTreeMap<
            (String, i32),
            (
                &fjord_controller::TopicImage,
                &fjord_controller::PartitionImage,
            ),
        >,
    ) -> Result<(), BrokerError> {
        let entries = match fs::read_dir(&self.data_dir) {
            Ok(e) => e,
            Err(e) => {
                return Err(BrokerError::io(
                    format!("list {}", self.data_dir.display()),
                    e,
                ))
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.join(PARTITION_METADATA).is_file() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((topic, index)) = name
                .rsplit_once('-')
                .and_then(|(t, i)| i.parse::<i32>().ok().map(|i| (t.to_string(), i)))
            else {
                continue;
            };
            if !wanted.contains_key(&(topic.clone(), index)) {
                tracing::info!(dir = %path.display(), "removing directory of a deleted partition");
                remove_dir(&path)?;
            }
        }
        Ok(())
    }

    /// Flushes and closes every log so the next start skips recovery.
    pub fn shutdown(&self) {
        for p in self.all() {
            if let Err(e) = p.log.close() {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush at shutdown failed");
            }
        }
    }

    /// Retention: deletes expired segments; run every log.retention.check.interval.ms.
    pub fn apply_retention(&self, now_ms: i64) {
        for p in self.all() {
            if !p.delete_retention.load(Ordering::Acquire) {
                continue;
            }
            match p.log.apply_retention(now_ms) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                }
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                }
            }
        }
    }

    /// flush.ms policy for every partition.
    pub fn flush_due(&self, now_ms: i64) {
        for p in self.all() {
            if let Err(e) = p.log.flush_if_due(now_ms) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "scheduled flush failed");
            }
        }
    }

    /// DeleteRecords on one partition; returns the new log start offset.
    pub fn delete_records(&self, p: &Partition, offset: i64) -> Result<i64, BrokerError> {
        let target = if offset == -1 {
            p.high_watermark()
        } else {
            offset
        };
        if target > p.high_watermark() || target < 0 {
            return Err(BrokerError::Kafka(
                code::OFFSET_OUT_OF_RANGE,
                format!(
                    "Cannot delete records before offset {target}: the high watermark is {}",
                    p.high_watermark()
                ),
            ));
        }
        let start = p.log.delete_records_before(target)?;
        p.refresh_high_watermark();
        Ok(start)
    }

    pub fn log_config_for(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        topic_config::log_config(&self.config, overrides)
    }
}

/// Creates the partition directory, or clears it if it belonged to an older topic of the
/// same name, and records which topic it belongs to.
fn prepare_dir(dir: &Path, topic_id: &Uuid) -> Result<(), BrokerError> {
    let meta = dir.join(PARTITION_METADATA);
    let expected = format!("version: 0\ntopic_id: {topic_id}\n");
    match fs::read_to_string(&meta) {
        Ok(existing) if existing == expected => return Ok(()),
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "directory belongs to an older topic of the same name; removing it");
            remove_dir(dir)?;
        }
        Err(_) => {}
    }
    fs::create_dir_all(dir).map_err(|e| BrokerError::io(format!("create {}", dir.display()), e))?;
    fs::write(&meta, expected)
        .map_err(|e| BrokerError::io(format!("write {}", meta.display()), e))?;
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), BrokerError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BrokerError::io(format!("remove {}", dir.display()), e)),
    }
}

/// What opening partition logs found, summed for one line at start (each log also reports
/// its own recovery).
#[derive(Default)]
struct RecoveryTotals {
    logs: usize,
    recovered: usize,
    segments_scanned: usize,
    bytes_scanned: u64,
    bytes_truncated: u64,
    ignored_files: usize,
}

impl RecoveryTotals {
    fn add(&mut self, s: &fjord_log::RecoverySummary) {
        self.logs += 1;
        self.recovered += usize::from(s.recovery_ran());
        self.segments_scanned += s.segments_scanned;
        self.bytes_scanned += s.bytes_scanned;
        self.bytes_truncated += s.bytes_truncated;
        self.ignored_files += s.ignored_files.len();
    }

    fn report(&self) {
        if self.logs == 0 {
            return;
        }
        if self.recovered == 0 && self.ignored_files == 0 {
            tracing::info!(
                logs = self.logs,
                "opened partition logs after a clean shutdown"
            );
            return;
        }
        tracing::info!(
            logs = self.logs,
            recovered = self.recovered,
            segments_scanned = self.segments_scanned,
            bytes_scanned = self.bytes_scanned,
            bytes_truncated = self.bytes_truncated,
            ignored_files = self.ignored_files,
            "opened partition logs; those without a clean shutdown were recovered"
        );
    }
}

/// Every storage failure of a log (`LogError::Io`, and `LogError::Offline` once an fsync
/// failed) carries KAFKA_STORAGE_ERROR as its code.
impl From<LogError> for BrokerError {
    fn from(e: LogError) -> Self {
        BrokerError::Kafka(e.kafka_code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn partition(dir: &Path) -> Partition {
        Partition {
            topic: "t".into(),
            topic_id: Uuid::new_v4(),
            index: 0,
            log: Arc::new(Log::open(dir, LogConfig::default()).unwrap()),
            leader: AtomicI32::new(1),
            leader_epoch: AtomicI32::new(3),
            replicas: RwLock::new(vec![1]),
            isr: RwLock::new(vec![1]),
            high_watermark: AtomicI64::new(0),
            producers: Mutex::new(HashMap::new()),
            delete_retention: AtomicBool::new(true),
        }
    }

    /// A batch of `n` records from an idempotent producer, as a client encodes it.
    fn idempotent_batch(pid: i64, epoch: i16, first_seq: i32, n: i32) -> BytesMut {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: first_seq + i,
                timestamp: 1000,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf
    }

    #[test]
    fn retried_batch_gets_its_original_offset_and_gaps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        let first = p.append(&mut idempotent_batch(7, 0, 0, 3), 0).unwrap();
        let second = p.append(&mut idempotent_batch(7, 0, 3, 2), 0).unwrap();
        assert_eq!((first.base_offset, second.base_offset), (0, 3));
        // A retry of the first batch: same answer, nothing appended.
        let retry = p.append(&mut idempotent_batch(7, 0, 0, 3), 0).unwrap();
        assert_eq!(retry.base_offset, 0);
        assert_eq!(p.log.log_end_offset(), 5);
        assert_eq!(p.high_watermark(), 5);
        // A gap in the sequence.
        let err = p.append(&mut idempotent_batch(7, 0, 9, 1), 0).unwrap_err();
        assert_eq!(err.kafka_code(), code::OUT_OF_ORDER_SEQUENCE_NUMBER);
        // A zombie with an older epoch, after the producer bumped it.
        p.append(&mut idempotent_batch(7, 1, 0, 1), 0).unwrap();
        let err = p.append(&mut idempotent_batch(7, 0, 5, 1), 0).unwrap_err();
        assert_eq!(err.kafka_code(), code::INVALID_PRODUCER_EPOCH);
        assert_eq!(p.log.log_end_offset(), 6);
        // Another producer is independent.
        assert_eq!(
            p.append(&mut idempotent_batch(8, 0, 0, 1), 0)
                .unwrap()
                .base_offset,
            6
        );
    }

    /// A log that refuses writes (here closed; after a failed fsync it is offline the same
    /// way) answers produce with KAFKA_STORAGE_ERROR.
    #[test]
    fn offline_log_answers_produce_with_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        p.append(&mut idempotent_batch(7, 0, 0, 1), 0).unwrap();
        p.log.close().unwrap();
        let err = p.append(&mut idempotent_batch(7, 0, 1, 1), 0).unwrap_err();
        assert_eq!(err.kafka_code(), code::KAFKA_STORAGE_ERROR);
        let offline = LogError::Offline {
            dir: "t-0".into(),
            reason: "fsync failed".into(),
        };
        assert_eq!(
            BrokerError::from(offline).kafka_code(),
            code::KAFKA_STORAGE_ERROR
        );
    }

    #[test]
    fn leader_epoch_checks_follow_kip_320() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        assert_eq!(p.check_leader_epoch(-1), Ok(3));
        assert_eq!(p.check_leader_epoch(3), Ok(3));
        assert_eq!(p.check_leader_epoch(4), Err(code::UNKNOWN_LEADER_EPOCH));
        assert_eq!(p.check_leader_epoch(2), Err(code::FENCED_LEADER_EPOCH));
    }
}

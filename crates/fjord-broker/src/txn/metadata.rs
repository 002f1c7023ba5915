//! The transaction coordinator's state machine for one transactional id: what each request
//! does to the id's metadata, decided as Kafka's coordinator decides it, for classic
//! transactions (transaction version 1) and for KIP-890's version 2. Pure: no I/O, no
//! clock (`now_ms` is a parameter), no locks, no async. The coordinator around it owns the
//! map of ids, the log writes, the markers and the answers.
//!
//! # Driving it
//!
//! 1. Look up the id (`Option<&mut TxnMetadata>`, None when unknown) and call an operation:
//!    [`init_producer_id`], [`add_partitions`] (AddPartitionsToTxn, and AddOffsetsToTxn
//!    with the group's `__consumer_offsets` partition), [`end_txn`], [`complete_markers`],
//!    [`abort_timed_out`], [`expire`].
//! 2. `Err(code)`: answer with that code; nothing changed. `Ok(None)` (where an operation
//!    can return it): answer NONE at once; nothing to write.
//! 3. A [`Transit`]: the metadata is now marked pending, and every other request for the
//!    id gets CONCURRENT_TRANSACTIONS until the transit ends. Write [`Transit::record`]
//!    under [`super::log::encode_key`] to partition [`super::log::partition_for`] of
//!    `__transaction_state` (a None record is a tombstone), with acks=all.
//! 4. Written: [`complete_transition`] applies it and returns the [`Then`] to carry out
//!    (answer the client, write markers, drop the id). Not written: [`abort_transition`]
//!    leaves the metadata as the log has it, and the client gets the write's error mapped
//!    to a coordinator code (Kafka answers NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE).
//!    Every transit ends exactly once, in one of the two.
//! 5. [`Then::WriteMarkers`]: write the commit or abort markers, with the metadata's
//!    producer id and epoch, to every partition in it; then [`complete_markers`] gives the
//!    transit to CompleteCommit or CompleteAbort. If that write fails, call it again later.
//!
//! On loading a partition of `__transaction_state`, rebuild each id with [`from_log`] from
//! its last record (a tombstone drops it), then finish every id [`needs_markers`] names:
//! write its markers and [`complete_markers`]. Transits prepared before a reload must be
//! dropped, not completed (Kafka compares coordinator epochs for this).
//!
//! A periodic task calls [`abort_timed_out`] and [`expire`] for every id.
//!
//! The handlers answer PRODUCER_FENCED as INVALID_PRODUCER_EPOCH to clients too old to
//! know it (InitProducerId below v4; EndTxn, AddPartitionsToTxn, AddOffsetsToTxn below
//! v2), and INVALID_REQUEST for an empty transactional id in AddPartitionsToTxn and EndTxn.
//!
//! # Transaction version 2
//!
//! A client speaks version 2 when the cluster finalized `transaction.version` 2: EndTxn
//! v5+, and partitions added by the brokers its writes reach (AddPartitionsToTxn v4+
//! without verify_only) instead of by itself. Then every EndTxn bumps the epoch: the
//! markers carry the new one, so a late write of the ended transaction is refused by
//! every partition, and the producer goes on at the epoch EndTxn answers. When the epoch
//! runs out, EndTxn takes a new producer id, which the transaction moves to once its
//! markers are written (epoch 0). A retry of an EndTxn whose answer was lost is known by
//! its epoch, one below the id's, and answered as the first was. An abort may also come
//! with no transaction open (the client cannot know whether its writes reached a
//! partition): it bumps the epoch all the same.
//!
//! # Left out
//!
//! Two-phase commit (KIP-939).
//!
//! Kafka bumps the epoch in memory before a fencing abort is written, and keeps it (with a
//! flag not to bump twice) if the write fails. Here a failed write leaves the metadata as
//! the log has it, like any other failed transit: the next fence bumps to the same epoch,
//! and until one is written the fenced producer is no more fenced than a coordinator
//! restart would leave it in Kafka.

use std::collections::BTreeSet;

use super::log::{TxnLogValue, MAX_ID_BYTES};
use crate::error::code;

/// A producer id or epoch that was never assigned (Kafka's RecordBatch constants).
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Kafka's `transaction.max.timeout.ms` default: 15 minutes.
pub const DEFAULT_MAX_TIMEOUT_MS: i32 = 900_000;
/// Kafka's `transactional.id.expiration.ms` default: 7 days.
pub const DEFAULT_EXPIRATION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Where a transactional id stands. The numbers are the state bytes of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction open: after InitProducerId, or never used.
    Empty,
    /// A transaction is open: partitions were added.
    Ongoing,
    /// Commit decided and written; markers are being written.
    PrepareCommit,
    /// Abort decided and written; markers are being written.
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    /// Expired: the id is being removed. Never written as a value (a tombstone is).
    Dead,
    /// Kafka's marker for "fencing the producer before aborting". Neither Kafka nor Fjord
    /// writes it: here a fence is directly a transit to PrepareAbort.
    PrepareEpochFence,
}

impl TxnState {
    /// The state byte of the log value.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// No transaction open: the states InitProducerId starts from and expiry removes.
    fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// One transactional id as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last InitProducerId (Kafka's previousProducerId): the
    /// old one after a rotation, else the same. Lets a producer that missed the answer to
    /// a rotation retry it (KIP-360). Not in a version 0 record: -1 after loading.
    pub last_producer_id: i64,
    /// -1 until the first InitProducerId for the id is written.
    pub producer_epoch: i16,
    /// The epoch before the last InitProducerId that named its expected epoch, so that a
    /// retry of it gets the same answer (KIP-360); -1 otherwise and after loading.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction began (its first partition); -1 when none is open.
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The transaction version of the client's last AddPartitionsToTxn or EndTxn: 2 or more
    /// bumps the epoch at every end (KIP-890); below is classic.
    pub client_version: i16,
    /// Transaction version 2 only: the producer id a decided transaction moves to once its
    /// markers are written, when its epoch ran out; -1 otherwise.
    pub next_producer_id: i64,
    /// The state a transit being written leads to.
    pending: Option<TxnState>,
}

impl TxnMetadata {
    /// An id seen for the first time: a producer id, no epoch yet. Kept by the coordinator
    /// while its first InitProducerId is written, and after, if that write fails (as
    /// Kafka keeps it; the next InitProducerId reuses the producer id).
    fn fresh(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: 0,
            next_producer_id: NO_PRODUCER_ID,
            pending: None,
        }
    }

    /// Whether this id's transactions end with an epoch bump (transaction version 2).
    pub fn bumps_epoch(&self) -> bool {
        self.client_version >= 2
    }

    /// The producer id and epoch to go on with once the decided transaction is complete:
    /// what EndTxn v5+ answers.
    pub fn producer_after_markers(&self) -> (i64, i16) {
        if self.next_producer_id != NO_PRODUCER_ID {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
    }

    /// The state a transit being written leads to, if one is.
    pub fn pending(&self) -> Option<TxnState> {
        self.pending
    }

    /// The partitions grouped by topic, as the log and DescribeTransactions list them.
    pub fn partitions_by_topic(&self) -> Vec<(String, Vec<i32>)> {
        let mut out: Vec<(String, Vec<i32>)> = Vec::new();
        for (topic, p) in &self.partitions {
            match out.last_mut() {
                Some((t, ps)) if t == topic => ps.push(*p),
                _ => out.push((topic.clone(), vec![*p])),
            }
        }
        out
    }
}

impl From<&TxnMetadata> for TxnLogValue {
    fn from(md: &TxnMetadata) -> Self {
        TxnLogValue {
            partitions: if md.state == TxnState::Empty {
                Vec::new()
            } else {
                md.partitions_by_topic()
            },
            last_update_ms: md.last_update_ms,
            start_ms: md.start_ms,
            previous_producer_id: md.last_producer_id,
            next_producer_id: md.next_producer_id,
            client_transaction_version: md.client_version,
            ..TxnLogValue::new(md.producer_id, md.producer_epoch, md.timeout_ms, md.state)
        }
    }
}

/// The metadata of `transactional_id` loaded from its last record.
///
/// A PrepareEpochFence record (which neither Kafka nor Fjord writes) loads as Ongoing:
/// the fence never happened, the transaction is still open, and the next InitProducerId
/// or timeout fences it properly. A Dead record (expiry writes a tombstone instead) loads
/// as Dead, which every operation treats as an unknown id.
pub fn from_log(transactional_id: &str, v: &TxnLogValue) -> TxnMetadata {
    let state = match v.state {
        TxnState::PrepareEpochFence => TxnState::Ongoing,
        s => s,
    };
    let partitions = if state == TxnState::Empty {
        BTreeSet::new()
    } else {
        v.partitions
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect()
    };
    TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id: v.producer_id,
        last_producer_id: v.previous_producer_id,
        producer_epoch: v.producer_epoch,
        last_producer_epoch: NO_PRODUCER_EPOCH,
        timeout_ms: v.transaction_timeout_ms,
        state,
        partitions,
        start_ms: v.start_ms,
        last_update_ms: v.last_update_ms,
        client_version: v.client_transaction_version,
        next_producer_id: v.next_producer_id,
        pending: None,
    }
}

/// What to do once a transit's record is written and [`complete_transition`] applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Answer InitProducerId with this producer id and epoch.
    ReplyProducer {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Answer NONE (AddPartitionsToTxn, AddOffsetsToTxn).
    ReplyNone,
    /// The outcome is decided and durable. Answer `reply` to the client that asked, if
    /// one did: NONE to EndTxn, CONCURRENT_TRANSACTIONS to an InitProducerId that had to
    /// abort an open transaction first (it retries and then gets its epoch); None for a
    /// timeout. Then write the markers and call [`complete_markers`].
    WriteMarkers { commit: bool, reply: Option<i16> },
    /// The transaction is complete; nobody waits for an answer.
    Completed,
    /// The id expired (its tombstone is written): drop it from the coordinator.
    Remove,
}

/// A change to one id's metadata that takes effect once its record is in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transit {
    /// The metadata as it will be once written.
    pub target: TxnMetadata,
    pub then: Then,
    /// The metadata it was prepared from, to refuse completing it on anything else.
    from: TxnMetadata,
}

impl Transit {
    /// The value to write under the id's key; None means a tombstone.
    pub fn record(&self) -> Option<TxnLogValue> {
        (self.target.state != TxnState::Dead).then(|| TxnLogValue::from(&self.target))
    }
}

/// What [`init_producer_id`] asks of the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    /// Set when the id was unknown: keep this under the id before writing, so that the
    /// id's other requests see the pending transit.
    pub new_entry: Option<TxnMetadata>,
    pub transit: Transit,
}

/// Marks `md` pending and returns the transit from it to `target`.
fn begin(md: &mut TxnMetadata, mut target: TxnMetadata, then: Then) -> Transit {
    let mut from = md.clone();
    from.pending = None;
    target.pending = None;
    md.pending = Some(target.state);
    Transit { target, then, from }
}

/// Epochs this high are not handed out: the coordinator must always be able to bump once
/// more to fence a producer (Kafka's isEpochExhausted).
fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// InitProducerId with a transactional id: the producer's id and a new epoch, which
/// fences every earlier producer of the id.
///
/// `expected` is the producer id and epoch the request carries when the producer already
/// had one (KIP-360), None for -1/-1 (INVALID_REQUEST if only one of the two is -1).
/// `new_producer_id` allocates a producer id; it is called only for an unknown id or when
/// the epoch is exhausted, and its error is answered.
pub fn init_producer_id(
    current: Option<&mut TxnMetadata>,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    max_timeout_ms: i32,
    new_producer_id: &mut dyn FnMut() -> Result<i64, i16>,
    now_ms: i64,
) -> Result<InitPlan, i16> {
    // A null id (idempotence only) never reaches the coordinator; an empty one is refused
    // as the Java producer refuses it, and one too long for a log key could not be stored.
    if transactional_id.is_empty() || transactional_id.len() > MAX_ID_BYTES {
        return Err(code::INVALID_REQUEST);
    }
    // Both -1 means no producer yet; only one of them -1 is malformed.
    let expected = match expected {
        Some((NO_PRODUCER_ID, NO_PRODUCER_EPOCH)) => None,
        Some((NO_PRODUCER_ID, _)) | Some((_, NO_PRODUCER_EPOCH)) => {
            return Err(code::INVALID_REQUEST)
        }
        e => e,
    };
    if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
        return Err(code::INVALID_TRANSACTION_TIMEOUT);
    }
    match current {
        Some(md) if md.state == TxnState::Dead && md.pending.is_none() => {
            // The id expired while the coordinator still holds it: it starts over.
            *md = TxnMetadata::fresh(transactional_id, new_producer_id()?, timeout_ms, now_ms);
            let transit = prepare_init(md, timeout_ms, expected, new_producer_id, now_ms)?;
            Ok(InitPlan {
                new_entry: None,
                transit,
            })
        }
        Some(md) => {
            let transit = prepare_init(md, timeout_ms, expected, new_producer_id, now_ms)?;
            Ok(InitPlan {
                new_entry: None,
                transit,
            })
        }
        None => {
            let mut md =
                TxnMetadata::fresh(transactional_id, new_producer_id()?, timeout_ms, now_ms);
            let transit = prepare_init(&mut md, timeout_ms, expected, new_producer_id, now_ms)?;
            Ok(InitPlan {
                new_entry: Some(md),
                transit,
            })
        }
    }
}

fn prepare_init(
    md: &mut TxnMetadata,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    new_producer_id: &mut dyn FnMut() -> Result<i64, i16>,
    now_ms: i64,
) -> Result<Transit, i16> {
    if md.pending.is_some() {
        return Err(code::CONCURRENT_TRANSACTIONS);
    }
    if let Some((pid, epoch)) = expected {
        // A producer that names its id and epoch keeps going only if it is this id's
        // producer: the id has no epoch yet (it recovers from an unknown producer id and
        // may take the new one), it names the current producer id (its epoch is checked
        // below), or it names the one before a rotation with the exhausted epoch it had
        // (a retry of the rotation whose answer it missed).
        let known = md.producer_epoch == NO_PRODUCER_EPOCH
            || pid == md.producer_id
            || (pid == md.last_producer_id && epoch_exhausted(epoch));
        if !known {
            return Err(code::PRODUCER_FENCED);
        }
    }
    match md.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => Err(code::CONCURRENT_TRANSACTIONS),
        TxnState::Ongoing => {
            // Abort the open transaction first, at a bumped epoch that fences its producer.
            // That epoch is never handed out: the client is told to retry, and its retry
            // bumps again (rotating the producer id if this bump exhausted the epochs).
            Ok(fence(md, now_ms, Some(code::CONCURRENT_TRANSACTIONS)))
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let rotate = epoch_exhausted(md.producer_epoch)
                && expected.is_none_or(|(_, e)| e == md.producer_epoch);
            let (producer_id, epoch, last_epoch) = if rotate {
                let last = if expected.is_some() {
                    md.producer_epoch
                } else {
                    NO_PRODUCER_EPOCH
                };
                (new_producer_id()?, 0, last)
            } else {
                // Not exhausted, so the bump below cannot pass i16::MAX - 1; an exhausted
                // epoch gets here only for a retry, which does not bump.
                let bumped = md.producer_epoch.saturating_add(1);
                let (epoch, last) = match expected {
                    None => (bumped, NO_PRODUCER_EPOCH),
                    // The producer goes on after an error and nobody took the id meanwhile
                    // (or the id has no epoch yet): bump, remembering the epoch it had.
                    Some((_, e))
                        if md.producer_epoch == NO_PRODUCER_EPOCH || e == md.producer_epoch =>
                    {
                        (bumped, md.producer_epoch)
                    }
                    // The retry of a bump whose answer was lost: the same answer again.
                    Some((_, e)) if e == md.last_producer_epoch => {
                        (md.producer_epoch, md.last_producer_epoch)
                    }
                    Some(_) => return Err(code::PRODUCER_FENCED),
                };
                (md.producer_id, epoch, last)
            };
            let target = TxnMetadata {
                producer_id,
                last_producer_id: md.producer_id,
                producer_epoch: epoch,
                last_producer_epoch: last_epoch,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now_ms,
                ..md.clone()
            };
            Ok(begin(
                md,
                target,
                Then::ReplyProducer {
                    producer_id,
                    producer_epoch: epoch,
                },
            ))
        }
        // Dead is handled by the caller; PrepareEpochFence is never a current state here.
        TxnState::Dead | TxnState::PrepareEpochFence => Err(code::CONCURRENT_TRANSACTIONS),
    }
}

/// The transit that aborts `md`'s open transaction at a bumped epoch, fencing its producer.
fn fence(md: &mut TxnMetadata, now_ms: i64, reply: Option<i16>) -> Transit {
    let target = TxnMetadata {
        // A transaction runs at an epoch InitProducerId handed out, at most i16::MAX - 1
        // (see `epoch_exhausted`), so the bump reaches at most i16::MAX. Saturating only
        // keeps a forged record at i16::MAX from overflowing.
        producer_epoch: md.producer_epoch.saturating_add(1),
        // The fenced producer's epoch is not one a KIP-360 retry may come back with.
        last_producer_epoch: NO_PRODUCER_EPOCH,
        state: TxnState::PrepareAbort,
        last_update_ms: now_ms,
        ..md.clone()
    };
    begin(
        md,
        target,
        Then::WriteMarkers {
            commit: false,
            reply,
        },
    )
}

/// The metadata of an id the request may act on: unknown and expired ids are the same.
fn live(current: Option<&mut TxnMetadata>) -> Result<&mut TxnMetadata, i16> {
    match current {
        Some(md) if md.state != TxnState::Dead => Ok(md),
        _ => Err(code::INVALID_PRODUCER_ID_MAPPING),
    }
}

/// Checks that the request comes from the id's current producer.
fn check_producer(md: &TxnMetadata, producer_id: i64, producer_epoch: i16) -> Result<(), i16> {
    if md.producer_id != producer_id {
        return Err(code::INVALID_PRODUCER_ID_MAPPING);
    }
    if md.producer_epoch != producer_epoch {
        return Err(code::PRODUCER_FENCED);
    }
    if md.pending.is_some() {
        return Err(code::CONCURRENT_TRANSACTIONS);
    }
    Ok(())
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): the
/// partitions join the open transaction, which begins here if none is open. Ok(None) when
/// they all are in it already. `client_version` is the transaction version of the client
/// (2 when a broker adds the partitions for it).
pub fn add_partitions(
    current: Option<&mut TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    client_version: i16,
    now_ms: i64,
) -> Result<Option<Transit>, i16> {
    let md = live(current)?;
    check_producer(md, producer_id, producer_epoch)?;
    match md.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
            return Err(code::CONCURRENT_TRANSACTIONS)
        }
        TxnState::Ongoing if partitions.iter().all(|p| md.partitions.contains(p)) => {
            return Ok(None)
        }
        _ => {}
    }
    let start_ms = if md.state.is_idle() {
        now_ms
    } else {
        md.start_ms
    };
    let mut all = md.partitions.clone();
    all.extend(partitions.iter().cloned());
    let target = TxnMetadata {
        state: TxnState::Ongoing,
        partitions: all,
        start_ms,
        last_update_ms: now_ms,
        client_version,
        ..md.clone()
    };
    Ok(Some(begin(md, target, Then::ReplyNone)))
}

/// EndTxn: commit or abort the open transaction. Ok(None) for a retry of an EndTxn that
/// already completed the same way (answer NONE, with [`TxnMetadata::producer_after_markers`]
/// of the id as it is). `client_version` is 2 for EndTxn v5+ (KIP-890), which bumps the
/// epoch; `new_producer_id` is called only when that bump finds the epoch exhausted.
pub fn end_txn(
    current: Option<&mut TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    client_version: i16,
    new_producer_id: &mut dyn FnMut() -> Result<i64, i16>,
    now_ms: i64,
) -> Result<Option<Transit>, i16> {
    let md = live(current)?;
    let bump = client_version >= 2;
    // Version 2 retries: the answer was the bumped epoch, one above the request's; or,
    // after a rotation, epoch 0 of the new id for the old id's last epoch. A fence that
    // bumped to i16::MAX is no retry: that epoch is never handed out (the producer must
    // start over, and InitProducerId rotates the id).
    let retry_bump = md.bumps_epoch()
        && i32::from(producer_epoch) + 1 == i32::from(md.producer_epoch)
        && md.producer_after_markers() != (md.producer_id, i16::MAX);
    let retry_rotation = md.bumps_epoch()
        && md.producer_epoch == 0
        && md.last_producer_id == producer_id
        && producer_epoch == i16::MAX - 1;
    let retry = retry_bump || retry_rotation;
    if md.producer_id != producer_id && !retry_rotation {
        return Err(code::INVALID_PRODUCER_ID_MAPPING);
    }
    let same_epoch = producer_epoch == md.producer_epoch;
    // Once the id bumps at each end, the same epoch is the next EndTxn, not a retry.
    let epoch_ok = match md.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort if md.bumps_epoch() => {
            retry_bump || same_epoch
        }
        TxnState::CompleteCommit | TxnState::CompleteAbort if md.bumps_epoch() => {
            retry || same_epoch
        }
        _ => same_epoch,
    };
    if !epoch_ok {
        return Err(code::PRODUCER_FENCED);
    }
    if md.pending.is_some() {
        return Err(code::CONCURRENT_TRANSACTIONS);
    }
    let same = |state_commits: bool| state_commits == commit;
    let idle = md.state.is_idle();
    match md.state {
        TxnState::Ongoing => prepare_end(md, commit, bump, new_producer_id, now_ms).map(Some),
        // The producer already holds the bumped epoch and ends its next transaction while
        // the markers of the last are still being written: it waits for them (Kafka
        // answers PRODUCER_FENCED here, which is fatal to a producer nobody fenced).
        TxnState::PrepareCommit | TxnState::PrepareAbort if md.bumps_epoch() && !retry => {
            Err(code::CONCURRENT_TRANSACTIONS)
        }
        TxnState::CompleteCommit if same(true) && (retry || !md.bumps_epoch()) => Ok(None),
        TxnState::CompleteAbort if same(false) && (retry || !md.bumps_epoch()) => Ok(None),
        // Version 2: an abort with nothing open (its writes may never have reached a
        // partition) still ends the transaction, bumping the epoch.
        _ if idle && bump && !commit && !retry => {
            prepare_end(md, false, true, new_producer_id, now_ms).map(Some)
        }
        // The markers of the same decision are still being written.
        TxnState::PrepareCommit if same(true) => Err(code::CONCURRENT_TRANSACTIONS),
        TxnState::PrepareAbort if same(false) => Err(code::CONCURRENT_TRANSACTIONS),
        TxnState::PrepareEpochFence => Err(code::CONCURRENT_TRANSACTIONS),
        // The other decision, or no transaction open.
        _ => Err(code::INVALID_TXN_STATE),
    }
}

/// The transit to PrepareCommit or PrepareAbort; with `bump`, at the next epoch (and, when
/// this one is exhausted, toward a new producer id).
fn prepare_end(
    md: &mut TxnMetadata,
    commit: bool,
    bump: bool,
    new_producer_id: &mut dyn FnMut() -> Result<i64, i16>,
    now_ms: i64,
) -> Result<Transit, i16> {
    let mut target = TxnMetadata {
        state: if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        },
        last_update_ms: now_ms,
        ..md.clone()
    };
    if bump {
        // The producer never holds an epoch above i16::MAX - 1 (`epoch_exhausted`), so the
        // markers' epoch is at most i16::MAX; saturating guards a forged record.
        target.producer_epoch = md.producer_epoch.saturating_add(1);
        target.last_producer_epoch = md.producer_epoch;
        target.client_version = target.client_version.max(2);
        target.next_producer_id = if epoch_exhausted(md.producer_epoch) {
            new_producer_id()?
        } else {
            NO_PRODUCER_ID
        };
    }
    let then = Then::WriteMarkers {
        commit,
        reply: Some(code::NONE),
    };
    Ok(begin(md, target, then))
}

/// After every marker of a PrepareCommit or PrepareAbort is written: the transit to
/// CompleteCommit or CompleteAbort, with the partitions cleared.
pub fn complete_markers(md: &mut TxnMetadata, now_ms: i64) -> Result<Transit, i16> {
    if md.pending.is_some() {
        return Err(code::CONCURRENT_TRANSACTIONS);
    }
    let state = match md.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        _ => return Err(code::INVALID_TXN_STATE),
    };
    let mut target = TxnMetadata {
        state,
        partitions: BTreeSet::new(),
        last_update_ms: now_ms,
        ..md.clone()
    };
    if md.next_producer_id != NO_PRODUCER_ID {
        // The epoch ran out: the markers went out under the old id, the producer goes on
        // with the new one. The old id is kept to know a retry of the EndTxn by it.
        target.last_producer_id = md.producer_id;
        target.producer_id = md.next_producer_id;
        target.producer_epoch = 0;
        target.next_producer_id = NO_PRODUCER_ID;
    }
    Ok(begin(md, target, Then::Completed))
}

/// Some(commit) when `md` is decided but not complete (its markers must be written), as a
/// freshly loaded id can be; None otherwise, or while a transit is being written.
pub fn needs_markers(md: &TxnMetadata) -> Option<bool> {
    if md.pending.is_some() {
        return None;
    }
    match md.state {
        TxnState::PrepareCommit => Some(true),
        TxnState::PrepareAbort => Some(false),
        _ => None,
    }
}

/// The open transaction has run past its timeout (strictly, as Kafka compares) and
/// nothing is being written for it.
pub fn timed_out(md: &TxnMetadata, now_ms: i64) -> bool {
    md.state == TxnState::Ongoing
        && md.pending.is_none()
        && md.start_ms.saturating_add(i64::from(md.timeout_ms)) < now_ms
}

/// The abort of a timed-out transaction, at a bumped epoch that fences its producer (whose
/// next request gets PRODUCER_FENCED); None if it has not timed out.
pub fn abort_timed_out(md: &mut TxnMetadata, now_ms: i64) -> Option<Transit> {
    timed_out(md, now_ms).then(|| fence(md, now_ms, None))
}

/// No transaction open, nothing being written, and no change for `expiration_ms`
/// (`transactional.id.expiration.ms`): the id may be forgotten.
pub fn expired(md: &TxnMetadata, now_ms: i64, expiration_ms: i64) -> bool {
    md.pending.is_none()
        && md.state.is_idle()
        && md.last_update_ms <= now_ms.saturating_sub(expiration_ms)
}

/// The removal of an expired id: a transit to Dead, written as a tombstone; None if it
/// has not expired.
pub fn expire(md: &mut TxnMetadata, now_ms: i64, expiration_ms: i64) -> Option<Transit> {
    if !expired(md, now_ms, expiration_ms) {
        return None;
    }
    let target = TxnMetadata {
        state: TxnState::Dead,
        partitions: BTreeSet::new(),
        ..md.clone()
    };
    Some(begin(md, target, Then::Remove))
}

/// The transit's record is written: `md` becomes its target. NOT_COORDINATOR, and nothing
/// changes, if `md` is not the metadata the transit was prepared from and waiting for it
/// (it was reloaded or replaced meanwhile), as Kafka answers when its coordinator epoch
/// moved under a write.
pub fn complete_transition(md: &mut TxnMetadata, transit: Transit) -> Result<Then, i16> {
    if !awaits(md, &transit) {
        return Err(code::NOT_COORDINATOR);
    }
    *md = transit.target;
    Ok(transit.then)
}

/// The transit's record was not written: `md` stays as the log has it and takes requests
/// again. False, and nothing changes, if `md` is not waiting for this transit.
pub fn abort_transition(md: &mut TxnMetadata, transit: &Transit) -> bool {
    if !awaits(md, transit) {
        return false;
    }
    md.pending = None;
    true
}

fn awaits(md: &TxnMetadata, transit: &Transit) -> bool {
    md.pending == Some(transit.target.state)
        && md.transactional_id == transit.from.transactional_id
        && md.producer_id == transit.from.producer_id
        && md.producer_epoch == transit.from.producer_epoch
        && md.state == transit.from.state
        && md.last_update_ms == transit.from.last_update_ms
        && md.partitions == transit.from.partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::log::{decode_value, encode_value, encode_value_v1};

    const MAX: i32 = DEFAULT_MAX_TIMEOUT_MS;

    fn pids(start: i64) -> impl FnMut() -> Result<i64, i16> {
        let mut next = start;
        move || {
            next += 1;
            Ok(next - 1)
        }
    }

    fn no_pid() -> Result<i64, i16> {
        panic!("no producer id may be allocated here")
    }

    fn tp(topic: &str, p: i32) -> (String, i32) {
        (topic.to_string(), p)
    }

    /// Writes the transit (as if the log write succeeded) and returns what follows.
    fn write(md: &mut TxnMetadata, t: Transit) -> Then {
        complete_transition(md, t).expect("the transit completes")
    }

    /// An id initialised once: producer id 100, epoch 0, Empty.
    fn initialised(now: i64) -> TxnMetadata {
        let plan = init_producer_id(None, "t", 60_000, None, MAX, &mut pids(100), now).unwrap();
        let mut md = plan.new_entry.unwrap();
        assert_eq!(
            write(&mut md, plan.transit),
            Then::ReplyProducer {
                producer_id: 100,
                producer_epoch: 0
            }
        );
        md
    }

    /// An id with a transaction open on t-0 since `now`.
    fn ongoing(now: i64) -> TxnMetadata {
        let mut md = initialised(now);
        let t = add_partitions(Some(&mut md), 100, 0, &[tp("t", 0)], 1, now)
            .unwrap()
            .unwrap();
        assert_eq!(write(&mut md, t), Then::ReplyNone);
        md
    }

    /// The same id with its transaction decided and completed.
    fn completed(commit: bool) -> TxnMetadata {
        let mut md = ongoing(0);
        let t = end_txn(Some(&mut md), 100, 0, commit, 1, &mut no_pid, 1)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        let t = complete_markers(&mut md, 2).unwrap();
        assert_eq!(write(&mut md, t), Then::Completed);
        md
    }

    fn init(md: &mut TxnMetadata, expected: Option<(i64, i16)>) -> Result<Transit, i16> {
        init_producer_id(Some(md), "t", 60_000, expected, MAX, &mut no_pid, 5).map(|p| p.transit)
    }

    #[test]
    fn state_bytes_are_kafkas() {
        let states = [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
            TxnState::Dead,
            TxnState::PrepareEpochFence,
        ];
        for (i, s) in states.into_iter().enumerate() {
            assert_eq!(s.id(), i as i8);
            assert_eq!(TxnState::from_id(i as i8), Some(s));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_id(-1), None);
    }

    #[test]
    fn timeout_above_the_maximum_or_not_positive_is_invalid() {
        for timeout in [0, -1, MAX + 1] {
            let r = init_producer_id(None, "t", timeout, None, MAX, &mut no_pid, 0);
            assert_eq!(
                r.err(),
                Some(code::INVALID_TRANSACTION_TIMEOUT),
                "{timeout}"
            );
        }
        assert!(init_producer_id(None, "t", MAX, None, MAX, &mut pids(1), 0).is_ok());
    }

    #[test]
    fn empty_or_overlong_transactional_id_is_an_invalid_request() {
        let r = init_producer_id(None, "", 1000, None, MAX, &mut no_pid, 0);
        assert_eq!(r.err(), Some(code::INVALID_REQUEST));
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let r = init_producer_id(None, &long, 1000, None, MAX, &mut no_pid, 0);
        assert_eq!(r.err(), Some(code::INVALID_REQUEST));
    }

    #[test]
    fn unknown_id_gets_a_new_producer_id_at_epoch_0() {
        let plan = init_producer_id(None, "t", 60_000, None, MAX, &mut pids(7), 42).unwrap();
        let mut md = plan.new_entry.expect("an entry to keep while writing");
        assert_eq!(md.pending(), Some(TxnState::Empty));
        assert_eq!(md.producer_epoch, NO_PRODUCER_EPOCH);
        let record = plan.transit.record().unwrap();
        assert_eq!(
            (record.producer_id, record.producer_epoch, record.state),
            (7, 0, TxnState::Empty)
        );
        assert_eq!(
            write(&mut md, plan.transit),
            Then::ReplyProducer {
                producer_id: 7,
                producer_epoch: 0
            }
        );
        assert_eq!(
            (md.state, md.last_update_ms, md.pending()),
            (TxnState::Empty, 42, None)
        );
    }

    #[test]
    fn producer_id_allocation_failure_is_answered() {
        let r = init_producer_id(
            None,
            "t",
            1000,
            None,
            MAX,
            &mut || Err(code::NOT_COORDINATOR),
            0,
        );
        assert_eq!(r.err(), Some(code::NOT_COORDINATOR));
    }

    #[test]
    fn init_bumps_the_epoch_from_empty_and_complete_states() {
        for mut md in [initialised(0), completed(true), completed(false)] {
            let before = md.producer_epoch;
            let t = init(&mut md, None).unwrap();
            assert_eq!(
                t.then,
                Then::ReplyProducer {
                    producer_id: 100,
                    producer_epoch: before + 1
                }
            );
            write(&mut md, t);
            assert_eq!(md.state, TxnState::Empty);
            assert!(md.partitions.is_empty());
            assert_eq!(md.start_ms, -1);
        }
    }

    #[test]
    fn init_while_a_transit_is_pending_is_concurrent() {
        let mut md = initialised(0);
        let _t = add_partitions(Some(&mut md), 100, 0, &[tp("t", 0)], 1, 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            init(&mut md, None).err(),
            Some(code::CONCURRENT_TRANSACTIONS)
        );
    }

    #[test]
    fn init_while_markers_are_written_is_concurrent() {
        let mut md = ongoing(0);
        let t = end_txn(Some(&mut md), 100, 0, true, 1, &mut no_pid, 1)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        assert_eq!(md.state, TxnState::PrepareCommit);
        assert_eq!(
            init(&mut md, None).err(),
            Some(code::CONCURRENT_TRANSACTIONS)
        );
    }

    #[test]
    fn init_with_a_transaction_open_aborts_it_at_a_bumped_epoch_first() {
        let mut md = ongoing(0);
        let t = init(&mut md, None).unwrap();
        assert_eq!(
            t.then,
            Then::WriteMarkers {
                commit: false,
                reply: Some(code::CONCURRENT_TRANSACTIONS)
            }
        );
        assert_eq!(t.target.state, TxnState::PrepareAbort);
        assert_eq!(t.target.producer_epoch, 1);
        assert_eq!(t.target.partitions, md.partitions);
        write(&mut md, t);
        // The old producer is fenced at once, while the markers are written.
        assert_eq!(
            end_txn(Some(&mut md), 100, 0, true, 1, &mut no_pid, 2).err(),
            Some(code::PRODUCER_FENCED)
        );
        let t = complete_markers(&mut md, 3).unwrap();
        write(&mut md, t);
        // The client's retry gets the epoch after the fencing one.
        let t = init(&mut md, None).unwrap();
        assert_eq!(
            t.then,
            Then::ReplyProducer {
                producer_id: 100,
                producer_epoch: 2
            }
        );
    }

    #[test]
    fn exhausted_epoch_rotates_to_a_new_producer_id_at_epoch_0() {
        let mut md = initialised(0);
        md.producer_epoch = i16::MAX - 1;
        let plan =
            init_producer_id(Some(&mut md), "t", 1000, None, MAX, &mut pids(500), 1).unwrap();
        let t = plan.transit;
        assert_eq!(
            t.then,
            Then::ReplyProducer {
                producer_id: 500,
                producer_epoch: 0
            }
        );
        write(&mut md, t);
        assert_eq!((md.producer_id, md.last_producer_id), (500, 100));
        assert_eq!(md.last_producer_epoch, NO_PRODUCER_EPOCH);
        // The epoch below the limit is still bumped, not rotated.
        let mut md = initialised(0);
        md.producer_epoch = i16::MAX - 2;
        let t = init(&mut md, None).unwrap();
        assert_eq!(t.target.producer_epoch, i16::MAX - 1);
    }

    #[test]
    fn fencing_at_the_last_epoch_then_init_rotates() {
        let mut md = ongoing(0);
        md.producer_epoch = i16::MAX - 1;
        let t = init(&mut md, None).unwrap();
        assert_eq!(t.target.producer_epoch, i16::MAX);
        write(&mut md, t);
        let t = complete_markers(&mut md, 1).unwrap();
        write(&mut md, t);
        let plan =
            init_producer_id(Some(&mut md), "t", 1000, None, MAX, &mut pids(900), 2).unwrap();
        assert_eq!(plan.transit.target.producer_id, 900);
        assert_eq!(plan.transit.target.producer_epoch, 0);
    }

    #[test]
    fn kip360_expected_epoch_current_bumps_and_remembers_the_last() {
        let mut md = initialised(0);
        let t = init(&mut md, Some((100, 0))).unwrap();
        write(&mut md, t);
        assert_eq!((md.producer_epoch, md.last_producer_epoch), (1, 0));
        // A retry of that request (its answer lost) gets the same epoch again.
        let t = init(&mut md, Some((100, 0))).unwrap();
        assert_eq!(
            t.then,
            Then::ReplyProducer {
                producer_id: 100,
                producer_epoch: 1
            }
        );
    }

    #[test]
    fn kip360_unknown_epoch_is_fenced() {
        let mut md = initialised(0);
        let t = init(&mut md, None).unwrap();
        write(&mut md, t);
        // Epoch 1 now, and no last epoch since a producer without one took it.
        assert_eq!(
            init(&mut md, Some((100, 0))).err(),
            Some(code::PRODUCER_FENCED)
        );
        assert_eq!(
            init(&mut md, Some((100, 7))).err(),
            Some(code::PRODUCER_FENCED)
        );
    }

    #[test]
    fn kip360_half_missing_expected_producer_is_an_invalid_request() {
        for expected in [(-1, 0), (100, -1)] {
            let r = init_producer_id(None, "t", 1000, Some(expected), MAX, &mut no_pid, 0);
            assert_eq!(r.err(), Some(code::INVALID_REQUEST), "{expected:?}");
        }
    }

    #[test]
    fn kip360_other_producer_id_is_fenced() {
        let mut md = initialised(0);
        assert_eq!(
            init(&mut md, Some((99, 0))).err(),
            Some(code::PRODUCER_FENCED)
        );
    }

    #[test]
    fn kip360_retry_of_a_rotation_with_the_old_id_and_exhausted_epoch_is_accepted() {
        let mut md = initialised(0);
        md.producer_epoch = i16::MAX - 1;
        let plan = init_producer_id(
            Some(&mut md),
            "t",
            1000,
            Some((100, i16::MAX - 1)),
            MAX,
            &mut pids(500),
            1,
        )
        .unwrap();
        write(&mut md, plan.transit);
        assert_eq!((md.producer_id, md.producer_epoch), (500, 0));
        assert_eq!(
            (md.last_producer_id, md.last_producer_epoch),
            (100, i16::MAX - 1)
        );
        // The retry names the old producer id: it is told the new one again, unbumped.
        let t = init(&mut md, Some((100, i16::MAX - 1))).unwrap();
        assert_eq!(
            t.then,
            Then::ReplyProducer {
                producer_id: 500,
                producer_epoch: 0
            }
        );
        assert!(abort_transition(&mut md, &t));
        // The old id with an epoch that was not exhausted is a zombie.
        assert_eq!(
            init(&mut md, Some((100, 3))).err(),
            Some(code::PRODUCER_FENCED)
        );
    }

    #[test]
    fn kip360_any_expected_producer_is_accepted_by_an_id_without_epoch() {
        let plan = init_producer_id(None, "t", 1000, Some((55, 3)), MAX, &mut pids(7), 0).unwrap();
        assert_eq!(
            plan.transit.then,
            Then::ReplyProducer {
                producer_id: 7,
                producer_epoch: 0
            }
        );
    }

    #[test]
    fn expired_id_held_as_dead_starts_over_with_a_new_producer_id() {
        let mut md = initialised(0);
        md.state = TxnState::Dead;
        let plan =
            init_producer_id(Some(&mut md), "t", 1000, None, MAX, &mut pids(300), 9).unwrap();
        assert_eq!(plan.new_entry, None);
        assert_eq!(
            plan.transit.then,
            Then::ReplyProducer {
                producer_id: 300,
                producer_epoch: 0
            }
        );
    }

    #[test]
    fn add_with_another_producer_id_is_invalid_mapping() {
        let mut md = initialised(0);
        let r = add_partitions(Some(&mut md), 101, 0, &[tp("t", 0)], 1, 1);
        assert_eq!(r.err(), Some(code::INVALID_PRODUCER_ID_MAPPING));
        let r = add_partitions(None, 100, 0, &[tp("t", 0)], 1, 1);
        assert_eq!(r.err(), Some(code::INVALID_PRODUCER_ID_MAPPING));
    }

    #[test]
    fn add_with_another_epoch_is_fenced() {
        let mut md = initialised(0);
        for epoch in [-1, 1] {
            let r = add_partitions(Some(&mut md), 100, epoch, &[tp("t", 0)], 1, 1);
            assert_eq!(r.err(), Some(code::PRODUCER_FENCED), "{epoch}");
        }
    }

    #[test]
    fn add_while_pending_or_preparing_is_concurrent() {
        let mut md = initialised(0);
        let t = add_partitions(Some(&mut md), 100, 0, &[tp("t", 0)], 1, 1)
            .unwrap()
            .unwrap();
        let r = add_partitions(Some(&mut md), 100, 0, &[tp("t", 1)], 1, 1);
        assert_eq!(r.err(), Some(code::CONCURRENT_TRANSACTIONS));
        write(&mut md, t);
        let t = end_txn(Some(&mut md), 100, 0, false, 1, &mut no_pid, 2)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        let r = add_partitions(Some(&mut md), 100, 0, &[tp("t", 1)], 1, 3);
        assert_eq!(r.err(), Some(code::CONCURRENT_TRANSACTIONS));
        md.state = TxnState::PrepareEpochFence;
        let r = add_partitions(Some(&mut md), 100, 0, &[tp("t", 1)], 1, 3);
        assert_eq!(r.err(), Some(code::CONCURRENT_TRANSACTIONS));
    }

    #[test]
    fn add_of_partitions_already_in_the_transaction_writes_nothing() {
        let mut md = ongoing(0);
        let r = add_partitions(Some(&mut md), 100, 0, &[tp("t", 0)], 1, 1);
        assert_eq!(r, Ok(None));
        assert_eq!(md.pending(), None);
    }

    #[test]
    fn add_starts_a_transaction_and_grows_it_keeping_its_start() {
        let mut md = completed(true);
        let t = add_partitions(Some(&mut md), 100, 0, &[tp("b", 1)], 1, 10)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        assert_eq!((md.state, md.start_ms), (TxnState::Ongoing, 10));
        let t = add_partitions(Some(&mut md), 100, 0, &[tp("a", 0), tp("b", 1)], 1, 20)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        assert_eq!((md.start_ms, md.last_update_ms), (10, 20));
        assert_eq!(
            md.partitions_by_topic(),
            vec![("a".to_string(), vec![0]), ("b".to_string(), vec![1])]
        );
    }

    #[test]
    fn end_of_an_open_transaction_prepares_and_then_completes_it() {
        for commit in [true, false] {
            let mut md = ongoing(0);
            let t = end_txn(Some(&mut md), 100, 0, commit, 1, &mut no_pid, 5)
                .unwrap()
                .unwrap();
            assert_eq!(
                t.then,
                Then::WriteMarkers {
                    commit,
                    reply: Some(code::NONE)
                }
            );
            write(&mut md, t);
            assert_eq!(needs_markers(&md), Some(commit));
            let t = complete_markers(&mut md, 6).unwrap();
            write(&mut md, t);
            let done = if commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            };
            assert_eq!((md.state, md.partitions.len()), (done, 0));
            assert_eq!((md.producer_epoch, md.start_ms), (0, 0));
            assert_eq!(needs_markers(&md), None);
        }
    }

    #[test]
    fn end_retried_after_the_same_outcome_completed_answers_none() {
        let mut md = completed(true);
        assert_eq!(
            end_txn(Some(&mut md), 100, 0, true, 1, &mut no_pid, 9),
            Ok(None)
        );
        let mut md = completed(false);
        assert_eq!(
            end_txn(Some(&mut md), 100, 0, false, 1, &mut no_pid, 9),
            Ok(None)
        );
    }

    #[test]
    fn end_retried_while_the_same_outcome_is_prepared_is_concurrent() {
        for commit in [true, false] {
            let mut md = ongoing(0);
            let t = end_txn(Some(&mut md), 100, 0, commit, 1, &mut no_pid, 1)
                .unwrap()
                .unwrap();
            // While its record is written, and after.
            let r = end_txn(Some(&mut md), 100, 0, commit, 1, &mut no_pid, 1);
            assert_eq!(r.err(), Some(code::CONCURRENT_TRANSACTIONS));
            write(&mut md, t);
            let r = end_txn(Some(&mut md), 100, 0, commit, 1, &mut no_pid, 1);
            assert_eq!(r.err(), Some(code::CONCURRENT_TRANSACTIONS));
        }
    }

    #[test]
    fn end_with_the_other_outcome_is_invalid_state() {
        let mut md = completed(true);
        let r = end_txn(Some(&mut md), 100, 0, false, 1, &mut no_pid, 9);
        assert_eq!(r.err(), Some(code::INVALID_TXN_STATE));
        let mut md = ongoing(0);
        let t = end_txn(Some(&mut md), 100, 0, false, 1, &mut no_pid, 1)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        let r = end_txn(Some(&mut md), 100, 0, true, 1, &mut no_pid, 1);
        assert_eq!(r.err(), Some(code::INVALID_TXN_STATE));
    }

    #[test]
    fn end_with_no_transaction_open_is_invalid_state() {
        let mut md = initialised(0);
        for commit in [true, false] {
            let r = end_txn(Some(&mut md), 100, 0, commit, 1, &mut no_pid, 1);
            assert_eq!(r.err(), Some(code::INVALID_TXN_STATE));
        }
    }

    #[test]
    fn end_from_another_producer_is_refused() {
        let mut md = ongoing(0);
        let r = end_txn(Some(&mut md), 7, 0, true, 1, &mut no_pid, 1);
        assert_eq!(r.err(), Some(code::INVALID_PRODUCER_ID_MAPPING));
        let r = end_txn(Some(&mut md), 100, 1, true, 1, &mut no_pid, 1);
        assert_eq!(r.err(), Some(code::PRODUCER_FENCED));
        let r = end_txn(None, 100, 0, true, 1, &mut no_pid, 1);
        assert_eq!(r.err(), Some(code::INVALID_PRODUCER_ID_MAPPING));
    }

    #[test]
    fn complete_markers_needs_a_prepared_outcome() {
        let mut md = ongoing(0);
        assert_eq!(
            complete_markers(&mut md, 1).err(),
            Some(code::INVALID_TXN_STATE)
        );
        let t = end_txn(Some(&mut md), 100, 0, true, 1, &mut no_pid, 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            complete_markers(&mut md, 1).err(),
            Some(code::CONCURRENT_TRANSACTIONS)
        );
        write(&mut md, t);
        assert!(complete_markers(&mut md, 1).is_ok());
    }

    #[test]
    fn timeout_fires_strictly_after_start_plus_timeout() {
        let md = ongoing(1000);
        assert!(!timed_out(&md, 1000 + 60_000));
        assert!(timed_out(&md, 1000 + 60_001));
        assert!(!timed_out(&initialised(0), i64::MAX));
        let mut md = ongoing(0);
        let _t = end_txn(Some(&mut md), 100, 0, true, 1, &mut no_pid, 1)
            .unwrap()
            .unwrap();
        assert!(
            !timed_out(&md, i64::MAX),
            "a pending transit is not timed out"
        );
    }

    #[test]
    fn timed_out_transaction_is_aborted_at_a_bumped_epoch() {
        let mut md = ongoing(0);
        assert_eq!(abort_timed_out(&mut md, 60_000), None);
        let t = abort_timed_out(&mut md, 60_001).unwrap();
        assert_eq!(
            t.then,
            Then::WriteMarkers {
                commit: false,
                reply: None
            }
        );
        assert_eq!(
            (t.target.state, t.target.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        write(&mut md, t);
        let r = add_partitions(Some(&mut md), 100, 0, &[tp("t", 1)], 1, 60_002);
        assert_eq!(r.err(), Some(code::PRODUCER_FENCED));
    }

    #[test]
    fn idle_ids_expire_after_the_expiration_time_as_tombstones() {
        let mut md = completed(true); // last update at 2
        assert!(!expired(&md, 1001, 1000));
        assert!(expired(&md, 1002, 1000));
        assert!(
            !expired(&ongoing(0), i64::MAX, 1000),
            "an open transaction never expires"
        );
        let t = expire(&mut md, 1002, 1000).unwrap();
        assert_eq!(t.record(), None, "a tombstone");
        assert_eq!(t.then, Then::Remove);
        assert_eq!(
            init(&mut md, None).err(),
            Some(code::CONCURRENT_TRANSACTIONS)
        );
        assert!(expire(&mut md, 1002, 1000).is_none(), "pending: not twice");
    }

    #[test]
    fn failed_write_leaves_the_metadata_as_it_was() {
        let mut md = ongoing(0);
        let before = md.clone();
        let t = init(&mut md, None).unwrap();
        assert!(abort_transition(&mut md, &t));
        assert_eq!(md, before);
        assert_eq!(
            end_txn(Some(&mut md), 100, 0, true, 1, &mut no_pid, 1).map(|t| t.is_some()),
            Ok(true)
        );
    }

    #[test]
    fn stale_transit_is_neither_completed_nor_aborted() {
        let mut md = ongoing(0);
        let t = end_txn(Some(&mut md), 100, 0, true, 1, &mut no_pid, 1)
            .unwrap()
            .unwrap();
        // The coordinator reloaded the id meanwhile: its metadata came from the log.
        let mut reloaded = from_log("t", &TxnLogValue::from(&ongoing(0)));
        assert!(!abort_transition(&mut reloaded, &t));
        assert_eq!(
            complete_transition(&mut reloaded, t.clone()),
            Err(code::NOT_COORDINATOR)
        );
        // A transit of another kind pending on it is not touched either.
        let other = add_partitions(Some(&mut reloaded), 100, 0, &[tp("x", 0)], 1, 2)
            .unwrap()
            .unwrap();
        assert_eq!(
            complete_transition(&mut reloaded, t),
            Err(code::NOT_COORDINATOR)
        );
        assert_eq!(reloaded.pending(), Some(TxnState::Ongoing));
        assert_eq!(write(&mut reloaded, other), Then::ReplyNone);
    }

    #[test]
    fn loading_rebuilds_what_was_written() {
        let mut md = ongoing(7);
        md.partitions.insert(tp("a", 3));
        let loaded = from_log("t", &decode_value(&encode_value(&(&md).into())).unwrap());
        // Version 0 does not hold the producer id and epoch before the last init, nor the
        // client's transaction version.
        let expected = TxnMetadata {
            last_producer_id: NO_PRODUCER_ID,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            client_version: 0,
            ..md.clone()
        };
        assert_eq!(loaded, expected);
        // Version 1 holds all but the epoch before the last init (Kafka's log has no room
        // for it either).
        md.client_version = 2;
        md.next_producer_id = 555;
        md.last_producer_id = 99;
        let loaded = from_log("t", &decode_value(&encode_value_v1(&(&md).into())).unwrap());
        assert_eq!(
            loaded,
            TxnMetadata {
                last_producer_epoch: NO_PRODUCER_EPOCH,
                ..md
            }
        );
    }

    /// An id with a transaction version 2 transaction open on t-0 at `epoch`.
    fn ongoing_v2(epoch: i16) -> TxnMetadata {
        let mut md = initialised(0);
        md.producer_epoch = epoch;
        let t = add_partitions(Some(&mut md), 100, epoch, &[tp("t", 0)], 2, 1)
            .unwrap()
            .unwrap();
        assert_eq!(write(&mut md, t), Then::ReplyNone);
        assert!(md.bumps_epoch());
        md
    }

    /// Ends `md`'s transaction through EndTxn v5 and writes its markers.
    fn end_v2(md: &mut TxnMetadata, epoch: i16, commit: bool) {
        let t = end_txn(Some(md), 100, epoch, commit, 2, &mut no_pid, 3)
            .unwrap()
            .unwrap();
        write(md, t);
        let t = complete_markers(md, 4).unwrap();
        assert_eq!(write(md, t), Then::Completed);
    }

    #[test]
    fn v2_end_bumps_the_epoch_and_the_markers_carry_it() {
        for commit in [true, false] {
            let mut md = ongoing_v2(3);
            let t = end_txn(Some(&mut md), 100, 3, commit, 2, &mut no_pid, 3)
                .unwrap()
                .unwrap();
            assert_eq!(t.target.producer_epoch, 4);
            assert_eq!(t.target.producer_after_markers(), (100, 4));
            write(&mut md, t);
            // The markers go out at the bumped epoch: late writes at 3 are refused.
            assert_eq!(needs_markers(&md), Some(commit));
            assert_eq!((md.producer_id, md.producer_epoch), (100, 4));
            let t = complete_markers(&mut md, 4).unwrap();
            write(&mut md, t);
            assert_eq!(md.producer_after_markers(), (100, 4));
            assert!(md.partitions.is_empty());
        }
    }

    #[test]
    fn v2_retry_of_an_end_is_known_by_the_epoch_below() {
        let mut md = ongoing_v2(3);
        let t = end_txn(Some(&mut md), 100, 3, true, 2, &mut no_pid, 3)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        // Markers still being written: the retry waits, and so does the next EndTxn, at
        // the epoch the first one answered.
        let r = end_txn(Some(&mut md), 100, 3, true, 2, &mut no_pid, 3);
        assert_eq!(r.err(), Some(code::CONCURRENT_TRANSACTIONS));
        for commit in [true, false] {
            let r = end_txn(Some(&mut md), 100, 4, commit, 2, &mut no_pid, 3);
            assert_eq!(r.err(), Some(code::CONCURRENT_TRANSACTIONS));
        }
        let t = complete_markers(&mut md, 4).unwrap();
        write(&mut md, t);
        // Complete: the same answer again, nothing written.
        let r = end_txn(Some(&mut md), 100, 3, true, 2, &mut no_pid, 5);
        assert_eq!(r, Ok(None));
        assert_eq!(md.producer_after_markers(), (100, 4));
        // The other outcome under the old epoch is no retry.
        let r = end_txn(Some(&mut md), 100, 3, false, 2, &mut no_pid, 5);
        assert_eq!(r.err(), Some(code::INVALID_TXN_STATE));
        // A commit at the new epoch with nothing open is no transaction.
        let r = end_txn(Some(&mut md), 100, 4, true, 2, &mut no_pid, 5);
        assert_eq!(r.err(), Some(code::INVALID_TXN_STATE));
        // Two epochs back is a zombie.
        let r = end_txn(Some(&mut md), 100, 2, true, 2, &mut no_pid, 5);
        assert_eq!(r.err(), Some(code::PRODUCER_FENCED));
    }

    #[test]
    fn v2_next_transaction_runs_at_the_bumped_epoch_only() {
        let mut md = ongoing_v2(3);
        end_v2(&mut md, 3, true);
        let r = add_partitions(Some(&mut md), 100, 3, &[tp("t", 1)], 2, 5);
        assert_eq!(r.err(), Some(code::PRODUCER_FENCED));
        let t = add_partitions(Some(&mut md), 100, 4, &[tp("t", 1)], 2, 5)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        assert_eq!(md.state, TxnState::Ongoing);
        // The old epoch's retry of the last EndTxn is no longer one: a transaction is open.
        let r = end_txn(Some(&mut md), 100, 3, true, 2, &mut no_pid, 6);
        assert_eq!(r.err(), Some(code::PRODUCER_FENCED));
        end_v2(&mut md, 4, false);
        assert_eq!(md.producer_after_markers(), (100, 5));
        assert_eq!(md.state, TxnState::CompleteAbort);
    }

    #[test]
    fn v2_abort_with_nothing_open_bumps_the_epoch() {
        // After InitProducerId, and after a completed transaction.
        let mut fresh = initialised(0);
        let mut done = ongoing_v2(0);
        end_v2(&mut done, 0, true);
        for (md, epoch) in [(&mut fresh, 0), (&mut done, 1)] {
            let r = end_txn(Some(md), 100, epoch, true, 2, &mut no_pid, 5);
            assert_eq!(r.err(), Some(code::INVALID_TXN_STATE));
            let t = end_txn(Some(md), 100, epoch, false, 2, &mut no_pid, 5)
                .unwrap()
                .unwrap();
            assert_eq!(t.target.state, TxnState::PrepareAbort);
            assert!(t.target.partitions.is_empty());
            assert_eq!(t.target.producer_after_markers(), (100, epoch + 1));
        }
        // Classic clients get no such abort.
        let mut md = initialised(0);
        let r = end_txn(Some(&mut md), 100, 0, false, 1, &mut no_pid, 5);
        assert_eq!(r.err(), Some(code::INVALID_TXN_STATE));
    }

    #[test]
    fn v2_exhausted_epoch_moves_to_a_new_producer_id_after_the_markers() {
        let last = i16::MAX - 1;
        let mut md = ongoing_v2(last);
        let t = end_txn(Some(&mut md), 100, last, true, 2, &mut pids(555), 3)
            .unwrap()
            .unwrap();
        assert_eq!(t.target.producer_after_markers(), (555, 0));
        write(&mut md, t);
        // The markers go out under the old id, at the epoch no producer ever holds.
        assert_eq!((md.producer_id, md.producer_epoch), (100, i16::MAX));
        let t = complete_markers(&mut md, 4).unwrap();
        write(&mut md, t);
        assert_eq!((md.producer_id, md.producer_epoch), (555, 0));
        assert_eq!(md.next_producer_id, NO_PRODUCER_ID);
        // A retry by the old id at its last epoch gets the same answer.
        let r = end_txn(Some(&mut md), 100, last, true, 2, &mut no_pid, 5);
        assert_eq!(r, Ok(None));
        assert_eq!(md.producer_after_markers(), (555, 0));
        // Any other epoch of the old id is not this id's producer any more.
        let r = end_txn(Some(&mut md), 100, 5, true, 2, &mut no_pid, 5);
        assert_eq!(r.err(), Some(code::INVALID_PRODUCER_ID_MAPPING));
        // The new id starts its first transaction at epoch 0.
        let t = add_partitions(Some(&mut md), 555, 0, &[tp("t", 0)], 2, 6)
            .unwrap()
            .unwrap();
        write(&mut md, t);
        assert_eq!(md.state, TxnState::Ongoing);
    }

    #[test]
    fn v2_fence_to_the_last_epoch_is_never_handed_out() {
        let last = i16::MAX - 1;
        let mut md = ongoing_v2(last);
        let t = abort_timed_out(&mut md, 1_000_000).unwrap();
        write(&mut md, t);
        let t = complete_markers(&mut md, 1_000_001).unwrap();
        write(&mut md, t);
        assert_eq!(md.producer_epoch, i16::MAX);
        // Not a retry: the producer is fenced and starts over with a new id.
        let r = end_txn(Some(&mut md), 100, last, false, 2, &mut no_pid, 1_000_002);
        assert_eq!(r.err(), Some(code::PRODUCER_FENCED));
        let plan = init_producer_id(Some(&mut md), "t", 60_000, None, MAX, &mut pids(7), 9);
        assert_eq!(
            plan.unwrap().transit.then,
            Then::ReplyProducer {
                producer_id: 7,
                producer_epoch: 0
            }
        );
    }

    #[test]
    fn v2_timed_out_transaction_aborted_by_the_coordinator_is_a_retried_abort() {
        let mut md = ongoing_v2(3);
        let t = abort_timed_out(&mut md, 1_000_000).unwrap();
        write(&mut md, t);
        let t = complete_markers(&mut md, 1_000_001).unwrap();
        write(&mut md, t);
        // The producer's own abort at its epoch finds the bump done: it goes on at it.
        let r = end_txn(Some(&mut md), 100, 3, false, 2, &mut no_pid, 1_000_002);
        assert_eq!(r, Ok(None));
        assert_eq!(md.producer_after_markers(), (100, 4));
        // Its commit does not: that transaction was aborted.
        let r = end_txn(Some(&mut md), 100, 3, true, 2, &mut no_pid, 1_000_002);
        assert_eq!(r.err(), Some(code::INVALID_TXN_STATE));
    }

    #[test]
    fn loaded_prepared_outcome_needs_its_markers() {
        let mut v = TxnLogValue::from(&ongoing(0));
        v.state = TxnState::PrepareCommit;
        assert_eq!(needs_markers(&from_log("t", &v)), Some(true));
        v.state = TxnState::PrepareAbort;
        assert_eq!(needs_markers(&from_log("t", &v)), Some(false));
        v.state = TxnState::Ongoing;
        assert_eq!(needs_markers(&from_log("t", &v)), None);
    }

    #[test]
    fn loaded_epoch_fence_is_an_open_transaction() {
        let mut v = TxnLogValue::from(&ongoing(0));
        v.state = TxnState::PrepareEpochFence;
        let mut md = from_log("t", &v);
        assert_eq!(md.state, TxnState::Ongoing);
        let t = init(&mut md, None).unwrap();
        assert_eq!(t.target.state, TxnState::PrepareAbort);
    }

    #[test]
    fn empty_state_drops_partitions_from_the_record() {
        let mut md = initialised(0);
        md.partitions.insert(tp("stray", 0));
        assert!(TxnLogValue::from(&md).partitions.is_empty());
    }
}

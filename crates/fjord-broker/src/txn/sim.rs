//! A seeded simulation of one transaction coordinator run by the rules of
//! [`super::metadata`]: three transactional ids, each shared by two producers (so one is
//! often a zombie of the other), a coordinator that keeps a map of ids and writes every
//! transit to an append-only log of encoded records, and faults: log writes that fail,
//! writes that stay in flight while other requests arrive, answers lost on the way to the
//! client (which retries), restarts that lose everything but the log (a write in flight at
//! the crash may or may not have landed), and time that jumps, so that transactions time
//! out and idle ids expire. Some ids start near the end of their epochs, so that producer
//! ids rotate. Each seed picks, per id, whether its producers speak transaction version 1
//! or 2 (KIP-890: EndTxn bumps the epoch and hands out the next one, an abort may come
//! with nothing open, and a bump past the last epoch rotates the producer id).
//!
//! Everything that is not the rules is a small model of the coordinator around them
//! (`Sim`) and of the clients (`Producer`), single-threaded and driven by one seed.
//!
//! Checked as the run goes, at every write, answer and step:
//! 1. what a client is handed by InitProducerId is the newest producer id and epoch
//!    written for its id, and no two runs of a producer are handed the same pair;
//! 2. every request that succeeds (AddPartitionsToTxn, EndTxn) comes with the newest pair
//!    handed out for its id, and not from a producer whose transaction was since aborted by
//!    a timeout or another InitProducerId: at most one producer per id can succeed, and an
//!    older epoch never succeeds once a newer one was handed out. A version 2 EndTxn hands
//!    out the pair the log's last record goes on with, never to two runs; its retry (by
//!    the epoch below) is answered with that same pair;
//! 3. each transaction is decided once: its PrepareCommit or PrepareAbort is written at
//!    most once, its Complete record agrees with it, and what EndTxn answered agrees too;
//! 4. a producer id belongs to one transactional id, and its epochs never go backwards,
//!    in the log or in memory;
//! 5. memory is what the log says: each id's metadata encodes to its last record (every
//!    restart also rebuilds memory from the encoded log), and only the first InitProducerId
//!    of an id may be held in memory before it is written.
//!
//! At the end of a seed, with faults and clients stopped, every write and marker is let
//! through: nothing may stay pending or prepared (a decided transaction always completes).
//!
//! The run must reach every path it claims to exercise (rotations, fences, timeouts,
//! expiries, lost answers, ...), and each check is itself tested: a shell with one
//! mistake (see [`Shell`]) must fail it.
//!
//! `FJORD_TXN_SIM_SEEDS=N` runs N seeds; `FJORD_TXN_SIM_SEED=S` replays one with a trace
//! on stderr.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::log::{self, TxnLogValue};
use super::metadata::NO_PRODUCER_ID;
use super::metadata::{
    abort_timed_out, abort_transition, complete_markers, complete_transition, end_txn, expire,
    from_log, init_producer_id, needs_markers, Then, Transit, TxnMetadata, TxnState,
};
use crate::error::code;
use crate::replication::sim::Rng;

const IDS: [&str; 3] = ["t0", "t1", "t2"];
/// Producer `i` uses `IDS[i % IDS.len()]`: two producers per id.
const PRODUCERS: usize = 6;
const TOPICS: [&str; 2] = ["a", "b"];
const MAX_TIMEOUT_MS: i32 = 60_000;
/// Short, so that ids expire within a run.
const EXPIRATION_MS: i64 = 30_000;
/// Where the simulated producer id allocator starts; the seeded records use lower ids.
const FIRST_PID: i64 = 2000;

/// The coordinator around the rules: the correct one, and ones with a mistake each of the
/// checks must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shell {
    Correct,
    /// Applies a transit even when its write failed: memory runs ahead of the log.
    ApplyFailedWrites,
    /// Does not finish the prepared transactions it loads.
    ForgetPreparedOnLoad,
    /// Allocates producer ids from a counter that starts over at every restart, instead of
    /// from a durable source (Kafka's controller hands out blocks of them).
    VolatileProducerIds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Init,
    Add,
    End { commit: bool },
}

struct Producer {
    id: &'static str,
    /// Which run of the application this is: a producer that starts over without the
    /// producer id and epoch it had is another run.
    run: u64,
    held: Option<(i64, i16)>,
    in_txn: bool,
    /// An InitProducerId not answered yet, with the producer id and epoch it named: a
    /// client retries it as it was.
    initing: Option<Option<(i64, i16)>>,
    /// An EndTxn not answered yet: a client retries it with the same outcome.
    ending: Option<bool>,
    /// A request of this producer is in flight.
    waiting: bool,
}

/// A transit whose record is being written, and who waits for the answer.
struct Write {
    id: String,
    transit: Transit,
    asker: Option<(usize, Asked)>,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    handed_out: u64,
    rotations: u64,
    kip360_repeats: u64,
    fenced_by_init: u64,
    timeouts: u64,
    expirations: u64,
    commits: u64,
    aborts: u64,
    end_retries_answered: u64,
    producer_fenced: u64,
    concurrent: u64,
    invalid_state: u64,
    failed_writes: u64,
    restarts: u64,
    landed_at_crash: u64,
    loaded_prepared: u64,
    lost_answers: u64,
    v2_bumps: u64,
    v2_rotations: u64,
    v2_empty_aborts: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.handed_out += o.handed_out;
        self.rotations += o.rotations;
        self.kip360_repeats += o.kip360_repeats;
        self.fenced_by_init += o.fenced_by_init;
        self.timeouts += o.timeouts;
        self.expirations += o.expirations;
        self.commits += o.commits;
        self.aborts += o.aborts;
        self.end_retries_answered += o.end_retries_answered;
        self.producer_fenced += o.producer_fenced;
        self.concurrent += o.concurrent;
        self.invalid_state += o.invalid_state;
        self.failed_writes += o.failed_writes;
        self.restarts += o.restarts;
        self.landed_at_crash += o.landed_at_crash;
        self.loaded_prepared += o.loaded_prepared;
        self.lost_answers += o.lost_answers;
        self.v2_bumps += o.v2_bumps;
        self.v2_rotations += o.v2_rotations;
        self.v2_empty_aborts += o.v2_empty_aborts;
    }
}

/// What the log and the clients have been told, kept apart from the coordinator.
#[derive(Default)]
struct Oracle {
    /// The last record of each id, decoded as a reload reads it.
    last: BTreeMap<String, TxnLogValue>,
    /// How many transactions each id began; a transaction is (id, serial).
    serial: BTreeMap<String, u64>,
    decided: BTreeMap<(String, u64), bool>,
    answered: BTreeMap<(String, u64), bool>,
    /// The producer id and epoch of each id's newest InitProducerId record.
    newest: BTreeMap<String, (i64, i16)>,
    /// Per producer id: its transactional id, and its highest epoch in the log.
    owner: BTreeMap<i64, String>,
    max_epoch: BTreeMap<i64, i16>,
    /// Which producer run was handed each (producer id, epoch).
    holders: BTreeMap<(i64, i16), u64>,
}

impl Oracle {
    /// A record is in the log.
    fn appended(&mut self, id: &str, value: Option<&TxnLogValue>) -> Result<(), String> {
        let Some(v) = value else {
            self.newest.remove(id);
            // An id whose first InitProducerId was never written may expire too: its
            // tombstone removes nothing.
            let Some(prev) = self.last.remove(id) else {
                return Ok(());
            };
            if !matches!(
                prev.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            ) {
                return Err(format!("{id} expired in state {:?}", prev.state));
            }
            return Ok(());
        };
        let owner = self.owner.entry(v.producer_id).or_insert_with(|| id.into());
        if owner != id {
            return Err(format!(
                "producer id {} written for {id} belongs to {owner}",
                v.producer_id
            ));
        }
        let max = self
            .max_epoch
            .entry(v.producer_id)
            .or_insert(v.producer_epoch);
        if v.producer_epoch < *max {
            return Err(format!(
                "producer id {} went back from epoch {max} to {} in the log",
                v.producer_id, v.producer_epoch
            ));
        }
        *max = v.producer_epoch;
        let prev = self.last.get(id);
        let prev_state = prev.map(|p| p.state);
        // The same producer id, at the same epoch or up to `bump` higher.
        let same_producer = |p: &TxnLogValue, bump: i32| {
            let d = i32::from(v.producer_epoch) - i32::from(p.producer_epoch);
            p.producer_id == v.producer_id && (0..=bump).contains(&d)
        };
        let serial = *self.serial.get(id).unwrap_or(&0);
        match v.state {
            TxnState::Empty => {
                if matches!(
                    prev_state,
                    Some(TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort)
                ) {
                    return Err(format!("{id} re-initialised over an open transaction"));
                }
                self.newest
                    .insert(id.into(), (v.producer_id, v.producer_epoch));
            }
            TxnState::Ongoing => match prev {
                Some(p) if p.state == TxnState::Ongoing => {
                    if !same_producer(p, 0) {
                        return Err(format!("{id}'s open transaction changed producer"));
                    }
                }
                Some(p) => {
                    if !same_producer(p, 0) {
                        return Err(format!("{id} began a transaction under another producer"));
                    }
                    self.serial.insert(id.into(), serial + 1);
                }
                None => return Err(format!("{id} began a transaction before any init")),
            },
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                let commit = v.state == TxnState::PrepareCommit;
                let v2 = v.client_transaction_version >= 2;
                // A fence, which aborts, bumps the epoch; every version 2 end bumps it by
                // exactly one.
                let bump = if commit && !v2 { 0 } else { 1 };
                let bumped_right = |p: &TxnLogValue| {
                    same_producer(p, bump) && (!v2 || p.producer_epoch != v.producer_epoch)
                };
                let mut serial = serial;
                match prev {
                    Some(p) if p.state == TxnState::Ongoing && bumped_right(p) => {}
                    // Version 2: an abort with nothing open, at the next epoch.
                    Some(p)
                        if v2
                            && !commit
                            && v.partitions.is_empty()
                            && matches!(
                                p.state,
                                TxnState::Empty
                                    | TxnState::CompleteCommit
                                    | TxnState::CompleteAbort
                            )
                            && same_producer(p, 1)
                            && p.producer_epoch != v.producer_epoch =>
                    {
                        serial += 1;
                        self.serial.insert(id.into(), serial);
                    }
                    _ => return Err(format!("{id} decided {v:?} after {prev_state:?}")),
                }
                if v.next_producer_id != NO_PRODUCER_ID {
                    if !v2 || v.producer_epoch != i16::MAX {
                        return Err(format!("{id} rotates its producer id early: {v:?}"));
                    }
                    if let Some(owner) = self.owner.get(&v.next_producer_id) {
                        return Err(format!(
                            "producer id {} to move {id} to belongs to {owner}",
                            v.next_producer_id
                        ));
                    }
                }
                if let Some(was) = self.decided.insert((id.into(), serial), commit) {
                    return Err(format!("{id}'s transaction {serial} decided twice ({was})"));
                }
            }
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let commit = v.state == TxnState::CompleteCommit;
                let prepared = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                // The same producer, or the one a version 2 bump past the last epoch moves
                // to, at epoch 0.
                let continues = |p: &TxnLogValue| {
                    if p.next_producer_id == NO_PRODUCER_ID {
                        same_producer(p, 0)
                    } else {
                        v.producer_id == p.next_producer_id && v.producer_epoch == 0
                    }
                };
                if prev_state != Some(prepared) || !prev.is_some_and(continues) {
                    return Err(format!("{id} completed {v:?} after {prev:?}"));
                }
                if self.decided.get(&(id.into(), serial)) != Some(&commit) {
                    return Err(format!(
                        "{id}'s transaction {serial} completed against its decision"
                    ));
                }
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                return Err(format!("{id}: {:?} written as a value", v.state))
            }
        }
        self.last.insert(id.into(), v.clone());
        Ok(())
    }

    /// InitProducerId answered `run` with (pid, epoch).
    fn handed(&mut self, id: &str, run: u64, pid: i64, epoch: i16) -> Result<(), String> {
        if self.newest.get(id) != Some(&(pid, epoch)) {
            return Err(format!(
                "{id}: handed out {pid}/{epoch}, but the newest written is {:?}",
                self.newest.get(id)
            ));
        }
        let holder = self.holders.entry((pid, epoch)).or_insert(run);
        if *holder != run {
            return Err(format!(
                "{id}: {pid}/{epoch} handed to run {run}, and before to run {holder}"
            ));
        }
        Ok(())
    }

    /// A version 2 EndTxn of `held` succeeded without a write: `held` is the newest pair, or
    /// the one just below the pair the log goes on with (the same producer id one epoch
    /// down, or the old id at its last epoch after a rotation).
    fn retried_end(&self, id: &str, held: Option<(i64, i16)>) -> Result<(), String> {
        let Some((pid, epoch)) = held else {
            return Err(format!(
                "{id}: EndTxn succeeded for a producer without an id"
            ));
        };
        if self.newest.get(id) == Some(&(pid, epoch)) {
            return Ok(());
        }
        let below = self.last.get(id).is_some_and(|v| {
            (v.producer_id == pid && i32::from(epoch) + 1 == i32::from(v.producer_epoch))
                || (v.previous_producer_id == pid && v.producer_epoch == 0 && epoch == i16::MAX - 1)
        });
        if !below {
            return Err(format!(
                "{id}: EndTxn of {pid}/{epoch} answered as a retry, but the log has {:?}",
                self.last.get(id)
            ));
        }
        Ok(())
    }

    /// A version 2 EndTxn answered `run` with the pair to go on with: the one the log's
    /// last record of `id` goes on with, handed to no other run. It is the newest now.
    fn handed_by_end(&mut self, id: &str, run: u64, pair: (i64, i16)) -> Result<(), String> {
        let logged = self.last.get(id).map(|v| {
            if v.next_producer_id != NO_PRODUCER_ID {
                (v.next_producer_id, 0)
            } else {
                (v.producer_id, v.producer_epoch)
            }
        });
        if logged != Some(pair) {
            return Err(format!(
                "{id}: EndTxn handed out {pair:?}, but the log goes on with {logged:?}"
            ));
        }
        let holder = self.holders.entry(pair).or_insert(run);
        if *holder != run {
            return Err(format!(
                "{id}: {pair:?} handed to run {run} by EndTxn, and before to run {holder}"
            ));
        }
        self.newest.insert(id.into(), pair);
        Ok(())
    }

    /// The abort of the transaction of (pid, epoch) that fences it is in the log: nobody
    /// holds the newest epoch of `id` until the next InitProducerId is written.
    fn fenced(&mut self, id: &str, pid: i64, epoch: i16) {
        if self.newest.get(id) == Some(&(pid, epoch)) {
            self.newest.remove(id);
        }
    }

    /// A request of (pid, epoch) for `id` succeeded.
    fn succeeded(&self, id: &str, held: Option<(i64, i16)>, what: &str) -> Result<(), String> {
        let newest = self.newest.get(id).copied();
        if held.is_none() || held != newest {
            return Err(format!(
                "{id}: {what} of {held:?} succeeded, but the newest handed out is {newest:?}"
            ));
        }
        Ok(())
    }

    /// EndTxn answered NONE for `id`'s current transaction.
    fn answered(&mut self, id: &str, commit: bool) -> Result<(), String> {
        let key = (id.to_string(), *self.serial.get(id).unwrap_or(&0));
        if self.decided.get(&key) != Some(&commit) {
            return Err(format!(
                "{id}: EndTxn({commit}) answered NONE for transaction {}, decided {:?}",
                key.1,
                self.decided.get(&key)
            ));
        }
        if let Some(was) = self.answered.insert(key, commit) {
            if was != commit {
                return Err(format!("{id}: answered both {was} and {commit}"));
            }
        }
        Ok(())
    }
}

struct Sim {
    shell: Shell,
    rng: Rng,
    step: usize,
    trace: bool,
    now: i64,
    log: Vec<(Bytes, Option<Bytes>)>,
    mem: BTreeMap<String, TxnMetadata>,
    writes: Vec<Write>,
    /// Ids whose markers are being written.
    markers: Vec<String>,
    producers: Vec<Producer>,
    next_pid: i64,
    next_run: u64,
    oracle: Oracle,
    /// Per producer id, the highest epoch memory held.
    mem_epochs: BTreeMap<i64, i16>,
    /// The transaction version the producers of each id (by its index in `IDS`) speak.
    versions: [i16; IDS.len()],
    stats: Stats,
}

impl Sim {
    fn new(seed: u64, shell: Shell, trace: bool) -> Result<Self, String> {
        let producers = (0..PRODUCERS)
            .map(|i| Producer {
                id: IDS[i % IDS.len()],
                run: i as u64,
                held: None,
                in_txn: false,
                initing: None,
                ending: None,
                waiting: false,
            })
            .collect();
        let mut rng = Rng(seed);
        let versions = [0; IDS.len()].map(|_| if rng.permille(500) { 2 } else { 1 });
        let mut sim = Sim {
            shell,
            rng,
            step: 0,
            trace,
            now: 1_000_000,
            log: Vec::new(),
            mem: BTreeMap::new(),
            writes: Vec::new(),
            markers: Vec::new(),
            producers,
            next_pid: FIRST_PID,
            next_run: PRODUCERS as u64,
            oracle: Oracle::default(),
            mem_epochs: BTreeMap::new(),
            versions,
            stats: Stats::default(),
        };
        // t0 is three epochs from exhaustion, and producer 0 holds its epoch; t1 has a
        // transaction open at the last epoch a client may hold, long timed out.
        let t0 = TxnLogValue {
            last_update_ms: sim.now,
            start_ms: sim.now,
            ..TxnLogValue::new(1000, i16::MAX - 3, 10_000, TxnState::CompleteCommit)
        };
        let t1 = TxnLogValue {
            partitions: vec![("a".into(), vec![0])],
            last_update_ms: 0,
            start_ms: 0,
            ..TxnLogValue::new(1001, i16::MAX - 1, 1000, TxnState::Ongoing)
        };
        for (id, v) in [("t0", t0), ("t1", t1)] {
            sim.oracle.owner.insert(v.producer_id, id.into());
            sim.oracle
                .newest
                .insert(id.into(), (v.producer_id, v.producer_epoch));
            sim.oracle.last.insert(id.into(), v.clone());
            sim.log
                .push((log::encode_key(id), Some(log::encode_value(&v))));
        }
        // t0's last transaction committed; t1's is open.
        sim.oracle.serial.insert("t0".into(), 1);
        sim.oracle.decided.insert(("t0".into(), 1), true);
        sim.oracle.serial.insert("t1".into(), 1);
        sim.oracle.holders.insert((1000, i16::MAX - 3), 0);
        sim.producers[0].held = Some((1000, i16::MAX - 3));
        sim.load()?;
        Ok(sim)
    }

    fn version_of(&self, id: &str) -> i16 {
        let i = IDS.iter().position(|x| *x == id).unwrap_or(0);
        self.versions[i]
    }

    fn say(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{} t={}] {}", self.step, self.now, what());
        }
    }

    /// Rebuilds memory from the encoded log, as a coordinator does when it loads.
    fn rebuild(&self) -> Result<BTreeMap<String, TxnMetadata>, String> {
        let mut mem = BTreeMap::new();
        for (k, v) in &self.log {
            let (id, value) = log::decode_record(k, v.as_deref())
                .ok_or_else(|| format!("an undecodable record in the log: {k:?}"))?;
            match value {
                Some(v) => mem.insert(id.clone(), from_log(&id, &v)),
                None => mem.remove(&id),
            };
        }
        Ok(mem)
    }

    /// Loads the log and finishes every transaction found decided.
    fn load(&mut self) -> Result<(), String> {
        self.mem = self.rebuild()?;
        self.markers.clear();
        for (id, md) in &self.mem {
            if needs_markers(md).is_some() {
                self.stats.loaded_prepared += 1;
                if self.shell != Shell::ForgetPreparedOnLoad {
                    self.markers.push(id.clone());
                }
            }
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), String> {
        self.stats.restarts += 1;
        for w in std::mem::take(&mut self.writes) {
            if self.rng.permille(500) {
                self.stats.landed_at_crash += 1;
                self.land(&w)?;
            }
        }
        for p in &mut self.producers {
            // Their requests were cut off: they retry.
            p.waiting = false;
        }
        if self.shell == Shell::VolatileProducerIds {
            self.next_pid = FIRST_PID;
        }
        self.say(|| "restart".into());
        self.load()
    }

    /// A write's record reaches the log.
    fn land(&mut self, w: &Write) -> Result<(), String> {
        // An abort nobody asked for with NONE is a fence (a timeout, or an InitProducerId
        // over an open transaction): the producer memory still has is fenced once it lands.
        let fence =
            matches!(w.transit.then, Then::WriteMarkers { reply, .. } if reply != Some(code::NONE));
        let held = self
            .mem
            .get(&w.id)
            .map(|md| (md.producer_id, md.producer_epoch));
        self.append(&w.id, w.transit.record())?;
        if let (true, Some((pid, epoch))) = (fence, held) {
            self.oracle.fenced(&w.id, pid, epoch);
        }
        Ok(())
    }

    fn append(&mut self, id: &str, record: Option<TxnLogValue>) -> Result<(), String> {
        let key = log::encode_key(id);
        let value = record.as_ref().map(log::encode);
        let (read_id, read) = log::decode_record(&key, value.as_deref())
            .ok_or_else(|| format!("the record written for {id} does not decode"))?;
        if read_id != id {
            return Err(format!("the key of {id} reads back as {read_id}"));
        }
        self.say(|| format!("log {id}: {read:?}"));
        self.oracle.appended(id, read.as_ref())?;
        self.log.push((key, value));
        Ok(())
    }

    fn start_write(
        &mut self,
        id: &str,
        transit: Transit,
        asker: Option<(usize, Asked)>,
    ) -> Result<(), String> {
        if self.writes.iter().any(|w| w.id == id) {
            return Err(format!("two transits of {id} in flight"));
        }
        if let Some((i, _)) = asker {
            self.producers[i].waiting = true;
        }
        self.say(|| {
            format!(
                "write {id} -> {:?} ({:?})",
                transit.target.state, transit.then
            )
        });
        self.writes.push(Write {
            id: id.to_string(),
            transit,
            asker,
        });
        Ok(())
    }

    /// The write `k` succeeds or fails. `lost`: the client never gets the answer (its
    /// connection dropped) and retries.
    fn resolve_write(&mut self, k: usize, success: bool, lost: bool) -> Result<(), String> {
        let w = self.writes.remove(k);
        let apply = success || self.shell == Shell::ApplyFailedWrites;
        if success {
            self.land(&w)?;
        } else {
            self.stats.failed_writes += 1;
            self.say(|| format!("write of {} failed", w.id));
        }
        let md = self
            .mem
            .get_mut(&w.id)
            .ok_or_else(|| format!("a write for {}, which memory does not hold", w.id))?;
        if apply {
            let then = complete_transition(md, w.transit)
                .map_err(|c| format!("completing a transit of {} failed: {c}", w.id))?;
            match w.asker {
                Some((i, _)) if lost => {
                    self.stats.lost_answers += 1;
                    self.producers[i].waiting = false;
                    self.carry_out(&w.id, then, None, true)
                }
                asker => self.carry_out(&w.id, then, asker, false),
            }
        } else {
            if !abort_transition(md, &w.transit) {
                return Err(format!("{}'s failed transit was not the pending one", w.id));
            }
            if let Some((i, _)) = w.asker {
                // NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE: the client retries.
                self.producers[i].waiting = false;
            }
            if w.transit.target.state == TxnState::CompleteCommit
                || w.transit.target.state == TxnState::CompleteAbort
            {
                self.markers.push(w.id);
            }
            Ok(())
        }
    }

    /// Carries out what follows a written transit. `unanswered`: its client asked, but the
    /// answer was lost.
    fn carry_out(
        &mut self,
        id: &str,
        then: Then,
        asker: Option<(usize, Asked)>,
        unanswered: bool,
    ) -> Result<(), String> {
        self.say(|| format!("{id}: {then:?} for {asker:?} (answer lost: {unanswered})"));
        match (then, asker) {
            (Then::ReplyProducer { .. } | Then::ReplyNone, None) if unanswered => {}
            (
                Then::ReplyProducer {
                    producer_id,
                    producer_epoch,
                },
                Some((i, Asked::Init)),
            ) => {
                let p = &self.producers[i];
                if p.held.is_some_and(|(pid, _)| pid != producer_id) && producer_epoch == 0 {
                    self.stats.rotations += 1;
                }
                self.stats.handed_out += 1;
                self.oracle.handed(id, p.run, producer_id, producer_epoch)?;
                let p = &mut self.producers[i];
                p.held = Some((producer_id, producer_epoch));
                p.in_txn = false;
                p.initing = None;
                p.ending = None;
                p.waiting = false;
            }
            (Then::ReplyNone, Some((i, Asked::Add))) => {
                self.oracle
                    .succeeded(id, self.producers[i].held, "AddPartitions")?;
                let p = &mut self.producers[i];
                p.in_txn = true;
                p.waiting = false;
            }
            (Then::WriteMarkers { commit, reply }, asker) => {
                self.markers.push(id.to_string());
                match (asker, reply) {
                    (Some((i, Asked::End { commit: asked })), Some(code::NONE))
                        if asked == commit =>
                    {
                        self.oracle
                            .succeeded(id, self.producers[i].held, "EndTxn")?;
                        self.oracle.answered(id, commit)?;
                        self.end_answered(i, id)?;
                        let p = &mut self.producers[i];
                        p.in_txn = false;
                        p.ending = None;
                        p.waiting = false;
                    }
                    (Some((i, Asked::Init)), Some(code::CONCURRENT_TRANSACTIONS)) => {
                        self.stats.fenced_by_init += 1;
                        self.producers[i].waiting = false;
                    }
                    (None, Some(_)) if unanswered => {}
                    (None, None) => self.stats.timeouts += 1,
                    (asker, reply) => return Err(format!("markers answer {reply:?} to {asker:?}")),
                }
            }
            (Then::Completed, None) => {}
            (Then::Remove, None) => {
                self.stats.expirations += 1;
                self.mem.remove(id);
            }
            (then, asker) => return Err(format!("{then:?} for {asker:?}")),
        }
        Ok(())
    }

    /// EndTxn answered NONE to producer `i`: a version 2 producer goes on with the pair the
    /// id's metadata hands out (the coordinator's answer).
    fn end_answered(&mut self, i: usize, id: &str) -> Result<(), String> {
        if self.version_of(id) < 2 {
            return Ok(());
        }
        let md = self
            .mem
            .get(id)
            .ok_or_else(|| format!("EndTxn of {id} answered, which memory does not hold"))?;
        let pair = md.producer_after_markers();
        let p = &self.producers[i];
        self.oracle.handed_by_end(id, p.run, pair)?;
        self.stats.v2_bumps += 1;
        if p.held.is_some_and(|(pid, _)| pid != pair.0) {
            self.stats.v2_rotations += 1;
        }
        self.producers[i].held = Some(pair);
        Ok(())
    }

    /// The answer to a request that wrote nothing.
    fn answered_at_once(&mut self, i: usize, asked: Asked, result: i16) -> Result<(), String> {
        let id = self.producers[i].id;
        self.say(|| format!("producer {i} ({id}) {asked:?}: answered {result}"));
        match result {
            code::NONE => match asked {
                Asked::Add => {
                    self.oracle
                        .succeeded(id, self.producers[i].held, "AddPartitions")?;
                    self.producers[i].in_txn = true;
                }
                Asked::End { commit } => {
                    self.stats.end_retries_answered += 1;
                    // A version 2 retry is known by its epoch below the id's: the pair it
                    // holds may no longer be the newest, and the answer hands out the one
                    // that is.
                    if self.version_of(id) < 2 {
                        self.oracle
                            .succeeded(id, self.producers[i].held, "EndTxn")?;
                    } else {
                        self.oracle.retried_end(id, self.producers[i].held)?;
                    }
                    self.oracle.answered(id, commit)?;
                    self.end_answered(i, id)?;
                    self.producers[i].in_txn = false;
                    self.producers[i].ending = None;
                }
                Asked::Init => return Err("InitProducerId answered without a write".into()),
            },
            code::CONCURRENT_TRANSACTIONS => self.stats.concurrent += 1,
            code::INVALID_TRANSACTION_TIMEOUT => self.producers[i].initing = None,
            code::INVALID_TXN_STATE => {
                // Fatal for a classic producer's transaction: it starts over.
                self.stats.invalid_state += 1;
                let p = &mut self.producers[i];
                p.in_txn = false;
                p.ending = None;
            }
            code::PRODUCER_FENCED | code::INVALID_PRODUCER_ID_MAPPING => {
                // Fatal: the application starts a new producer, without id or epoch.
                if result == code::PRODUCER_FENCED {
                    self.stats.producer_fenced += 1;
                }
                let run = self.next_run;
                self.next_run += 1;
                let p = &mut self.producers[i];
                p.run = run;
                p.held = None;
                p.in_txn = false;
                p.initing = None;
                p.ending = None;
            }
            other => return Err(format!("unexpected answer {other} to {asked:?}")),
        }
        Ok(())
    }

    fn producer_acts(&mut self, i: usize) -> Result<(), String> {
        if self.producers[i].waiting {
            return Ok(());
        }
        let roll = self.rng.below(100);
        let p = &self.producers[i];
        let (id, held, in_txn, ending) = (p.id, p.held, p.in_txn, p.ending);
        if let Some(expected) = p.initing {
            return self.request_init(i, expected);
        }
        let Some((pid, epoch)) = held else {
            return self.request_init(i, None);
        };
        if let Some(commit) = ending {
            // A retry, now and then with the other outcome by mistake.
            let commit = commit != (roll < 5);
            return self.request_end(i, pid, epoch, commit);
        }
        match roll {
            0..=5 => {
                // The application restarts: a new run, which knows nothing.
                let run = self.next_run;
                self.next_run += 1;
                self.producers[i].run = run;
                self.producers[i].held = None;
                self.producers[i].in_txn = false;
                self.request_init(i, None)
            }
            6..=11 => self.request_init(i, Some((pid, epoch))),
            12..=54 => {
                let n = 1 + self.rng.below(2);
                let parts: Vec<(String, i32)> = (0..n)
                    .map(|_| {
                        let t = TOPICS[self.rng.below(TOPICS.len() as u64) as usize];
                        (t.to_string(), self.rng.below(3) as i32)
                    })
                    .collect();
                let version = self.version_of(id);
                let result = super::metadata::add_partitions(
                    self.mem.get_mut(id),
                    pid,
                    epoch,
                    &parts,
                    version,
                    self.now,
                );
                match result {
                    Ok(Some(t)) => self.start_write(id, t, Some((i, Asked::Add))),
                    Ok(None) => self.answered_at_once(i, Asked::Add, code::NONE),
                    Err(c) => self.answered_at_once(i, Asked::Add, c),
                }
            }
            // Ending with nothing open: an application's abort after writes that all failed
            // (fine in version 2), or a zombie's late EndTxn.
            _ if in_txn || roll > 90 => {
                let commit = self.rng.permille(if in_txn { 700 } else { 300 });
                self.producers[i].ending = Some(commit);
                self.request_end(i, pid, epoch, commit)
            }
            _ => Ok(()),
        }
    }

    fn request_init(&mut self, i: usize, expected: Option<(i64, i16)>) -> Result<(), String> {
        let id = self.producers[i].id;
        self.producers[i].initing = Some(expected);
        let timeout = match self.rng.below(100) {
            0..=2 => 0,
            3..=4 => MAX_TIMEOUT_MS + 1,
            r => [1000, 5000, 20_000, MAX_TIMEOUT_MS][(r % 4) as usize],
        };
        let before = self
            .mem
            .get(id)
            .map(|md| (md.producer_id, md.producer_epoch));
        let mut next_pid = self.next_pid;
        let mut alloc = || {
            next_pid += 1;
            Ok(next_pid - 1)
        };
        let result = init_producer_id(
            self.mem.get_mut(id),
            id,
            timeout,
            expected,
            MAX_TIMEOUT_MS,
            &mut alloc,
            self.now,
        );
        self.next_pid = next_pid;
        match result {
            Ok(plan) => {
                if let Then::ReplyProducer {
                    producer_id,
                    producer_epoch,
                } = plan.transit.then
                {
                    if before == Some((producer_id, producer_epoch)) {
                        // The retry of an InitProducerId whose answer was lost.
                        self.stats.kip360_repeats += 1;
                    }
                }
                if let Some(entry) = plan.new_entry {
                    self.mem.insert(id.to_string(), entry);
                }
                self.start_write(id, plan.transit, Some((i, Asked::Init)))
            }
            Err(c) => self.answered_at_once(i, Asked::Init, c),
        }
    }

    fn request_end(&mut self, i: usize, pid: i64, epoch: i16, commit: bool) -> Result<(), String> {
        let id = self.producers[i].id;
        let asked = Asked::End { commit };
        let version = self.version_of(id);
        let mut next_pid = self.next_pid;
        let mut alloc = || {
            next_pid += 1;
            Ok(next_pid - 1)
        };
        let result = end_txn(
            self.mem.get_mut(id),
            pid,
            epoch,
            commit,
            version,
            &mut alloc,
            self.now,
        );
        self.next_pid = next_pid;
        match result {
            Ok(Some(t)) => {
                if t.target.partitions.is_empty() {
                    self.stats.v2_empty_aborts += 1;
                }
                self.start_write(id, t, Some((i, asked)))
            }
            Ok(None) => self.answered_at_once(i, asked, code::NONE),
            Err(c) => self.answered_at_once(i, asked, c),
        }
    }

    fn write_markers(&mut self, k: usize) -> Result<(), String> {
        let id = self.markers.remove(k);
        let md = self
            .mem
            .get_mut(&id)
            .ok_or_else(|| format!("markers for {id}, which memory does not hold"))?;
        let t = complete_markers(md, self.now)
            .map_err(|c| format!("completing {id}'s markers: {c}"))?;
        if t.target.state == TxnState::CompleteCommit {
            self.stats.commits += 1;
        } else {
            self.stats.aborts += 1;
        }
        self.start_write(&id, t, None)
    }

    fn timer(&mut self) -> Result<(), String> {
        let ids: Vec<String> = self.mem.keys().cloned().collect();
        for id in ids {
            let Some(md) = self.mem.get_mut(&id) else {
                continue;
            };
            let t = match abort_timed_out(md, self.now) {
                Some(t) => Some(t),
                None => expire(md, self.now, EXPIRATION_MS),
            };
            if let Some(t) = t {
                self.start_write(&id, t, None)?;
            }
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), String> {
        for (id, md) in &self.mem {
            if md.producer_epoch < 0 {
                // Only an id's first InitProducerId is held before it is written.
                if self.oracle.last.contains_key(id) {
                    return Err(format!("{id} has no epoch in memory but is in the log"));
                }
                continue;
            }
            let logged = self
                .oracle
                .last
                .get(id)
                .ok_or_else(|| format!("{id} is in memory, not in the log: {md:?}"))?;
            if log::encode(&TxnLogValue::from(md)) != log::encode(logged) {
                return Err(format!(
                    "{id}: memory differs from the log\n memory {md:?}\n log    {logged:?}"
                ));
            }
            let max = self
                .mem_epochs
                .entry(md.producer_id)
                .or_insert(md.producer_epoch);
            if md.producer_epoch < *max {
                return Err(format!(
                    "{id}: producer id {} went back from epoch {max} to {} in memory",
                    md.producer_id, md.producer_epoch
                ));
            }
            *max = md.producer_epoch;
        }
        if let Some(id) = self
            .oracle
            .last
            .keys()
            .find(|id| !self.mem.contains_key(*id))
        {
            return Err(format!("{id} is in the log, not in memory"));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.now += self.rng.below(2500) as i64;
        match self.rng.below(100) {
            0..=44 => {
                let i = self.rng.below(PRODUCERS as u64) as usize;
                self.producer_acts(i)?;
            }
            45..=69 if !self.writes.is_empty() => {
                let k = self.rng.below(self.writes.len() as u64) as usize;
                let success = !self.rng.permille(150);
                let lost = self.rng.permille(60);
                self.resolve_write(k, success, lost)?;
            }
            70..=82 if !self.markers.is_empty() => {
                let k = self.rng.below(self.markers.len() as u64) as usize;
                self.write_markers(k)?;
            }
            83..=92 => self.timer()?,
            93..=94 if self.rng.permille(250) => self.restart()?,
            _ => {}
        }
        self.check()
    }

    /// Faults and clients stop; every write lands and every marker is written.
    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..100 {
            if self.writes.is_empty() && self.markers.is_empty() {
                break;
            }
            while !self.writes.is_empty() {
                self.resolve_write(0, true, false)?;
            }
            while !self.markers.is_empty() {
                self.write_markers(0)?;
            }
        }
        self.check()?;
        let durable = |mem: &BTreeMap<String, TxnMetadata>| -> BTreeMap<String, Bytes> {
            mem.iter()
                .filter(|(_, md)| md.producer_epoch >= 0)
                .map(|(id, md)| (id.clone(), log::encode(&TxnLogValue::from(md))))
                .collect()
        };
        if durable(&self.rebuild()?) != durable(&self.mem) {
            return Err("memory differs from a rebuild of the log".into());
        }
        for (id, md) in &self.mem {
            if md.pending().is_some() || needs_markers(md).is_some() {
                return Err(format!("{id} never completed: {md:?}"));
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64, steps: usize, shell: Shell, trace: bool) -> Stats {
    let fail = |step: usize, what: String| -> ! {
        panic!(
            "seed {seed} step {step}: {what}\n(replay with FJORD_TXN_SIM_SEED={seed} for a trace)"
        )
    };
    let mut sim = match Sim::new(seed, shell, trace) {
        Ok(sim) => sim,
        Err(e) => fail(0, e),
    };
    for step in 0..steps {
        sim.step = step;
        if let Err(e) = sim.step() {
            fail(step, e);
        }
    }
    sim.step = steps;
    if let Err(e) = sim.settle() {
        fail(steps, e);
    }
    sim.stats
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn run_seeds(count: u64, steps: usize, shell: Shell) -> Stats {
    if let Some(seed) = env("FJORD_TXN_SIM_SEED") {
        let stats = run_seed(seed, steps, shell, true);
        eprintln!("{stats:?}");
        return stats;
    }
    let mut total = Stats::default();
    for seed in 0..env("FJORD_TXN_SIM_SEEDS").unwrap_or(count) {
        total.add(&run_seed(seed, steps, shell, false));
    }
    total
}

#[test]
fn transactions_survive_zombies_failed_writes_restarts_and_timeouts() {
    let s = run_seeds(300, 500, Shell::Correct);
    // The run must reach every path it claims to test, or it proves nothing about them.
    let reached = [
        ("handed out", s.handed_out),
        ("rotations", s.rotations),
        ("KIP-360 repeats", s.kip360_repeats),
        ("fenced by init", s.fenced_by_init),
        ("timeouts", s.timeouts),
        ("expirations", s.expirations),
        ("commits", s.commits),
        ("aborts", s.aborts),
        ("EndTxn retries answered", s.end_retries_answered),
        ("PRODUCER_FENCED", s.producer_fenced),
        ("CONCURRENT_TRANSACTIONS", s.concurrent),
        ("INVALID_TXN_STATE", s.invalid_state),
        ("failed writes", s.failed_writes),
        ("restarts", s.restarts),
        ("writes landed at a crash", s.landed_at_crash),
        ("prepared transactions loaded", s.loaded_prepared),
        ("lost answers", s.lost_answers),
        ("version 2 epoch bumps", s.v2_bumps),
        ("version 2 rotations", s.v2_rotations),
        ("version 2 aborts with nothing open", s.v2_empty_aborts),
    ];
    for (what, n) in reached {
        assert!(n > 0, "no {what} in the run: {s:?}");
    }
}

#[test]
#[ignore = "long: thousands of seeds"]
fn transactions_survive_zombies_failed_writes_restarts_and_timeouts_long() {
    run_seeds(5000, 2000, Shell::Correct);
}

#[test]
#[should_panic(expected = "but the newest written is")]
fn checks_catch_a_shell_that_applies_failed_writes() {
    run_seeds(300, 500, Shell::ApplyFailedWrites);
}

#[test]
#[should_panic(expected = "never completed")]
fn checks_catch_a_shell_that_forgets_prepared_transactions_on_load() {
    run_seeds(300, 500, Shell::ForgetPreparedOnLoad);
}

#[test]
#[should_panic(expected = "producer id 2000")]
fn checks_catch_a_shell_whose_producer_ids_start_over_at_restart() {
    run_seeds(300, 500, Shell::VolatileProducerIds);
}

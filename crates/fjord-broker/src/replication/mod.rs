//! Partition replication, Kafka's way: followers fetch from the leader with the Fetch API,
//! the leader tracks them, derives the high watermark and asks the controller to change
//! the ISR (AlterPartition), and leader epochs fence stale leaders and truncate divergent
//! tails (KIP-101, KIP-279, KIP-320).
//!
//! [`state`] holds the rules as a pure state machine; this module and [`fetcher`] are the
//! shell that feeds it events and carries out what it decides.

pub mod checkpoint;
pub mod fetcher;
#[cfg(test)]
pub(crate) mod sim;
pub mod state;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use fjord_controller::partitions::{alter_code, AlterPartitionRequest};

use crate::replica::Partition;
use crate::state::{now_ms, BrokerState};
use state::IsrProposal;

/// How long a refused or failed ISR change waits before the leader may propose again, so
/// that a follower the controller will not admit (a fenced broker still fetching) does
/// not turn every fetch into a request to the controller.
const PROPOSAL_BACKOFF: Duration = Duration::from_millis(500);

/// Sends an ISR change to the active controller, off the async workers (the call waits
/// for the commit). On success the new ISR is applied here before returning.
///
/// A failure does not always mean the change was not made: the controller may have
/// committed it and then been cut off before answering. Forgetting the proposal then would
/// let this leader compute its high watermark without a member the controller counts in
/// the ISR, and commit records that member lacks. So, as Kafka does, the proposal is
/// forgotten only on a refusal that proves it was not applied (INELIGIBLE_REPLICA,
/// INVALID_REQUEST); an unanswered one is sent again while this broker still leads in
/// the same epochs; after any other refusal the leader waits for newer metadata, which
/// clears it.
pub fn propose(state: &Arc<BrokerState>, partition: &Arc<Partition>, proposal: IsrProposal) {
    let st = state.clone();
    let p = partition.clone();
    tracing::info!(
        topic = %p.topic,
        partition = p.index,
        isr = ?proposal.isr,
        "proposing a new ISR"
    );
    tokio::task::spawn_blocking(move || loop {
        let req = AlterPartitionRequest {
            topic_id: p.topic_id,
            partition: p.index,
            leader: st.node_id(),
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            isr: proposal.isr.clone(),
        };
        let refusal = match st.controller.alter_partition(req) {
            Ok(_) => {
                if let Err(e) = st.reconcile() {
                    tracing::error!(error = %e, "applying metadata after an ISR change failed");
                }
                return;
            }
            Err(e) => e,
        };
        let code = refusal.kafka_code();
        tracing::info!(topic = %p.topic, partition = p.index, code, error = %refusal, "ISR change not made");
        match code {
            alter_code::INELIGIBLE_REPLICA | alter_code::INVALID_REQUEST => {
                std::thread::sleep(PROPOSAL_BACKOFF);
                p.update(|s| s.proposal_failed());
                return;
            }
            // The partition moved on (new leader, new ISR, deleted): metadata will say.
            alter_code::FENCED_LEADER_EPOCH
            | alter_code::INVALID_UPDATE_VERSION
            | alter_code::NOT_LEADER_OR_FOLLOWER
            | alter_code::UNKNOWN_TOPIC_OR_PARTITION => return,
            // No answer (no controller, a timeout, a storage error): try again, unless
            // newer metadata has settled it meanwhile.
            _ => {
                std::thread::sleep(PROPOSAL_BACKOFF);
                if !p.update(|s| s.proposal_pending(&proposal)) {
                    return;
                }
            }
        }
    });
}

/// On every partition this broker leads: followers that stopped catching up for
/// `replica.lag.time.max.ms` are proposed out of the ISR. Checked every half of that
/// time, as Kafka does.
pub async fn shrink_lagging(state: Arc<BrokerState>) {
    let lag = state.config.replication.lag_time_max_ms;
    let mut every = tokio::time::interval(Duration::from_millis((lag / 2).max(10) as u64));
    loop {
        every.tick().await;
        for p in state.replicas.all() {
            if !p.is_leader() {
                continue;
            }
            if let Some(proposal) = p.update(|s| s.check_lagging(now_ms(), lag)) {
                propose(&state, &p, proposal);
            }
        }
    }
}

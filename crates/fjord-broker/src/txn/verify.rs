//! Produce-side verification of transactional writes (KIP-890 part 1), as Kafka does since
//! 3.6 (`transaction.partition.verification.enable`), and the implicit adds of transaction
//! version 2 (KIP-890 part 2).
//!
//! Before the first transactional batch of a transaction lands in a partition, the leader
//! asks the producer's coordinator whether that partition is in the producer's open
//! transaction. A late batch of a transaction that already ended (a retry stuck in the
//! network, a zombie producer) would otherwise open a transaction no coordinator knows of,
//! and hold the partition's last stable offset, and every read_committed consumer of it,
//! back forever. Once a producer's transaction is open in the partition, its later batches
//! need no question.
//!
//! A transaction version 2 producer (Produce v12+, TxnOffsetCommit v5+) never adds its
//! partitions itself: the leader asks the coordinator to add them instead of only
//! verifying, with the same question at the same moment.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProduceRequest, ProducerId, TopicName,
    TransactionalId,
};

use crate::error::code;
use crate::handlers::str;
use crate::state::BrokerState;

/// How long a leader waits for another broker's coordinator to answer.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_LIMIT: usize = 16 << 20;

/// What a leader asks the coordinator before a transaction's first batch in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Whether the partition is in the producer's open transaction (version 1 producers
    /// add it themselves first).
    Verify,
    /// Add it to the producer's transaction, which begins if none is open (version 2).
    Add,
}

impl Ask {
    /// The question for a Produce request of `version`: v12+ comes from transaction
    /// version 2 producers (the Java producer sends it only then).
    pub fn for_produce(version: i16) -> Ask {
        if version >= 12 {
            Ask::Add
        } else {
            Ask::Verify
        }
    }
}

/// The partitions of `req` whose transactional batches may not be appended, with the code
/// to answer: INVALID_TXN_STATE when the coordinator says the partition is not in the
/// producer's transaction, INVALID_PRODUCER_EPOCH when the producer is fenced there, and
/// NOT_ENOUGH_REPLICAS (retriable, as Kafka answers) when the coordinator could not say
/// (or, adding, is still writing the markers of the producer's last transaction).
pub async fn unverified(
    state: &Arc<BrokerState>,
    req: &ProduceRequest,
    ask_for: Ask,
) -> HashMap<(String, i32), i16> {
    let mut out = HashMap::new();
    let Some(id) = req.transactional_id.as_ref().map(|i| i.0.to_string()) else {
        return out;
    };
    // (producer id, epoch) → partitions whose first batch of a transaction this is.
    let mut wanted: BTreeMap<(i64, i16), Vec<(String, i32)>> = BTreeMap::new();
    for t in &req.topic_data {
        let topic = t.name.0.to_string();
        for p in &t.partition_data {
            let Some(records) = &p.records else { continue };
            let Some(Ok((h, _))) = fjord_log::batch::iter(records).next() else {
                continue;
            };
            if !h.is_transactional() || h.producer_id < 0 {
                continue;
            }
            let Some(partition) = state.replicas.get(&topic, p.index) else {
                continue;
            };
            if !partition.log.has_open_txn(h.producer_id, h.producer_epoch) {
                wanted
                    .entry((h.producer_id, h.producer_epoch))
                    .or_default()
                    .push((topic.clone(), p.index));
            }
        }
    }
    for (producer, partitions) in wanted {
        let codes = ask(state, &id, producer, &partitions, ask_for).await;
        for (p, c) in partitions.into_iter().zip(codes) {
            let refused = match c {
                code::NONE => continue,
                code::INVALID_TXN_STATE | code::INVALID_PRODUCER_ID_MAPPING => {
                    code::INVALID_TXN_STATE
                }
                code::PRODUCER_FENCED | code::INVALID_PRODUCER_EPOCH => {
                    code::INVALID_PRODUCER_EPOCH
                }
                _ => code::NOT_ENOUGH_REPLICAS,
            };
            out.insert(p, refused);
        }
    }
    out
}

/// Whether the producer's transaction is open at its epoch in the partition this broker
/// leads: then its batches there need no question.
pub fn open_here(state: &BrokerState, topic: &str, partition: i32, producer: (i64, i16)) -> bool {
    state
        .replicas
        .get(topic, partition)
        .is_some_and(|p| p.log.has_open_txn(producer.0, producer.1))
}

/// The coordinator's answer for each partition: this broker's own, or another's through
/// AddPartitionsToTxn v4 with verify_only, or v5 adding.
pub async fn ask(
    state: &Arc<BrokerState>,
    id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
    ask_for: Ask,
) -> Vec<i16> {
    let node = state.transactions.coordinator_node(state, id);
    if node == state.node_id() {
        let answer = match ask_for {
            Ask::Verify => state
                .transactions
                .verify_partitions(state, id, producer, partitions),
            Ask::Add => state
                .transactions
                .add_partitions(state, id, producer, partitions, 2)
                .await
                .map(|()| vec![code::NONE; partitions.len()]),
        };
        return match answer {
            Ok(codes) => codes,
            Err(c) => vec![c; partitions.len()],
        };
    }
    if node < 0 {
        return vec![code::COORDINATOR_NOT_AVAILABLE; partitions.len()];
    }
    match tokio::time::timeout(
        VERIFY_TIMEOUT,
        ask_remote(state, node, id, producer, partitions, ask_for),
    )
    .await
    {
        Ok(Ok(codes)) => codes,
        Ok(Err(e)) => {
            tracing::debug!(coordinator = node, error = %e, "transaction verification failed");
            vec![code::COORDINATOR_NOT_AVAILABLE; partitions.len()]
        }
        Err(_) => vec![code::COORDINATOR_NOT_AVAILABLE; partitions.len()],
    }
}

async fn ask_remote(
    state: &BrokerState,
    node: i32,
    id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
    ask_for: Ask,
) -> Result<Vec<i16>, String> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(str(id)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_verify_only(ask_for == Ask::Verify)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(str(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            ),
    ]);
    let mut conn = crate::broker_client::connect(state, node).await?;
    let answer: AddPartitionsToTxnResponse = crate::broker_client::call(
        &mut conn,
        "fjord-txn-verifier",
        1,
        &request,
        if ask_for == Ask::Verify { 4 } else { 5 },
        RESPONSE_LIMIT,
    )
    .await?;
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    for txn in answer.results_by_transaction {
        for t in txn.topic_results {
            for p in t.results_by_partition {
                codes.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.partition_error_code,
                );
            }
        }
    }
    Ok(partitions
        .iter()
        .map(|k| {
            codes
                .get(k)
                .copied()
                .unwrap_or(code::COORDINATOR_NOT_AVAILABLE)
        })
        .collect())
}

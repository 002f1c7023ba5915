//! InitProducerId for idempotent producers: a fresh producer id at epoch 0.
//!
//! Transactional producers (a transactional id) need the transaction coordinator, which
//! Fjord does not have yet. They are refused at once, both here and when they look for
//! their coordinator (FindCoordinator with key type 1), so that a client fails fast with a
//! clear message instead of retrying until its own timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::error::code;
use crate::state::BrokerState;

/// The code a transactional producer is refused with. It must be one that clients treat as
/// fatal when looking up the transaction coordinator; a retriable code such as
/// COORDINATOR_NOT_AVAILABLE leaves them retrying until their own timeout. librdkafka
/// gives up at once only on TRANSACTIONAL_ID_AUTHORIZATION_FAILED and
/// CLUSTER_AUTHORIZATION_FAILED, and shows the error_message with either. The Java
/// producer gives up on both too, but shows the error_message only for codes it has no
/// special case for, which of these two is CLUSTER_AUTHORIZATION_FAILED. Hence this one.
pub const TRANSACTIONS_REFUSED: i16 = code::CLUSTER_AUTHORIZATION_FAILED;

/// The `error_message` sent with [`TRANSACTIONS_REFUSED`], where the response has one.
pub const TRANSACTIONS_UNSUPPORTED: &str = "Fjord does not support transactions yet: use a \
     producer without transactional.id (idempotence alone is supported)";

/// At most one warning per this many milliseconds; the others are counted into the next.
const WARN_INTERVAL_MS: u64 = 10_000;

static LAST_WARN_MS: AtomicU64 = AtomicU64::new(0);
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Logs that a transactional producer was refused: one WARN line per refusal, but no more
/// than one per [`WARN_INTERVAL_MS`] so that a client retrying in a loop cannot flood the
/// log; the next line says how many were not logged.
pub fn warn_refused(api: &str, transactional_id: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = LAST_WARN_MS.load(Ordering::Relaxed);
    let due = last == 0 || now.saturating_sub(last) >= WARN_INTERVAL_MS;
    if !due
        || LAST_WARN_MS
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::warn!(
        api,
        transactional_id,
        suppressed,
        "refused a transactional producer: Fjord does not support transactions yet"
    );
}

pub fn init(state: &BrokerState, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if let Some(id) = &req.transactional_id {
        warn_refused("InitProducerId", id);
        return InitProducerIdResponse::default()
            .with_error_code(TRANSACTIONS_REFUSED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    match state.controller.allocate_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_error_code(code::NONE)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            InitProducerIdResponse::default()
                .with_error_code(code::COORDINATOR_NOT_AVAILABLE)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}

//! InitProducerId for idempotent producers: a fresh producer id at epoch 0.
//!
//! Transactional producers (a transactional id) need the transaction coordinator, which
//! Fjord does not have yet; they get a clear refusal instead of a half-working id.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::error::code;
use crate::state::BrokerState;

pub fn init(state: &BrokerState, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        tracing::warn!("refused a transactional producer: transactions are not supported yet");
        return InitProducerIdResponse::default()
            .with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
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

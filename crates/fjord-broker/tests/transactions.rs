//! Until Fjord has a transaction coordinator, transactional producers are refused at once
//! with a code Kafka clients treat as fatal, and a message that says why.

mod common;

use common::{s, TestBroker};
use kafka_protocol::messages::{FindCoordinatorRequest, InitProducerIdRequest, TransactionalId};

/// CLUSTER_AUTHORIZATION_FAILED: fatal for librdkafka and the Java producer, and both show
/// the error message with it.
const REFUSED: i16 = 31;

#[tokio::test]
async fn find_coordinator_refuses_transaction_keys_in_every_version() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    for version in 1..=3 {
        let r = c
            .request(
                FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_key(s("tx-1")),
                version,
            )
            .await;
        assert_eq!(r.error_code, REFUSED, "v{version}");
        assert_eq!(r.node_id.0, -1, "v{version}");
        let msg = r.error_message.map(|m| m.to_string()).unwrap_or_default();
        assert!(
            msg.contains("does not support transactions"),
            "v{version}: {msg}"
        );
    }
    // v0 has no key type: it always means a group.
    for version in 4..=6 {
        let r = c
            .request(
                FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_coordinator_keys(vec![s("tx-1"), s("tx-2")]),
                version,
            )
            .await;
        assert_eq!(r.coordinators.len(), 2, "v{version}");
        for co in &r.coordinators {
            assert_eq!(co.error_code, REFUSED, "v{version}");
            let msg = co.error_message.as_ref().map(|m| m.to_string());
            assert!(
                msg.is_some_and(|m| m.contains("does not support transactions")),
                "v{version}"
            );
        }
    }
    b.stop().await;
}

#[tokio::test]
async fn init_producer_id_refuses_a_transactional_id_but_serves_idempotence() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let r = c
        .request(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s("tx-1"))))
                .with_transaction_timeout_ms(60_000),
            4,
        )
        .await;
    assert_eq!(r.error_code, REFUSED);
    assert_eq!(r.producer_id.0, -1);
    let r = c
        .request(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(-1),
            4,
        )
        .await;
    assert_eq!(r.error_code, 0);
    assert!(r.producer_id.0 >= 0);
    b.stop().await;
}

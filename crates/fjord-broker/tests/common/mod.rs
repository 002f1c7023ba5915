//! Test harness: a real broker on an ephemeral loopback port, and a minimal client that
//! speaks the wire protocol through the `kafka-protocol` crate's encoders.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_broker::{BrokerConfig, Server};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FindCoordinatorRequest,
    GroupId, OffsetCommitRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestBroker {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut b = TestBroker::start_in(&dir, &[]).await;
        b._tmp = Some(tmp);
        b
    }

    pub async fn start_in(dir: &Path, props: &[(&str, &str)]) -> TestBroker {
        let mut map: BTreeMap<String, String> = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("listeners".into(), "PLAINTEXT://127.0.0.1:0".into());
        map.insert("log.dirs".into(), dir.display().to_string());
        let config = BrokerConfig::from_props(&map).expect("config");
        let server = Server::start(config).await.expect("start");
        let addr = server.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("run");
        });
        TestBroker {
            addr,
            dir: dir.to_path_buf(),
            _tmp: None,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Clean shutdown; returns the data directory's guard so it can be reopened.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task");
        }
        self._tmp.take()
    }

    /// Simulates the process being killed: the server task is dropped where it stands, so
    /// no log is flushed or closed (no clean-shutdown marker, no snapshot at close). What
    /// was written stays in the files, as the page cache keeps it when a process dies.
    /// Close this broker's clients first so their connection tasks end too.
    pub async fn crash(mut self) -> Option<tempfile::TempDir> {
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
        }
        // Only now: dropping the sender earlier would have started a clean shutdown.
        self.stop.take();
        self._tmp.take()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

pub struct Client {
    pub stream: TcpStream,
    correlation: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            correlation: 0,
        }
    }

    pub fn frame<R: Request>(&mut self, req: &R, version: i16) -> (i32, Bytes) {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("fjord-test")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .expect("encode header");
        req.encode(&mut buf, version).expect("encode body");
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        (self.correlation, buf.freeze())
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one response frame: (correlation id, body after the header).
    pub async fn read_frame(&mut self) -> std::io::Result<BytesMut> {
        let len = self.stream.read_i32().await?;
        let mut buf = BytesMut::zeroed(len as usize);
        self.stream.read_exact(&mut buf).await?;
        Ok(buf)
    }

    pub async fn request<R: Request>(&mut self, req: R, version: i16) -> R::Response {
        let (id, bytes) = self.frame(&req, version);
        self.send_raw(&bytes).await.expect("send");
        let mut frame = self.read_frame().await.expect("response");
        let api = ApiKey::try_from(R::KEY).expect("key");
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, id);
        R::Response::decode(&mut frame, version).expect("decode response")
    }

    /// True once the broker has closed this connection.
    pub async fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), self.stream.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// A v2 record batch as a client would build it.
pub fn batch(values: &[&[u8]], key: Option<&[u8]>, ts: i64, compression: Compression) -> Bytes {
    producer_batch(values, key, ts, compression, None)
}

/// A v2 record batch, from an idempotent producer when `producer` is `(producer id, epoch,
/// first sequence)`: sequences then count up from the first, one per record.
pub fn producer_batch(
    values: &[&[u8]],
    key: Option<&[u8]>,
    ts: i64,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    encode_batch(values, key, ts, compression, producer, false)
}

/// A transactional producer's uncompressed batch, `producer` = (id, epoch, first sequence).
pub fn transactional_batch(values: &[&[u8]], ts: i64, producer: (i64, i16, i32)) -> Bytes {
    encode_batch(values, None, ts, Compression::None, Some(producer), true)
}

fn encode_batch(
    values: &[&[u8]],
    key: Option<&[u8]>,
    ts: i64,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
    transactional: bool,
) -> Bytes {
    let (producer_id, producer_epoch, first_seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if producer.is_some() {
                first_seq + i as i32
            } else {
                -1
            },
            timestamp: ts + i as i64,
            key: key.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// Values of every record in a fetch's record bytes.
pub fn values(mut records: Bytes) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while records.has_remaining() {
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records)
            .expect("decode batch");
        for r in set.records {
            out.push(r.value.map(|v| v.to_vec()).unwrap_or_default());
        }
    }
    out
}

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Waits until the group coordinator has loaded (FindCoordinator answers without error).
pub async fn wait_for_coordinator(c: &mut Client) {
    for _ in 0..250 {
        let r = c
            .request(
                FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec![s("any")]),
                4,
            )
            .await;
        // FindCoordinator names the coordinator while it loads, as Kafka's does; the
        // group requests answer COORDINATOR_LOAD_IN_PROGRESS (14) until it is done.
        if r.coordinators[0].error_code == 0 {
            let groups = c
                .request(kafka_protocol::messages::ListGroupsRequest::default(), 4)
                .await;
            if groups.error_code == 0 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("coordinator never became available");
}

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub async fn create(c: &mut Client, topic: &str, partitions: i32, rf: i16) -> CreateTopicsResponse {
    create_with(c, topic, partitions, rf, &[]).await
}

pub async fn create_with(
    c: &mut Client,
    topic: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    let t = CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    c.request(
        CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(5000),
        7,
    )
    .await
}

pub fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

pub fn fetch_req(topic: &str, partition: i32, offset: i64, max_wait: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

pub fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(s(&format!("meta-{p}"))))
                    })
                    .collect(),
            )])
}

//! Load from clients that behave badly, for `bench/hostile-memory.sh`: it measures what
//! the broker's memory does under them. Not a test: it prints what it did and exits.
//!
//!     hostile_clients <host:port> unread-fetch   # 2 x 30 pipelined 64 MiB fetches, never read
//!     hostile_clients <host:port> big-produce    # 50 concurrent 50 MiB produces

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn frame<R: Request>(req: &R, version: i16, correlation: i32) -> Res<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(s("hostile")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, R::header_version(version))?;
    req.encode(&mut buf, version)?;
    let len = i32::try_from(buf.len() - 4)?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

async fn call(stream: &mut TcpStream, bytes: &[u8]) -> Res<()> {
    stream.write_all(bytes).await?;
    let len = stream.read_i32().await?;
    let mut body = vec![0u8; usize::try_from(len)?];
    stream.read_exact(&mut body).await?;
    Ok(())
}

fn batch(value_bytes: usize) -> Res<Bytes> {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from(vec![b'x'; value_bytes])),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

async fn create_topic(addr: &str, topic: &str, max_message_bytes: usize) -> Res<()> {
    let mut c = TcpStream::connect(addr).await?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(s("max.message.bytes"))
                .with_value(Some(s(&max_message_bytes.to_string())))])]);
    call(&mut c, &frame(&req, 5, 1)?).await
}

/// 64 MiB in the topic, then 2 connections each pipeline 30 fetches of all of it and
/// never read an answer (3.75 GiB if every answer were held).
async fn unread_fetch(addr: &str) -> Res<()> {
    create_topic(addr, "unread", 2 << 20).await?;
    let mut c = TcpStream::connect(addr).await?;
    let one = frame(&produce("unread", batch(1 << 20)?), 9, 1)?;
    for _ in 0..64 {
        call(&mut c, &one).await?;
    }
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(64 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s("unread")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(64 << 20)])]);
    let one = frame(&fetch, 12, 2)?;
    let mut wire = BytesMut::new();
    for _ in 0..30 {
        wire.extend_from_slice(&one);
    }
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(addr).await?;
        // The broker may stop reading; stop writing after a while either way.
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.write_all(&wire)).await;
        held.push(conn);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("unread-fetch: 2 connections x 30 pipelined 64 MiB fetches, never read");
    Ok(())
}

/// 50 connections each send one 50 MiB produce at the same time.
async fn big_produce(addr: &str) -> Res<()> {
    create_topic(addr, "big", 60 << 20).await?;
    let one = frame(&produce("big", batch(50 << 20)?), 9, 1)?;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let one = one.clone();
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(&addr).await?;
            call(&mut c, &one).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if matches!(t.await, Ok(Ok(()))) {
            ok += 1;
        }
    }
    println!("big-produce: 50 concurrent 50 MiB produces, {ok} answered");
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(mode)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: hostile_clients <host:port> unread-fetch|big-produce");
        std::process::exit(2);
    };
    match mode.as_str() {
        "unread-fetch" => unread_fetch(addr).await,
        "big-produce" => big_produce(addr).await,
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}

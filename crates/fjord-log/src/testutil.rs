//! Test helpers that build record batches with kafka-protocol's encoder, as a real client would.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Compression codecs the helpers can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec's id in a batch's attributes.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// Builds one v2 batch whose records have the given timestamps, starting at `base_offset`.
pub fn build_batch(base_offset: i64, timestamps: &[i64], codec: Codec) -> Vec<u8> {
    build_batch_with_value(base_offset, timestamps, codec, 16)
}

/// Like [`build_batch`] with `value_len`-byte values.
pub fn build_batch_with_value(
    base_offset: i64,
    timestamps: &[i64],
    codec: Codec,
    value_len: usize,
) -> Vec<u8> {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            // The encoder splits a batch wherever offset - sequence changes; counting up
            // from -1 keeps one batch with the non-idempotent base sequence of -1.
            sequence: i as i32 - 1,
            timestamp: *ts,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![(i % 251) as u8; value_len])),
            headers: [(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"v")),
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec.compression(),
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.to_vec()
}

/// One v2 record in Kafka's layout, with `headers` as (key, value) pairs.
pub fn raw_record(
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&[u8], Option<&[u8]>)],
) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varlong(&mut body, timestamp_delta);
    put_varlong(&mut body, offset_delta as i64);
    put_field(&mut body, key);
    put_field(&mut body, value);
    put_varlong(&mut body, headers.len() as i64);
    for (k, v) in headers {
        put_field(&mut body, Some(k));
        put_field(&mut body, *v);
    }
    let mut out = Vec::new();
    put_varlong(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// Kafka's zigzag varint (the same encoding serves 32 and 64 bits).
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_field(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        Some(d) => {
            put_varlong(out, d.len() as i64);
            out.extend_from_slice(d);
        }
        None => put_varlong(out, -1),
    }
}

/// Compresses record bytes the way clients do for `codec`; snappy uses the Java framing.
pub fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Snappy => {
            let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            for chunk in data.chunks(32 << 10) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Codec::Lz4 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(data).unwrap();
            let (out, result) = e.finish();
            result.unwrap();
            out
        }
        Codec::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

/// A v2 batch around an already encoded (and compressed) records payload, with a valid CRC.
pub fn assemble(
    payload: &[u8],
    codec_id: u8,
    records_count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(61 + payload.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&(codec_id as i16).to_be_bytes());
    b.extend_from_slice(&(records_count - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&records_count.to_be_bytes());
    b.extend_from_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

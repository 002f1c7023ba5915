//! CRC-framed JSON values, the on-disk unit of every quorum file.
//!
//! Layout: `length: u32 BE` (of the payload), `crc32c: u32 BE` (of the payload), payload =
//! one JSON value. The same layout as the single-node metadata log, so one recovery rule
//! fits both: a frame that does not decode is a torn tail only if nothing valid follows.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ControllerError;

const HEADER: usize = 8;
/// No single metadata entry or snapshot comes near this; a larger length means damage.
const MAX_FRAME: usize = 256 * 1024 * 1024;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ControllerError> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| ControllerError::Corrupt(format!("cannot encode a quorum frame: {e}")))?;
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes the frame at the start of `data`: the value and the bytes it used, or `None`
/// if the frame is incomplete, fails its checksum, or does not parse.
pub(crate) fn decode<T: DeserializeOwned>(data: &[u8]) -> Option<(T, usize)> {
    if data.len() < HEADER {
        return None;
    }
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let crc = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    if len > MAX_FRAME || data.len() < HEADER + len {
        return None;
    }
    let payload = &data[HEADER..HEADER + len];
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let value = serde_json::from_slice(payload).ok()?;
    Some((value, HEADER + len))
}

/// A file of frames, decoded: each value with the byte offset it starts at, and how many
/// leading bytes are valid. Bytes past `valid_len` are a torn tail to cut.
pub(crate) struct Decoded<T> {
    pub values: Vec<(u64, T)>,
    pub valid_len: u64,
}

/// Decodes a whole file of frames. Appends are fsynced one after another, so a crash can
/// only leave the last frame half-written; a bad frame with a valid one after it was
/// damaged after it was made durable, and is refused rather than cut, because cutting it
/// would forget everything after it.
pub(crate) fn decode_all<T: DeserializeOwned>(
    name: &str,
    data: &[u8],
) -> Result<Decoded<T>, ControllerError> {
    let mut values = Vec::new();
    let mut pos = 0usize;
    while let Some((value, used)) = decode::<T>(&data[pos..]) {
        values.push((pos as u64, value));
        pos += used;
    }
    if pos < data.len() {
        // Every later position is tried: the damaged frame's own length cannot be trusted.
        if let Some(next) = (pos + 1..data.len()).find(|&at| valid_frame_at(&data[at..])) {
            return Err(ControllerError::Corrupt(format!(
                "{name}: the frame at byte {pos} is damaged (bad length, checksum or \
                 encoding) but a valid frame follows at byte {next}; refusing to start rather \
                 than drop replicated metadata"
            )));
        }
    }
    Ok(Decoded {
        values,
        valid_len: pos as u64,
    })
}

/// Whether a checksummed JSON frame starts here, whatever value it holds.
fn valid_frame_at(data: &[u8]) -> bool {
    decode::<serde::de::IgnoredAny>(data).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_cuts_only_a_torn_tail() {
        let mut file = Vec::new();
        for n in 0..3u32 {
            file.extend(encode(&n).unwrap());
        }
        let whole = file.len();
        let d = decode_all::<u32>("f", &file).unwrap();
        assert_eq!(d.values.iter().map(|v| v.1).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(d.valid_len, whole as u64);
        // Every cut inside the last frame leaves the first two.
        let second_end = d.values[2].0 as usize;
        for cut in second_end..whole {
            let d = decode_all::<u32>("f", &file[..cut]).unwrap();
            assert_eq!(d.values.len(), 2, "cut at {cut}");
            assert_eq!(d.valid_len, second_end as u64);
        }
        // A zeroed tail (size reached disk before data) is a torn tail too.
        file.extend_from_slice(&[0u8; 64]);
        assert_eq!(decode_all::<u32>("f", &file).unwrap().values.len(), 3);
    }

    #[test]
    fn damage_before_a_valid_frame_is_refused() {
        let mut file = Vec::new();
        for n in 0..3u32 {
            file.extend(encode(&n).unwrap());
        }
        let d = decode_all::<u32>("f", &file).unwrap();
        let second = d.values[1].0 as usize;
        file[second + HEADER] ^= 0x55;
        let err = decode_all::<u32>("f", &file).err().expect("damage refused");
        assert!(err.to_string().contains(&format!("byte {second}")), "{err}");
    }
}

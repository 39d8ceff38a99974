//! Length-prefixed postcard frames: a big-endian u32 length, then that many bytes.
//!
//! `check` before `parse`: a partial frame waits for more bytes, an oversized length is an error
//! before anything is allocated for it. The cluster link (`crate::cluster`) uses the same frames
//! with its own limit (`*_limited`).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// No message comes near this; a bigger length means a broken or hostile peer.
pub const MAX_FRAME: usize = 1 << 20;

const HEADER: usize = 4;

#[derive(Debug)]
pub enum FrameError {
    TooLarge { len: usize, max: usize },
    Decode(postcard::Error),
    Encode(postcard::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            Self::Decode(e) => write!(f, "cannot decode frame (protocol mismatch?): {e}"),
            Self::Encode(e) => write!(f, "cannot encode frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    encode_limited(msg, MAX_FRAME)
}

/// The total length (header included) of the first frame in `buf` if it is complete.
pub fn check(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    check_limited(buf, MAX_FRAME)
}

/// Removes and decodes the first complete frame of `buf`, if any.
pub fn parse<T: DeserializeOwned>(buf: &mut Vec<u8>) -> Result<Option<T>, FrameError> {
    parse_limited(buf, MAX_FRAME)
}

/// `encode` with a limit of `max` bytes of body.
pub fn encode_limited<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = postcard::to_extend(msg, vec![0; HEADER]).map_err(FrameError::Encode)?;
    let len = out.len() - HEADER;
    let header = u32::try_from(len)
        .ok()
        .filter(|_| len <= max)
        .ok_or(FrameError::TooLarge { len, max })?;
    out[..HEADER].copy_from_slice(&header.to_be_bytes());
    Ok(out)
}

/// `check` with a limit of `max` bytes of body.
pub fn check_limited(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok((buf.len() >= HEADER + len).then_some(HEADER + len))
}

/// `parse` with a limit of `max` bytes of body.
pub fn parse_limited<T: DeserializeOwned>(
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<T>, FrameError> {
    let Some(total) = check_limited(buf, max)? else {
        return Ok(None);
    };
    let msg = postcard::from_bytes(&buf[HEADER..total]).map_err(FrameError::Decode);
    buf.drain(..total);
    msg.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::protocol::{Op, Request};

    #[test]
    fn round_trip_and_partial_frames_wait() {
        let req = Request {
            id: 7,
            op: Op::Start { id: "c1".into() },
        };
        let bytes = encode(&req).unwrap();
        let mut buf = bytes[..bytes.len() - 1].to_vec();
        assert_eq!(
            parse::<Request>(&mut buf).unwrap(),
            None,
            "partial frame must wait"
        );
        buf.push(*bytes.last().unwrap());
        buf.extend_from_slice(&bytes);
        assert_eq!(parse::<Request>(&mut buf).unwrap(), Some(req.clone()));
        assert_eq!(parse::<Request>(&mut buf).unwrap(), Some(req));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_the_body() {
        let buf = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
        assert!(matches!(check(&buf), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn mutated_frames_decode_or_fail_cleanly() {
        let frames: Vec<Vec<u8>> = [
            Op::Start { id: "c1".into() },
            Op::Delete {
                id: "container-with-a-longer-name".into(),
            },
        ]
        .into_iter()
        .enumerate()
        .map(|(i, op)| encode(&Request { id: i as u64, op }).unwrap())
        .collect();
        let corpus: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        crate::mutate::each_mutation(5, 20_000, &corpus, |input| {
            let mut buf = input.to_vec();
            // Every complete frame is consumed; an error stops the stream.
            while let Ok(Some(_)) = parse::<Request>(&mut buf) {}
            if let Ok(Some(total)) = check(input) {
                assert!(total <= input.len() && total <= HEADER + MAX_FRAME);
            }
        });
    }
}

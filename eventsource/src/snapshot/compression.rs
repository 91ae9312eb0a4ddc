//! Snapshot states stored compressed with zstd: what the SQL stores share.
//!
//! A state longer than the policy's `compress_over` (in bytes of JSON text) is stored
//! as a zstd frame in its own column, `state_zstd`, with `state` left `NULL`; a shorter
//! one, or one that zstd does not make smaller, is stored as plain JSON, as before. Both
//! kinds of row live in one table, and every reader accepts both: a frame that does not
//! decode (corrupt bytes, a state past [`MAX_STATE`], not UTF-8) makes the snapshot
//! unreadable, and the load replays the events, as for any unreadable snapshot.

use std::io::Read;

/// The zstd level: 3 is zstd's default, fast to write and faster still to read.
const LEVEL: i32 = 3;

/// The longest state stored compressed, and so the longest a frame may decode to: past
/// it, a frame is taken as corrupt rather than allowed to fill memory (a few corrupt
/// bytes can declare any length). Far above any state a snapshot is worth taking of;
/// a longer one is stored plain.
pub(crate) const MAX_STATE: u64 = 256 << 20;

/// The state compressed, when it is longer than `compress_over` bytes and compression
/// makes it smaller; `None` to store it as plain JSON.
pub(crate) fn compress(state: &str, compress_over: Option<usize>) -> Option<Vec<u8>> {
    let over = compress_over?;
    if state.len() <= over || state.len() as u64 > MAX_STATE {
        return None;
    }
    // With zstd's content checksum: a flipped bit is an unreadable snapshot (a replay),
    // never a different state.
    let frame = zstd::bulk::Compressor::new(LEVEL).and_then(|mut compressor| {
        compressor.include_checksum(true)?;
        compressor.compress(state.as_bytes())
    });
    match frame {
        Ok(frame) if frame.len() < state.len() => Some(frame),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(%error, "snapshot state not compressed; stored as plain JSON");
            None
        }
    }
}

/// The JSON text of a compressed state, or why it cannot be read.
pub(crate) fn decompress(frame: &[u8]) -> Result<String, String> {
    let mut decoder =
        zstd::stream::read::Decoder::new(frame).map_err(|e| format!("zstd state: {e}"))?;
    let mut text = Vec::new();
    (&mut decoder)
        .take(MAX_STATE + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("zstd state does not decompress: {e}"))?;
    if text.len() as u64 > MAX_STATE {
        return Err(format!("zstd state decompresses past {MAX_STATE} bytes"));
    }
    String::from_utf8(text).map_err(|e| format!("zstd state is not UTF-8: {e}"))
}

/// The state of a row read back: `state` when it is plain, `state_zstd` decompressed
/// when it is compressed; an error message when neither or both are set, or the frame
/// does not decode.
pub(crate) fn state_of(
    state: Option<String>,
    state_zstd: Option<Vec<u8>>,
) -> Result<String, String> {
    match (state, state_zstd) {
        (Some(state), None) => Ok(state),
        (None, Some(frame)) => decompress(&frame),
        (None, None) => Err("neither state nor state_zstd is set".to_owned()),
        (Some(_), Some(_)) => Err("both state and state_zstd are set".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_over_the_threshold_round_trips_and_one_below_stays_plain() {
        let state = format!("{{\"items\":[{}]}}", "\"abc\",".repeat(1000) + "\"z\"");
        let frame = compress(&state, Some(100)).expect("compressed");
        assert!(frame.len() < state.len());
        assert_eq!(decompress(&frame).unwrap(), state);
        assert_eq!(compress(&state, Some(state.len())), None);
        assert_eq!(compress(&state, None), None);
    }

    #[test]
    fn corrupt_frames_are_errors_not_panics() {
        assert!(decompress(b"").is_err() || decompress(b"").unwrap().is_empty());
        assert!(decompress(b"not zstd at all").is_err());
        let state = "{\"a\":\"".to_owned() + &"x".repeat(5000) + "\"}";
        let mut frame = compress(&state, Some(0)).unwrap();
        let cut = frame.len() / 2;
        frame.truncate(cut);
        assert!(decompress(&frame).is_err());
        assert!(state_of(None, None).is_err());
        // The content checksum: a flipped bit is an error or (in a bit zstd ignores) the
        // same state, never another one.
        let frame = compress(&state, Some(0)).unwrap();
        for at in 0..frame.len() {
            for bit in 0..8 {
                let mut flipped = frame.clone();
                flipped[at] ^= 1 << bit;
                if let Ok(read) = decompress(&flipped) {
                    assert_eq!(read, state, "byte {at} bit {bit} flipped");
                }
            }
        }
        assert!(state_of(Some("{}".into()), Some(vec![1])).is_err());
    }
}

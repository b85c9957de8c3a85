//! Any bytes as a node-to-node raft frame body: a frame or an error, never a panic, and a
//! decoded frame encodes back to the same bytes.
#![no_main]

use braid_engine::raft::wire::{decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((sender, messages)) = decode_frame(&bytes::Bytes::copy_from_slice(data)) {
        let frame = encode_frame(sender, &messages);
        assert_eq!(&frame[4..], data, "decode then encode is the identity");
    }
});

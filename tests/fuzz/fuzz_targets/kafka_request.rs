//! Any bytes as a Kafka request frame: decoding returns a request, an UNSUPPORTED_VERSION
//! verdict or an error, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = braid_node::kafka::decode_request(bytes::Bytes::copy_from_slice(data));
});

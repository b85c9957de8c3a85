//! Any bytes as a ZooKeeper client frame (after its length prefix): the connect request that
//! opens a connection, or a request after it. A request or an error, never a panic; a decoded
//! request encodes back to bytes that decode to the same request.
#![no_main]

use braid_node::zk::jute::{ConnectRequest, Request, Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ConnectRequest::decode(data);
    if let Ok(request) = Request::decode(data) {
        let mut w = Writer::default();
        request.encode(&mut w);
        assert_eq!(Request::decode(&w.bytes), Ok(request));
    }
});

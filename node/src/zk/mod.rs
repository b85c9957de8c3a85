//! The ZooKeeper front end. So far: the jute wire format of the client protocol
//! ([`jute`]: every request a ZooKeeper 3.8 client sends, decoded with bounds, and the
//! responses, encoded). The server on the client port, sessions and watches are not built yet.

pub mod jute;

//! The ZooKeeper front end: the jute wire format ([`jute`]), the connections on the client port
//! ([`conn`]) and the server state beside the tree on shard 0 ([`server`]).

pub mod conn;
pub mod jute;
pub mod server;

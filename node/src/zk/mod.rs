//! The ZooKeeper front end: the jute wire format ([`jute`]), the connections on the client port
//! ([`conn`]) and the server state beside the tree on shard 0 ([`server`]).
//!
//! The server's work is split by concern into private modules, each an `impl ZkServer` block:
//! `sessions`, `read`, `write`, `acl`, `watches` and `four_letter`.

mod acl;
pub mod conn;
pub mod four_letter;
pub mod jute;
mod read;
pub mod server;
mod sessions;
mod watches;
mod write;

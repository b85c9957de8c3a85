//! Which client connection may speak for a transactional id: a late request from a connection
//! the client has left must never act on the client's next transaction.
//!
//! Clients that do not bump the epoch per transaction (KIP-890 part 2: librdkafka, aiokafka and
//! every client before Kafka 4.0) send EndTxn with the same producer id and epoch for every
//! transaction. An EndTxn that times out is retried on a new connection; if the first one is
//! read late (the node stalled with it in the socket's buffer), after the retry completed the
//! transaction and the client began its next one, it would commit or abort that next
//! transaction halfway (KAFKA-17754: aborted reads, lost writes).
//!
//! Every Kafka connection a node accepts gets the next number of the node's count. For each
//! transactional id the coordinator keeps the newest connection that spoke for it, and refuses
//! (the connection is closed, the client reconnects and retries) a request from an older one.
//! When the id's state changes by another node's records (this node followed, or loaded a
//! predecessor's records), the client may have gone on elsewhere: only connections accepted
//! after that are heard, except for a request that begins a new transaction (nothing of the
//! client's can be cut short by it). Local to the node, never replicated.

use braid_engine::hash::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// The newest connection (by the node's accept count) that spoke for the id.
    Conn(u64),
    /// The id's state was changed by another node's record, applied here when the node had
    /// accepted this many connections.
    Elsewhere(u64),
}

#[derive(Debug, Default)]
pub struct Connections {
    heard: HashMap<String, Heard>,
}

impl Connections {
    /// True if a request for `id` from connection `conn` (None: not a client's) may act;
    /// `begins` if it begins a new transaction. An admitted connection becomes the id's newest.
    pub fn admit(&mut self, id: &str, conn: Option<u64>, begins: bool) -> bool {
        let Some(conn) = conn else { return true };
        if crate::mutation::active(crate::mutation::Mutation::StaleConnectionsHeard) {
            return true;
        }
        let admitted = match self.heard.get(id) {
            None => true,
            Some(Heard::Conn(newest)) => conn >= *newest,
            Some(Heard::Elsewhere(accepted)) => conn >= *accepted || begins,
        };
        if admitted {
            self.heard.insert(id.to_owned(), Heard::Conn(conn));
        }
        admitted
    }

    /// InitProducerId from `conn`: always heard (a new producer fences the old by its epoch),
    /// and the connection becomes the id's newest unless a newer one spoke already.
    pub fn note(&mut self, id: &str, conn: Option<u64>) {
        let Some(conn) = conn else { return };
        if !matches!(self.heard.get(id), Some(Heard::Conn(newest)) if *newest > conn) {
            self.heard.insert(id.to_owned(), Heard::Conn(conn));
        }
    }

    /// A record of another node (or of this one before it led) changed `id`'s state, applied
    /// when `accepted` connections had been accepted.
    pub fn changed_elsewhere(&mut self, id: &str, accepted: u64) {
        self.heard.insert(id.to_owned(), Heard::Elsewhere(accepted));
    }

    /// The id expired.
    pub fn forget(&mut self, id: &str) {
        self.heard.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_from_a_connection_older_than_the_ids_newest_is_refused() {
        let mut c = Connections::default();
        assert!(c.admit("t", Some(5), true), "a first connection");
        assert!(c.admit("t", Some(5), false));
        assert!(c.admit("t", Some(9), false), "the client reconnected");
        assert!(!c.admit("t", Some(5), false), "a late EndTxn from the connection it left");
        assert!(!c.admit("t", Some(5), true), "nor may it begin a transaction");
        assert!(c.admit("t", None, false), "a node's verification is not a client's request");
        assert!(c.admit("t", Some(9), false));
    }

    #[test]
    fn after_a_change_made_elsewhere_only_newer_connections_or_a_new_transaction_are_heard() {
        let mut c = Connections::default();
        assert!(c.admit("t", Some(3), true));
        c.changed_elsewhere("t", 10);
        assert!(!c.admit("t", Some(3), false), "the client went on at another node");
        assert!(c.admit("t", Some(3), true), "beginning a transaction cuts nothing short");
        assert!(c.admit("t", Some(3), false), "and the connection is the newest again");
        c.changed_elsewhere("t", 10);
        assert!(c.admit("t", Some(10), false), "accepted after the change");
        assert!(!c.admit("t", Some(3), true), "older than the newest");
    }

    #[test]
    fn init_producer_id_is_always_heard_and_never_makes_the_newest_older() {
        let mut c = Connections::default();
        c.note("t", Some(7));
        assert!(!c.admit("t", Some(6), false));
        c.note("t", Some(4));
        assert!(c.admit("t", Some(7), false), "a late InitProducerId from connection 4 left 7 the newest");
        c.changed_elsewhere("t", 20);
        c.note("t", Some(8));
        assert!(c.admit("t", Some(8), false));
        c.forget("t");
        assert!(c.admit("t", Some(1), false));
    }
}

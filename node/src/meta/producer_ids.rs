//! Producer ids (InitProducerId): each node hands them out from a block of its own, claimed
//! through the metadata log. A claim is a write naming the node and a fresh nonce; the zxid it
//! commits at fixes the block, so no two claims, by any nodes, ever get overlapping blocks.

use super::MetaStore;
use crate::msg::ProducerIdReply;
use crate::storage::NodeStorage;
use braid_engine::tree::Txn;
use tokio::sync::oneshot;

/// Where nodes claim blocks of producer ids (Kafka's path for the same purpose).
pub const PRODUCER_ID_BLOCK_PATH: &str = "/latest_producer_id_block";
/// Producer ids per block: a block is the committed zxid of its claim times this, so no two
/// claims (by any nodes) ever get overlapping blocks.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// Ticks before an unanswered claim is made again (it may have been lost on the way).
pub(super) const PRODUCER_BLOCK_RETRY_TICKS: u32 = 40;

impl<S: NodeStorage> MetaStore<S> {
    /// A new producer id (InitProducerId): from this node's block, or once a new block is
    /// claimed through the metadata log.
    pub fn producer_id(&mut self, now_ms: i64, reply: oneshot::Sender<ProducerIdReply>) {
        if let Some((next, last)) = self.producer_ids.as_mut().filter(|(next, last)| next <= last) {
            let id = *next;
            *next += 1;
            if *next > *last {
                self.producer_ids = None;
            }
            let _ = reply.send(Ok(id));
            return;
        }
        self.producer_id_waiters.push(reply);
        if self.producer_block_request.is_none() {
            self.claim_producer_block(now_ms);
        }
    }

    /// Claims a block: a write naming this node and a fresh nonce; the zxid it commits at
    /// fixes the block (see [`PRODUCER_ID_BLOCK`]).
    pub(super) fn claim_producer_block(&mut self, now_ms: i64) {
        let nonce = self.env.uuid().as_u128() as u64;
        let data = serde_json::json!({"version": 1, "broker": self.node_id, "nonce": nonce.to_string()})
            .to_string()
            .into_bytes();
        self.producer_block_request = Some((nonce, 0));
        self.propose_or_forward(&Txn::SetData { path: PRODUCER_ID_BLOCK_PATH.into(), data, version: -1 }, now_ms);
    }

    /// A transaction applied at `zxid`: if it is this node's block claim, the block is ours.
    pub(super) fn on_applied(&mut self, zxid: i64, txn: &Txn) {
        let Some((nonce, _)) = self.producer_block_request else { return };
        let Txn::SetData { path, data, .. } = txn else { return };
        if path != PRODUCER_ID_BLOCK_PATH {
            return;
        }
        let claim: Option<serde_json::Value> = serde_json::from_slice(data).ok();
        if claim.as_ref().and_then(|c| c["nonce"].as_str()) != Some(nonce.to_string().as_str()) {
            return;
        }
        self.producer_block_request = None;
        let first = zxid * PRODUCER_ID_BLOCK;
        let mut next = first;
        for waiter in std::mem::take(&mut self.producer_id_waiters) {
            if waiter.send(Ok(next)).is_ok() {
                next += 1;
            }
        }
        self.producer_ids = Some((next, first + PRODUCER_ID_BLOCK - 1));
        tracing::debug!(first, "claimed a block of producer ids");
    }
}

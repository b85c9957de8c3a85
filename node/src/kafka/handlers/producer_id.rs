//! InitProducerId for idempotent producers: a producer id unique in the cluster (from blocks
//! claimed through the metadata log, see `MetaStore::producer_id`) at epoch 0, or, for a
//! producer that asks with its id and epoch (KIP-360, after an error it cannot otherwise
//! recover from), the same id at the next epoch, which starts its sequences over.
//! A transactional id goes to its transaction coordinator (`txn`).

use crate::kafka::ClientConn;
use crate::shared::ShardCtx;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use std::rc::Rc;

pub async fn handle(ctx: Rc<ShardCtx>, conn: ClientConn, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if let Some(id) = request.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        let id = id.to_string();
        let expected = (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        return super::txn::init(&ctx, id, (request.transaction_timeout_ms, Some(conn.seq)), expected).await;
    }
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    if id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        response.producer_id = ProducerId(id);
        response.producer_epoch = epoch + 1;
        return response;
    }
    match super::new_producer_id(&ctx).await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(code) => response.error_code = code,
    }
    response
}

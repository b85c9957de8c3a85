//! InitProducerId for idempotent producers: a producer id unique in the cluster (from blocks
//! claimed through the metadata log, see `MetaStore::producer_id`) at epoch 0, or, for a
//! producer that asks with its id and epoch (KIP-360, after an error it cannot otherwise
//! recover from), the same id at the next epoch, which starts its sequences over.
//! Transactions (a transactional id) are not served.

use crate::msg::ShardMsg;
use crate::shared::ShardCtx;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use std::rc::Rc;
use std::time::Duration;

/// How long a request waits for a block of ids (no controller reachable: the client retries).
const WAIT: Duration = Duration::from_secs(10);

pub async fn handle(ctx: Rc<ShardCtx>, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return response;
    }
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    if id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        response.producer_id = ProducerId(id);
        response.producer_epoch = epoch + 1;
        return response;
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    if ctx.shared.senders[0].send(ShardMsg::ProducerId { reply }).await.is_err() {
        response.error_code = ResponseError::CoordinatorNotAvailable.code();
        return response;
    }
    match tokio::time::timeout(WAIT, answer).await {
        Ok(Ok(Ok(id))) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Ok(Ok(Err((code, message)))) => {
            tracing::warn!(code, %message, "no producer id");
            response.error_code = code;
        }
        _ => response.error_code = ResponseError::CoordinatorNotAvailable.code(),
    }
    response
}

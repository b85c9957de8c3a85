//! DescribeCluster: the registered brokers (at their addresses for the listener the client
//! connected through), the controller, the cluster id.

use super::str_bytes;
use crate::shared::ShardCtx;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterResponse};
use std::rc::Rc;

pub async fn describe(ctx: Rc<ShardCtx>, listener: usize) -> DescribeClusterResponse {
    let snapshot = ctx.snapshot.borrow().clone();
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(snapshot.cluster_id.clone());
    response.controller_id = BrokerId(snapshot.controller.unwrap_or(-1));
    response.brokers = super::metadata::brokers(&snapshot, &ctx.shared.config, listener)
        .map(|(id, host, port)| {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(id);
            broker.host = host;
            broker.port = port;
            broker
        })
        .collect();
    response
}

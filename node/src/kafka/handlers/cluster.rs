//! DescribeCluster: the registered brokers, the controller, the cluster id.

use super::str_bytes;
use crate::runtime::ShardCtx;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterResponse};
use std::rc::Rc;

pub async fn describe(ctx: Rc<ShardCtx>) -> DescribeClusterResponse {
    let snapshot = ctx.snapshot.borrow().clone();
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(snapshot.cluster_id.clone());
    response.controller_id = BrokerId(snapshot.controller.unwrap_or(-1));
    response.brokers = snapshot
        .brokers
        .iter()
        .map(|(&id, addr)| {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(id);
            broker.host = str_bytes(addr.ip().to_string());
            broker.port = i32::from(addr.port());
            broker
        })
        .collect();
    response
}

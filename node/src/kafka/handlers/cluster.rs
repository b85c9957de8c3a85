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
    let config = &ctx.shared.config;
    response.brokers = super::metadata::brokers(&snapshot, config.node_id, config.kafka_addr)
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

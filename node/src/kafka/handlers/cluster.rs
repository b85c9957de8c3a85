//! DescribeCluster: this node, the controller (itself), the cluster id.

use super::str_bytes;
use crate::runtime::ShardCtx;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterResponse};
use std::rc::Rc;

pub async fn describe(ctx: Rc<ShardCtx>) -> DescribeClusterResponse {
    let snapshot = ctx.snapshot.borrow().clone();
    let config = &ctx.shared.config;
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(config.node_id);
    broker.host = str_bytes(config.kafka_addr.ip().to_string());
    broker.port = i32::from(config.kafka_addr.port());
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(snapshot.cluster_id.clone());
    response.controller_id = BrokerId(config.node_id);
    response.brokers = vec![broker];
    response
}

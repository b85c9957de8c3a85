//! `braid cluster status`: the cluster as a node's Metadata shows it: each broker with the
//! replicas it holds and the partitions it leads, then every partition.

use crate::client::Client;
use clap::Subcommand;
use kafka_protocol::messages::MetadataRequest;

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Brokers (with their replica and leader counts), the controller, and every partition's
    /// leader and replicas.
    Status,
}

pub fn run(bootstrap: &str, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => {
            let mut client = Client::connect(bootstrap)?;
            let mut request = MetadataRequest::default();
            // Null topics: all of them.
            request.topics = None;
            let metadata = client.call(request)?;
            let cluster_id = metadata.cluster_id.as_ref().map_or("", |id| id.as_str());
            println!("cluster {cluster_id} controller {}", metadata.controller_id.0);
            let partitions = || metadata.topics.iter().flat_map(|t| t.partitions.iter());
            for broker in &metadata.brokers {
                let id = broker.node_id;
                let replicas = partitions().filter(|p| p.replica_nodes.contains(&id)).count();
                let leaders = partitions().filter(|p| p.leader_id == id).count();
                println!(
                    "broker {} {} replicas {replicas} leaders {leaders}",
                    id.0,
                    crate::client::broker_address(broker)
                );
            }
            let mut topics: Vec<_> = metadata.topics.iter().collect();
            topics.sort_by(|a, b| a.name.as_ref().map(|n| n.0.as_str()).cmp(&b.name.as_ref().map(|n| n.0.as_str())));
            for topic in topics {
                let name = topic.name.as_ref().map_or("", |n| n.0.as_str());
                let mut partitions: Vec<_> = topic.partitions.iter().collect();
                partitions.sort_by_key(|p| p.partition_index);
                for p in partitions {
                    let replicas: Vec<String> = p.replica_nodes.iter().map(|r| r.0.to_string()).collect();
                    println!(
                        "partition {name}-{} leader {} epoch {} replicas {}",
                        p.partition_index,
                        p.leader_id.0,
                        p.leader_epoch,
                        replicas.join(",")
                    );
                }
            }
            Ok(())
        }
    }
}

//! Topic changes on shard 0 (the controller's side of CreateTopics, DeleteTopics, CreatePartitions,
//! configs and moves): checked against the tree, then proposed, and answered once applied; replica
//! placement.

use super::*;

impl ShardState {
    /// Replica sets for partitions `from..to` of a topic: `replication_factor` consecutive
    /// members, starting at a place that moves with the topic and the partition, so replicas
    /// and first replicas (preferred leaders) spread over the nodes.
    pub(super) fn place(&self, name: &str, from: i32, to: i32, replication_factor: usize) -> Vec<Vec<i32>> {
        let members = self.shared.config.members();
        let offset = crc32c::crc32c(name.as_bytes()) as usize;
        (from..to)
            .map(|p| {
                let start = offset.wrapping_add(p as usize);
                (0..replication_factor).map(|i| members[(start + i) % members.len()]).collect()
            })
            .collect()
    }

    /// Handles a topic change on shard 0: refused or validated at once (the reply is handed
    /// back, or answered with an error), else proposed, and answered once it has applied.
    pub(super) fn meta_op(
        &mut self,
        op: MetaOp,
        now: i64,
        reply: oneshot::Sender<MetaReply>,
    ) -> Option<oneshot::Sender<MetaReply>> {
        let result = self.meta_op_inner(op, now, reply);
        match result {
            Ok(reply) => reply,
            Err((reply, error)) => {
                let _ = reply.send(Err(error));
                None
            }
        }
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn meta_op_inner(
        &mut self,
        op: MetaOp,
        now: i64,
        reply: oneshot::Sender<MetaReply>,
    ) -> Result<Option<oneshot::Sender<MetaReply>>, (oneshot::Sender<MetaReply>, (Code, String))> {
        let default_partitions = self.shared.config.default_partitions;
        let members = self.shared.config.members().len();
        let Some(meta) = self.meta.as_ref() else {
            return Err((reply, (ResponseError::NotController.code(), "metadata changes go to shard 0".into())));
        };
        if let Some(why) = meta.starting() {
            // Its tree may not hold what earlier controllers committed: nothing is checked
            // against it yet.
            return Err((reply, (ResponseError::NotController.code(), why.into())));
        }
        let snapshot = meta.snapshot();
        let unknown =
            |name: &str| (ResponseError::UnknownTopicOrPartition.code(), format!("Topic '{name}' does not exist."));
        match op {
            MetaOp::CreateTopic { name, partitions, replication_factor, configs, validate_only, forward } => {
                if let Err(m) = topic_config::validate_topic_name(&name) {
                    return Err((reply, (ResponseError::InvalidTopicException.code(), m)));
                }
                let partitions = if partitions == -1 { default_partitions } else { partitions };
                if !(1..=100_000).contains(&partitions) {
                    let message = format!("Number of partitions must be 1..100000, not {partitions}");
                    return Err((reply, (ResponseError::InvalidPartitions.code(), message)));
                }
                let replication_factor = match replication_factor {
                    -1 => self.shared.config.default_replication_factor,
                    rf => rf,
                };
                if replication_factor < 1 || replication_factor as usize > members {
                    let message =
                        format!("Replication factor: {replication_factor} larger than available brokers: {members}.");
                    return Err((reply, (ResponseError::InvalidReplicationFactor.code(), message)));
                }
                if replication_factor == 2 && !validate_only {
                    // A raft group of two needs both: unlike Kafka's ISR, it cannot shrink to one.
                    tracing::warn!(topic = %name, "replication factor 2 survives no node failure (a majority of 2 is 2); use 3");
                }
                for (k, v) in &configs {
                    if let Err(m) = topic_config::validate(k, v) {
                        return Err((reply, (ResponseError::InvalidConfig.code(), m)));
                    }
                }
                if snapshot.topics.contains_key(&name) {
                    let message = format!("Topic '{name}' already exists.");
                    return Err((reply, (ResponseError::TopicAlreadyExists.code(), message)));
                }
                if validate_only {
                    return Ok(Some(reply));
                }
                let topic = TopicMeta {
                    id: uuid::Uuid::new_v4(),
                    partitions: self.place(&name, 0, partitions, replication_factor as usize),
                    configs,
                    reassigning: BTreeMap::new(),
                };
                let meta = self.meta.as_mut().expect("checked above");
                if forward && !meta.is_leader() {
                    meta.forward_create_topic(&name, &topic, now);
                    let message = format!("Topic '{name}' is being created.");
                    return Err((reply, (ResponseError::LeaderNotAvailable.code(), message)));
                }
                meta.create_topic(&name, &topic, now, reply);
                Ok(None)
            }
            MetaOp::DeleteTopic { name } => {
                if !snapshot.topics.contains_key(&name) {
                    return Err((reply, unknown(&name)));
                }
                self.meta.as_mut().expect("checked above").delete_topic(&name, now, reply);
                Ok(None)
            }
            MetaOp::CreatePartitions { name, count, validate_only } => {
                let Some(topic) = snapshot.topics.get(&name) else {
                    return Err((reply, unknown(&name)));
                };
                let current = topic.partitions.len() as i32;
                if count <= current || count > 100_000 {
                    let message = format!("Topic currently has {current} partitions, which is higher than or equal to the requested {count}.");
                    return Err((reply, (ResponseError::InvalidPartitions.code(), message)));
                }
                if validate_only {
                    return Ok(Some(reply));
                }
                let replication_factor = topic.partitions.first().map_or(1, Vec::len);
                let mut topic = TopicMeta::clone(topic);
                topic.partitions.extend(self.place(&name, current, count, replication_factor));
                self.meta.as_mut().expect("checked above").update_topic(&name, &topic, now, reply);
                Ok(None)
            }
            MetaOp::SetConfigs { name, configs, validate_only } => {
                let Some(topic) = snapshot.topics.get(&name) else {
                    return Err((reply, unknown(&name)));
                };
                for (k, v) in &configs {
                    if let Err(m) = topic_config::validate(k, v) {
                        return Err((reply, (ResponseError::InvalidConfig.code(), m)));
                    }
                }
                if validate_only {
                    return Ok(Some(reply));
                }
                let mut topic = TopicMeta::clone(topic);
                topic.configs = configs;
                self.meta.as_mut().expect("checked above").update_topic(&name, &topic, now, reply);
                Ok(None)
            }
            MetaOp::Reassign { name, partition, replicas } => {
                let Some(topic) =
                    snapshot.topics.get(&name).filter(|t| (0..t.partitions.len() as i32).contains(&partition))
                else {
                    return Err((reply, unknown(&name)));
                };
                let moving = topic.reassigning.contains_key(&partition);
                let target = match replicas {
                    None if !moving => {
                        let message = format!("no reassignment of {name}-{partition} is in progress");
                        return Err((reply, (ResponseError::NoReassignmentInProgress.code(), message)));
                    }
                    None => topic.original(partition),
                    Some(_) if moving => {
                        let message = format!("{name}-{partition} is being moved already; cancel that move first");
                        return Err((reply, (ResponseError::ReassignmentInProgress.code(), message)));
                    }
                    Some(target) => target,
                };
                let members = self.shared.config.members();
                let distinct: HashSet<i32> = target.iter().copied().collect();
                if target.is_empty() || distinct.len() != target.len() || target.iter().any(|r| !members.contains(r)) {
                    let message = format!("replicas {target:?} must be distinct members of the cluster {members:?}");
                    return Err((reply, (ResponseError::InvalidReplicaAssignment.code(), message)));
                }
                let mut topic = TopicMeta::clone(topic);
                topic.reassign(partition, target);
                self.meta.as_mut().expect("checked above").update_topic(&name, &topic, now, reply);
                Ok(None)
            }
        }
    }
}

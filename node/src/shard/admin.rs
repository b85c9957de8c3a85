//! Topic changes on shard 0 (the controller's side of CreateTopics, DeleteTopics, CreatePartitions,
//! configs and moves): checked against the tree, then proposed, and answered once applied; replica
//! placement.

use super::*;
use crate::metadata::MetaSnapshot;

/// What a topic change comes to once checked against the tree.
enum Planned {
    /// `validate_only`: it would succeed; nothing changes.
    Validated,
    Create {
        name: String,
        topic: TopicMeta,
        forward: bool,
    },
    Delete {
        name: String,
    },
    /// The topic as it is to be (more partitions, other configs, a move begun or cancelled).
    Update {
        name: String,
        topic: TopicMeta,
    },
    /// Preferred leaders asked for these partitions.
    Elect {
        partitions: Vec<(String, i32)>,
    },
}

type Refusal = (Code, String);

fn unknown(name: &str) -> Refusal {
    (ResponseError::UnknownTopicOrPartition.code(), format!("Topic '{name}' does not exist."))
}

fn check_configs(configs: &BTreeMap<String, String>) -> Result<(), Refusal> {
    for (k, v) in configs {
        topic_config::validate(k, v).map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
    }
    Ok(())
}

impl<S: NodeStorage> ShardState<S> {
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
        let planned = match self.plan(op) {
            Ok(planned) => planned,
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
                return None;
            }
        };
        let Some(meta) = self.meta.as_mut() else {
            unreachable!("a change is planned only where the metadata store is (shard 0)");
        };
        match planned {
            Planned::Validated => return Some(reply),
            Planned::Create { name, topic, forward } => {
                if forward && !meta.is_leader() {
                    meta.forward_create_topic(&name, &topic, now);
                    let message = format!("Topic '{name}' is being created.");
                    let _ = reply.send(Err((ResponseError::LeaderNotAvailable.code(), message)));
                    return None;
                }
                meta.create_topic(&name, &topic, now, reply);
            }
            Planned::Delete { name } => meta.delete_topic(&name, now, reply),
            Planned::Update { name, topic } => meta.update_topic(&name, &topic, now, reply),
            Planned::Elect { partitions } => meta.request_preferred_election(&partitions, now, reply),
        }
        None
    }

    /// Checks a topic change against the tree: what it comes to, or why it is refused.
    fn plan(&self, op: MetaOp) -> Result<Planned, Refusal> {
        let Some(meta) = self.meta.as_ref() else {
            return Err((ResponseError::NotController.code(), "metadata changes go to shard 0".into()));
        };
        if let Some(why) = meta.starting() {
            // Its tree may not hold what earlier controllers committed: nothing is checked
            // against it yet.
            return Err((ResponseError::NotController.code(), why.into()));
        }
        let snapshot = meta.snapshot();
        match op {
            MetaOp::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                validate_only,
                forward,
                assignment,
            } => {
                let (partitions, replication_factor) = match &assignment {
                    Some(assignment) => (assignment.len() as i32, assignment.first().map_or(0, Vec::len) as i16),
                    None => (partitions, replication_factor),
                };
                let create = Create { partitions, replication_factor, configs, validate_only, assignment };
                let topic = self.plan_create(&snapshot, &name, create)?;
                Ok(topic.map_or(Planned::Validated, |topic| Planned::Create { name, topic, forward }))
            }
            MetaOp::DeleteTopic { name } => match snapshot.topics.contains_key(&name) {
                true => Ok(Planned::Delete { name }),
                false => Err(unknown(&name)),
            },
            MetaOp::CreatePartitions { name, count, validate_only, assignment } => {
                let topic = snapshot.topics.get(&name).ok_or_else(|| unknown(&name))?;
                let current = topic.partitions.len() as i32;
                if count <= current || count > 100_000 {
                    let message = format!("Topic currently has {current} partitions, which is higher than or equal to the requested {count}.");
                    return Err((ResponseError::InvalidPartitions.code(), message));
                }
                let replication_factor = topic.partitions.first().map_or(1, Vec::len);
                if let Some(assignment) = &assignment {
                    // Kafka's checks: one replica list per new partition, each as long as the
                    // topic's replication factor, of distinct members.
                    if assignment.len() as i32 != count - current {
                        let message = format!(
                            "Increasing the number of partitions by {} but {} assignments provided.",
                            count - current,
                            assignment.len()
                        );
                        return Err((ResponseError::InvalidReplicaAssignment.code(), message));
                    }
                    check_assignment(assignment, &self.shared.config.members())?;
                    if assignment.first().is_some_and(|r| r.len() != replication_factor) {
                        let message =
                            format!("The replication factor of the new partitions must be {replication_factor}.");
                        return Err((ResponseError::InvalidReplicaAssignment.code(), message));
                    }
                }
                if validate_only {
                    return Ok(Planned::Validated);
                }
                let mut topic = TopicMeta::clone(topic);
                let added = assignment.unwrap_or_else(|| self.place(&name, current, count, replication_factor));
                topic.partitions.extend(added);
                Ok(Planned::Update { name, topic })
            }
            MetaOp::SetConfigs { name, configs, validate_only } => {
                let topic = snapshot.topics.get(&name).ok_or_else(|| unknown(&name))?;
                check_configs(&configs)?;
                if validate_only {
                    return Ok(Planned::Validated);
                }
                let mut topic = TopicMeta::clone(topic);
                topic.configs = configs;
                Ok(Planned::Update { name, topic })
            }
            MetaOp::Reassign { name, partition, replicas } => {
                let topic = self.plan_reassign(&snapshot, &name, partition, replicas)?;
                Ok(Planned::Update { name, topic })
            }
            MetaOp::ElectPreferred { partitions } => Ok(Planned::Elect { partitions }),
            MetaOp::DeleteRecords { name, starts } => {
                let topic = snapshot.topics.get(&name).ok_or_else(|| unknown(&name))?;
                if starts.iter().any(|(p, _)| !(0..topic.partitions.len() as i32).contains(p)) {
                    return Err(unknown(&name));
                }
                let moved: Vec<(i32, i64)> = starts
                    .into_iter()
                    .filter(|(p, offset)| topic.log_start.get(p).is_none_or(|start| start < offset))
                    .collect();
                if moved.is_empty() {
                    return Ok(Planned::Validated);
                }
                let mut topic = TopicMeta::clone(topic);
                topic.log_start.extend(moved);
                Ok(Planned::Update { name, topic })
            }
        }
    }

    /// A new topic as it is to be stored, or None when only validated.
    fn plan_create(&self, snapshot: &MetaSnapshot, name: &str, create: Create) -> Result<Option<TopicMeta>, Refusal> {
        let Create { partitions, replication_factor, configs, validate_only, assignment } = create;
        if let Some(assignment) = &assignment {
            check_assignment(assignment, &self.shared.config.members())?;
        }
        let members = self.shared.config.members().len();
        topic_config::validate_topic_name(name).map_err(|m| (ResponseError::InvalidTopicException.code(), m))?;
        let partitions = if partitions == -1 { self.shared.config.default_partitions } else { partitions };
        if !(1..=100_000).contains(&partitions) {
            let message = format!("Number of partitions must be 1..100000, not {partitions}");
            return Err((ResponseError::InvalidPartitions.code(), message));
        }
        let replication_factor = match replication_factor {
            -1 => self.shared.config.default_replication_factor,
            rf => rf,
        };
        if replication_factor < 1 || replication_factor as usize > members {
            let message = format!("Replication factor: {replication_factor} larger than available brokers: {members}.");
            return Err((ResponseError::InvalidReplicationFactor.code(), message));
        }
        if replication_factor == 2 && !validate_only {
            // A raft group of two needs both: unlike Kafka's ISR, it cannot shrink to one.
            tracing::warn!(topic = %name, "replication factor 2 survives no node failure (a majority of 2 is 2); use 3");
        }
        check_configs(&configs)?;
        if snapshot.topics.contains_key(name) {
            return Err((ResponseError::TopicAlreadyExists.code(), format!("Topic '{name}' already exists.")));
        }
        if validate_only {
            return Ok(None);
        }
        Ok(Some(TopicMeta {
            id: self.shared.env.uuid(),
            partitions: assignment.unwrap_or_else(|| self.place(name, 0, partitions, replication_factor as usize)),
            configs,
            reassigning: BTreeMap::new(),
            log_start: BTreeMap::new(),
        }))
    }

    /// The topic with a partition's move begun (`replicas`) or cancelled (None).
    fn plan_reassign(
        &self,
        snapshot: &MetaSnapshot,
        name: &str,
        partition: i32,
        replicas: Option<Vec<i32>>,
    ) -> Result<TopicMeta, Refusal> {
        let topic = snapshot
            .topics
            .get(name)
            .filter(|t| (0..t.partitions.len() as i32).contains(&partition))
            .ok_or_else(|| unknown(name))?;
        let moving = topic.reassigning.contains_key(&partition);
        let target = match replicas {
            None if !moving => {
                let message = format!("no reassignment of {name}-{partition} is in progress");
                return Err((ResponseError::NoReassignmentInProgress.code(), message));
            }
            None => topic.original(partition),
            Some(_) if moving => {
                let message = format!("{name}-{partition} is being moved already; cancel that move first");
                return Err((ResponseError::ReassignmentInProgress.code(), message));
            }
            Some(target) => target,
        };
        check_replicas(&target, &self.shared.config.members())
            .map_err(|message| (ResponseError::InvalidReplicaAssignment.code(), message))?;
        let mut topic = TopicMeta::clone(topic);
        topic.reassign(partition, target);
        Ok(topic)
    }
}

/// A topic to create, as asked.
struct Create {
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    validate_only: bool,
    assignment: Option<Vec<Vec<i32>>>,
}

/// One partition's replicas: some, distinct, every one a member of the cluster.
fn check_replicas(replicas: &[i32], members: &[i32]) -> Result<(), String> {
    let distinct: HashSet<i32> = replicas.iter().copied().collect();
    if replicas.is_empty() || distinct.len() != replicas.len() || replicas.iter().any(|r| !members.contains(r)) {
        return Err(format!("replicas {replicas:?} must be distinct members of the cluster {members:?}"));
    }
    Ok(())
}

/// A manual assignment (CreateTopics' assignments), as Kafka checks it: every partition's
/// replicas distinct members of the cluster, and as many for every partition.
fn check_assignment(assignment: &[Vec<i32>], members: &[i32]) -> Result<(), Refusal> {
    let factor = assignment.first().map_or(0, Vec::len);
    for (partition, replicas) in assignment.iter().enumerate() {
        check_replicas(replicas, members)
            .map_err(|m| (ResponseError::InvalidReplicaAssignment.code(), format!("partition {partition}: {m}")))?;
        if replicas.len() != factor {
            let message = "All partitions should have the same number of replicas.".to_owned();
            return Err((ResponseError::InvalidReplicaAssignment.code(), message));
        }
    }
    Ok(())
}

//! A shard's replicas follow the metadata snapshot: opened where the snapshot gives this node
//! (and shard) a partition, configured as its topic says, removed with their data when the
//! topic goes.
//!
//! A new snapshot shares every topic that did not change with the one before it, so only the
//! topics whose definition changed (by pointer) are looked at: a snapshot that only carries new
//! partition leaders costs nothing here. New replicas are opened at most
//! [`OPEN_BATCH`] at a time ([`ShardState::open_pending`]); the flusher comes back for the
//! rest after letting the shard's other tasks run.

use super::{group_of, partition_dir, Partition, ShardState, OFFSETS_TOPIC};
use crate::groups::Coordinator;
use crate::meta::{SharedSnapshot, TopicMeta};
use crate::replica::Replica;
use crate::storage::NodeStorage;
use crate::topic_config;
use braid_engine::log::DurabilityWaiters;
use braid_engine::raft::NodeId;
use kafka_protocol::ResponseError;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Replicas opened in one go, at most (each is a directory, a file and a directory sync).
pub const OPEN_BATCH: usize = 128;

impl<S: NodeStorage> ShardState<S> {
    pub(super) fn apply_snapshot(&mut self, snapshot: SharedSnapshot) {
        let old = std::mem::replace(&mut self.snapshot, Arc::clone(&snapshot));
        if snapshot.preferred_election.0 > old.preferred_election.0 {
            self.elect_preferred(&snapshot.preferred_election.1);
        }
        let changed: BTreeSet<&String> = old
            .topics
            .iter()
            .filter(|(name, meta)| snapshot.topics.get(*name).is_none_or(|new| !Arc::ptr_eq(meta, new)))
            .chain(snapshot.topics.iter().filter(|(name, _)| !old.topics.contains_key(*name)))
            .map(|(name, _)| name)
            .collect();
        if changed.is_empty() {
            return;
        }
        let shards = self.shared.senders.len();
        let me = self.shared.config.node_id;
        let shard = self.id;
        for name in changed {
            let meta = snapshot.topics.get(name);
            // Replicas include, while a partition moves, both the nodes it leaves and those it
            // joins: a joining node opens its replica at once, a leaving one keeps it until the
            // move is over.
            let wanted = |p: i32| {
                let replicas = meta?.partitions.get(usize::try_from(p).ok()?)?;
                (replicas.contains(&me) && crate::shared::owner_shard(name, p, shards) == shard).then_some(replicas)
            };
            let gone: Vec<(String, i32)> = self
                .partitions
                .iter()
                .filter(|(key, p)| {
                    &key.0 == name && (wanted(key.1).is_none() || meta.is_some_and(|m| m.id != p.topic_id))
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                self.remove_replica(key);
            }
            let Some(meta) = meta else { continue };
            let config = topic_config::log_config(&meta.configs);
            let max_message_bytes = topic_config::max_message_bytes(&meta.configs);
            let batch_policy = topic_config::batch_policy(&meta.configs);
            for partition in 0..meta.partitions.len() as i32 {
                let Some(replicas) = wanted(partition) else { continue };
                let key = (name.clone(), partition);
                match self.partitions.get_mut(&key) {
                    Some(p) => {
                        p.replica.raft.log_mut().set_config(config.clone());
                        p.max_message_bytes = max_message_bytes;
                        p.batch_policy = batch_policy;
                        p.voters = crate::config::raft_ids(replicas);
                        p.records_start = p.records_start.max(meta.log_start.get(&partition).copied().unwrap_or(0));
                    }
                    None if !self.opening_keys.contains_key(&key) => {
                        let group = group_of(meta.id, partition);
                        self.opening_groups.insert(group, key.clone());
                        self.opening_keys.insert(key.clone(), group);
                        self.opening.push_back(key);
                    }
                    None => {}
                }
            }
        }
        self.moving = snapshot
            .topics
            .iter()
            .filter(|(_, meta)| !meta.reassigning.is_empty())
            .flat_map(|(name, meta)| meta.reassigning.keys().map(move |&p| ((name.clone(), p), meta.target(p))))
            .filter(|(key, _)| self.partitions.contains_key(key) || self.opening_keys.contains_key(key))
            .collect();
        self.open_pending();
        self.flush_needed.notify_one();
    }

    /// True while replicas wait to be opened ([`ShardState::open_pending`]).
    pub fn opening_pending(&self) -> bool {
        !self.opening.is_empty()
    }

    /// True if the partition is this shard's but its replica is not open yet.
    pub(super) fn is_opening(&self, key: &(String, i32)) -> bool {
        self.opening_keys.contains_key(key)
    }

    /// Opens up to [`OPEN_BATCH`] of the replicas waiting, as the current snapshot has them.
    pub fn open_pending(&mut self) {
        // Fewer at a time in a simulation now and then.
        let batch = if braid_engine::buggify!(200) { 1 } else { OPEN_BATCH };
        for _ in 0..batch {
            let Some(key) = self.opening.pop_front() else { return };
            self.open_now(&key);
        }
    }

    /// A raft message for group `group`, not open here yet but waiting to be: it is opened now,
    /// ahead of its turn (a peer's vote request or append would otherwise be dropped, and the
    /// election it belongs to fail). Its key if it was waiting.
    pub(super) fn open_for_message(&mut self, group: braid_engine::raft::wire::GroupId) -> Option<(String, i32)> {
        let key = self.opening_groups.get(&group).cloned()?;
        self.opening.retain(|k| k != &key);
        self.open_now(&key);
        self.partitions.contains_key(&key).then_some(key)
    }

    fn open_now(&mut self, key: &(String, i32)) {
        let Some(group) = self.opening_keys.remove(key) else { return };
        self.opening_groups.remove(&group);
        let snapshot = Arc::clone(&self.snapshot);
        // Its topic may have gone (or been created again) since it was queued.
        if let Some(meta) = snapshot.topics.get(&key.0).filter(|m| group_of(m.id, key.1) == group) {
            self.open_replica(key.clone(), meta);
        }
    }

    fn open_replica(&mut self, key: (String, i32), meta: &TopicMeta) {
        let me = self.shared.config.node_id;
        let Some(replicas) = meta.partitions.get(key.1 as usize).filter(|r| r.contains(&me)) else { return };
        let config = topic_config::log_config(&meta.configs);
        let dir = partition_dir(&self.shared.config.data_dir, &key.0, key.1, meta.id);
        let group = group_of(meta.id, key.1);
        // Raft's voters start as the replicas before any move (a joining node is not one of
        // them: it becomes a voter when the leader's change reaches its log).
        let base: Vec<NodeId> = crate::config::raft_ids(&meta.original(key.1));
        let journaled = self.journaled(group);
        let replaced_disk = self.shared.replaced_disk.load(std::sync::atomic::Ordering::Relaxed);
        let (mut replica, report) = match Replica::open(
            (self.shared.env.random(), replaced_disk),
            self.storage.clone(),
            &dir,
            config,
            group,
            self.shared.config.raft_id(),
            base,
            None,
            journaled,
        ) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot open partition log");
                return;
            }
        };
        if let Some(corruption) = &report.corruption {
            tracing::warn!(topic = %key.0, partition = key.1, %corruption, "recovery cut the log at a torn or corrupt batch");
        }
        // A new partition's first replica stands for leader at once (leaders spread as the
        // placement does); the others wait for it.
        let fresh = replica.raft.term() == 0 && replica.raft.log().log_end_offset() == 0;
        if fresh && replicas.first() == Some(&me) && !meta.reassigning.contains_key(&key.1) {
            replica.raft.campaign();
        } else if fresh {
            // Its first try may find the others not open yet; its retry comes before their own
            // first elections.
            replica.raft.defer_election(2 * crate::replica::ELECTION_TICKS);
        }
        self.groups.insert(group, key.clone());
        self.dirty.insert(key.clone());
        let offsets = key.0 == OFFSETS_TOPIC;
        let transactions = key.0 == crate::txn::TXN_TOPIC;
        if offsets || transactions {
            self.coordinators.insert(key.clone());
        }
        let partition = Partition {
            replica,
            dir,
            topic_id: meta.id,
            voters: crate::config::raft_ids(replicas),
            waiters: DurabilityWaiters::new(),
            max_message_bytes: topic_config::max_message_bytes(&meta.configs),
            batch_policy: topic_config::batch_policy(&meta.configs),
            producers: None,
            coordinator: offsets.then(Coordinator::default),
            txn_coordinator: transactions.then(crate::txn::TxnCoordinator::default),
            compacted_size: 0,
            compacted_to: 0,
            records_start: meta.log_start.get(&key.1).copied().unwrap_or(0),
        };
        self.partitions.insert(key, partition);
    }

    /// Closes a replica whose topic is gone (or moved off this node) and removes its data.
    fn remove_replica(&mut self, key: (String, i32)) {
        if let Some(mut p) = self.partitions.remove(&key) {
            for (waiter, _, _) in p.waiters.fail_all() {
                let _ = waiter
                    .send(crate::msg::ProduceOutcome::failed(ResponseError::UnknownTopicOrPartition.code(), None));
            }
            self.groups.remove(&p.replica.group);
            self.journal.forget(p.replica.group);
            drop(p.replica);
            if let Err(e) = self.storage.remove_dir_all(&p.dir) {
                tracing::warn!(dir = %p.dir.display(), error = %e, "could not remove a deleted partition's directory");
            }
            tracing::info!(topic = %key.0, partition = key.1, "partition removed");
        }
        self.shared.leaders.write().unwrap_or_else(|e| e.into_inner()).remove(&key);
        self.dirty.remove(&key);
        self.flushing.remove(&key);
        self.awake.remove(&key);
        self.coordinators.remove(&key);
    }
}

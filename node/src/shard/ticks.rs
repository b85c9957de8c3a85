//! Time and news: raft ticks for the awake groups, messages from peers, the transport's liveness
//! news, the periodic passes (leaders announced, leadership handed back to preferred replicas,
//! moves stepped), and whether the node serves clients.

use super::*;

/// Ticks between checks that the tree names this node as leader of the partitions it leads.
pub(super) const ANNOUNCE_EVERY_TICKS: u64 = 20;
/// Ticks between hand-overs of leadership back to preferred replicas (10 s at 50 ms ticks):
/// after a failover, leaders drift back to where placement spread them, unhurried.
pub(super) const REBALANCE_EVERY_TICKS: u64 = 200;

impl<S: NodeStorage> ShardState<S> {
    /// A raft message from a peer for a group of this shard (opened now if it was waiting to
    /// be; dropped if the group is unknown here).
    pub(super) fn step(&mut self, group: GroupId, message: Message) {
        if group == GroupId::METADATA {
            if let Some(meta) = self.meta.as_mut() {
                meta.step(message);
                self.meta_dirty = true;
            }
            return;
        }
        let Some(key) = self.groups.get(&group).cloned().or_else(|| self.open_for_message(group)) else { return };
        if let Some(p) = self.partitions.get_mut(&key) {
            p.replica.raft.step(message);
            // A leader's next appends (after a follower's reply) leave at once.
            send(&self.shared, p.replica.group, p.replica.raft.take_leader_messages());
            self.dirty.insert(key);
        }
    }

    /// Brings every group in line with the peers the transport reports lost or back since the
    /// last call: lost ones are [`braid_engine::raft::Raft::peer_lost`] to each group, those
    /// back [`braid_engine::raft::Raft::peer_back`]; groups that woke tick again.
    pub fn sync_liveness(&mut self) {
        let (version, lost) = {
            let shared = self.shared.lost_peers.read().unwrap_or_else(|e| e.into_inner());
            if shared.0 == self.liveness_version {
                return;
            }
            shared.clone()
        };
        self.liveness_version = version;
        let newly_lost: Vec<NodeId> = lost.difference(&self.lost_peers).copied().collect();
        let back: Vec<NodeId> = self.lost_peers.difference(&lost).copied().collect();
        self.lost_peers = lost;
        if let Some(meta) = self.meta.as_mut() {
            for &peer in &newly_lost {
                meta.peer_lost(peer);
            }
            for &peer in &back {
                meta.peer_back(peer);
            }
        }
        for (key, p) in self.partitions.iter_mut() {
            let raft = &mut p.replica.raft;
            for &peer in &newly_lost {
                raft.peer_lost(peer);
            }
            for &peer in &back {
                raft.peer_back(peer);
            }
            if !raft.quiesced() {
                self.dirty.insert(key.clone());
            }
        }
        self.flush_needed.notify_one();
    }

    /// A graceful stop: every replicated group this shard leads (the metadata group too, on
    /// shard 0) hands its leadership to a reachable voter, so clients find other leaders before
    /// this node goes. Returns how many groups it still leads (the transfers take a round trip
    /// or two; the caller asks again).
    pub(super) fn hand_over(&mut self) -> usize {
        let me = self.shared.config.raft_id();
        let lost = self.lost_peers.clone();
        let mut leading = 0;
        let target = |voters: &[NodeId]| voters.iter().copied().find(|v| *v != me && !lost.contains(v));
        for (key, p) in self.partitions.iter_mut().filter(|(_, p)| p.replica.is_leader()) {
            let voters = p.replica.raft.voters().to_vec();
            let Some(to) = target(&voters) else { continue };
            leading += 1;
            if p.replica.raft.transferring_to().is_none() {
                p.replica.raft.transfer_leadership(to);
            }
            self.awake.insert(key.clone());
            self.dirty.insert(key.clone());
        }
        if let Some(meta) = self.meta.as_mut() {
            if meta.is_leader() {
                if let Some(to) = target(&meta.voters()) {
                    leading += 1;
                    meta.transfer_leadership(to);
                    self.meta_dirty = true;
                }
            }
        }
        self.flush_needed.notify_one();
        leading
    }

    /// ElectLeaders' preferred election: the partitions named here that this shard leads hand
    /// leadership to their preferred replica (placement's first) if another leads.
    pub(super) fn elect_preferred(&mut self, partitions: &[(String, i32)]) {
        let me = self.shared.config.raft_id();
        for key in partitions {
            let Some(p) = self.partitions.get_mut(key).filter(|p| p.replica.is_leader()) else { continue };
            if let Some(preferred) = p.voters.first().copied().filter(|&r| r != me) {
                tracing::info!(topic = %key.0, partition = key.1, %preferred, "handing leadership to the preferred replica");
                p.replica.raft.transfer_leadership(preferred);
                self.awake.insert(key.clone());
                self.dirty.insert(key.clone());
            }
        }
        self.flush_needed.notify_one();
    }

    /// One raft tick for every group this shard holds that is not quiet; coordinator timers;
    /// now and then a pass over every partition (leaders announced, leadership handed back to
    /// preferred replicas); a step of every move under way.
    pub fn tick(&mut self) {
        self.sync_liveness();
        self.ticks += 1;
        let announce = self.ticks.is_multiple_of(ANNOUNCE_EVERY_TICKS);
        let rebalance = self.shared.config.auto_leader_rebalance && self.ticks.is_multiple_of(REBALANCE_EVERY_TICKS);
        let me = self.shared.config.raft_id();
        let now = self.shared.env.now_ms();
        // Only awake groups tick: ten thousand quiet ones cost nothing here. One that went quiet
        // (every follower has every entry) gives back what its log held for appends and
        // replication, once its last flush ended.
        let awake: Vec<(String, i32)> = self.awake.iter().cloned().collect();
        for key in awake {
            let Some(p) = self.partitions.get_mut(&key) else {
                self.awake.remove(&key);
                continue;
            };
            if !p.replica.raft.quiesced() {
                p.replica.raft.tick();
                self.dirty.insert(key);
            } else if !self.flushing.contains_key(&key) {
                self.awake.remove(&key);
                if let Err(e) = p.replica.raft.log_mut().release_idle_memory() {
                    tracing::debug!(topic = %key.0, partition = key.1, error = %e, "idle memory not released");
                }
            }
        }
        let mut group_writes = Vec::new();
        let txn_coordinators: Vec<(String, i32)> =
            self.coordinators.iter().filter(|k| k.0 == crate::txn::TXN_TOPIC).cloned().collect();
        for key in &txn_coordinators {
            self.txn_tick(key, now);
        }
        for key in &self.coordinators {
            let Some(p) = self.partitions.get_mut(key) else { continue };
            if let Some(coordinator) = p.coordinator.as_mut().filter(|_| p.replica.is_leader()) {
                coordinator.tick(now);
                let writes = coordinator.take_writes(now);
                if !writes.is_empty() {
                    group_writes.push((key.1, writes));
                }
            }
        }
        if announce || rebalance {
            for (key, p) in self.partitions.iter_mut().filter(|(_, p)| p.replica.is_leader()) {
                // The preferred replica (placement's first) leads when it is up and caught up.
                if let Some(preferred) = p.voters.first().copied().filter(|&r| rebalance && r != me) {
                    p.replica.raft.transfer_leadership(preferred);
                }
                let mine = (self.shared.config.node_id, braid_engine::ids::leader_epoch(p.replica.raft.term()));
                if announce && self.snapshot.tree_leader(&key.0, key.1) != Some(mine) {
                    announce_leader(&self.shared, key, mine, p.replica.raft.voters());
                }
            }
        }
        for (key, target) in &self.moving {
            if let Some(p) = self.partitions.get_mut(key) {
                step_reassignment(&self.shared, key, p, target, announce);
            }
        }
        for (partition, writes) in group_writes {
            self.write_records((OFFSETS_TOPIC.to_owned(), partition), writes, None, now, ProduceReply::Nobody);
        }
        if let Some(meta) = self.meta.as_mut() {
            meta.tick();
            self.meta_dirty = true;
        }
        self.update_serving();
        self.flush_needed.notify_one();
    }

    /// Shard 0: whether this node serves clients. It starts serving (its listeners accept) once
    /// ready ([`MetaStore::ready`]) and every shard has the snapshot of that tree; it turns them
    /// away while cut off from the metadata leader, and until ready again after.
    pub(super) fn update_serving(&mut self) {
        let Some(meta) = self.meta.as_ref() else { return };
        let published = self.shared.published.read().unwrap_or_else(|e| e.into_inner()).zxid;
        let ready = meta.ready() && published >= meta.snapshot().zxid;
        if !*self.shared.serving.borrow() {
            // Starting: the listeners accept nothing yet; being cut off means nothing until
            // the node has served once.
            if ready {
                tracing::info!(zxid = published, "caught up with the metadata leader: serving clients");
                self.shared.serving.send_replace(true);
            }
            return;
        }
        let was_cut_off = self.shared.cut_off.load(std::sync::atomic::Ordering::Relaxed);
        let cut_off = meta.cut_off() || (was_cut_off && !ready);
        if was_cut_off != cut_off {
            self.shared.cut_off.store(cut_off, std::sync::atomic::Ordering::Relaxed);
            if cut_off {
                tracing::warn!("no metadata-group leader reachable: cut off from the cluster; turning clients away");
            } else {
                tracing::info!("caught up with the metadata leader again: serving clients");
            }
        }
    }
}

/// Asks shard 0 to write this node into the tree as the partition's leader (dropped if its
/// queue is full: the periodic check asks again).
pub(super) fn announce_leader(shared: &Shared, key: &(String, i32), (leader, epoch): (i32, i32), voters: &[NodeId]) {
    let replicas = voters.iter().map(|v| v.get()).collect();
    let msg = ShardMsg::PartitionLeader { topic: key.0.clone(), partition: key.1, leader, epoch, replicas };
    let _ = shared.senders[0].try_send(msg);
}

/// One step of a partition's move, on its leader, once the previous change has committed:
/// - add one voter of the target (additions first: the group never shrinks below the
///   target's size, and a new voter catches up while the old majority goes on committing);
/// - once every voter of the target holds every committed entry, remove one that is not in
///   the target; the leader itself last, by first handing leadership to a target voter (no
///   election gap);
/// - when the voters are the target, report it (every `report` tick) so the controller ends
///   the move.
pub(super) fn step_reassignment<S: NodeStorage>(
    shared: &Shared,
    key: &(String, i32),
    p: &mut Partition<S>,
    target: &[i32],
    report: bool,
) {
    let raft = &mut p.replica.raft;
    if !raft.config_settled() {
        return;
    }
    let me = shared.config.raft_id();
    let target: Vec<NodeId> = crate::config::raft_ids(target);
    let voters = raft.voters().to_vec();
    let next = if let Some(add) = target.iter().find(|n| !voters.contains(n)) {
        [voters.clone(), vec![*add]].concat()
    } else if voters.iter().any(|n| !target.contains(n)) {
        if !target.iter().all(|&n| raft.caught_up(n)) {
            return;
        }
        match voters.iter().find(|&&n| !target.contains(&n) && n != me) {
            Some(&remove) => voters.iter().copied().filter(|&n| n != remove).collect(),
            None => {
                // Only this node is left to remove: a target voter takes over and removes it.
                if let Some(&to) = target.first() {
                    raft.transfer_leadership(to);
                }
                return;
            }
        }
    } else {
        if report {
            let voters = voters.iter().map(|v| v.get()).collect();
            let _ = shared.senders[0].try_send(ShardMsg::Reassigned { topic: key.0.clone(), partition: key.1, voters });
        }
        return;
    };
    match raft.propose_config(next.clone()) {
        Ok(_) => {
            tracing::info!(topic = %key.0, partition = key.1, from = ?voters, to = ?next, "partition voters change")
        }
        Err(e) => tracing::debug!(topic = %key.0, partition = key.1, error = ?e, "voter change not proposed"),
    }
}

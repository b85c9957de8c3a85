//! A leader that does not know how much of its log a follower holds (new in its term, or the
//! follower just reconnected) probes at its own log end and walks back by the follower's
//! answers: a follower whose log matches past the leader's deleted prefix keeps it. A reset
//! (the follower's log thrown away) is only for a follower that lacks or contradicts what the
//! leader still holds: a metadata follower reset past what it had applied could not rebuild its
//! tree from the log.

mod common;

use braid_engine::raft::{Body, Message, Role};
use common::group::Group;
use common::{batch, small_segments};
use std::cell::Cell;
use std::rc::Rc;

/// From now on, counts the resets the group's nodes send (every message still delivered).
fn count_resets(group: &mut Group) -> Rc<Cell<usize>> {
    let resets = Rc::new(Cell::new(0));
    let counted = Rc::clone(&resets);
    group.deliver_if = Box::new(move |m| {
        if matches!(m.body, Body::Reset { .. }) {
            counted.set(counted.get() + 1);
        }
        true
    });
    resets
}

/// A group of three on small segments whose leader has had `batches` batches committed by all;
/// and that leader.
fn committed_group(seed: u64, batches: u64) -> (Group, braid_engine::raft::NodeId) {
    fill(Group::with_log_config(seed, false, small_segments()), batches)
}

/// `group` once a leader has had `batches` batches committed by all; and that leader.
fn fill(mut group: Group, batches: u64) -> (Group, braid_engine::raft::NodeId) {
    group.ticks_to_leader();
    let leader = group.leader().unwrap();
    for tag in 0..batches {
        group.nodes.get_mut(&leader).unwrap().propose(&batch(tag, 3, tag as i64)).unwrap();
        group.settle();
    }
    for _ in 0..4 {
        group.tick();
    }
    (group, leader)
}

#[test]
fn a_reconnected_follower_matching_past_the_leaders_deleted_prefix_is_not_reset() {
    let (mut group, first) = committed_group(11, 200);
    // One follower goes down; the other takes over (it knows nothing of what the one down
    // holds) and deletes the oldest segments of its log: everything there is committed.
    let next = *group.nodes.keys().find(|&&id| id != first).unwrap();
    let follower = *group.nodes.keys().find(|&&id| id != next && id != first).unwrap();
    group.down.push(follower);
    assert!(group.nodes.get_mut(&first).unwrap().transfer_leadership(next));
    group.settle();
    for _ in 0..12 {
        group.tick();
    }
    assert_eq!(group.leader(), Some(next));
    let committed = group.nodes[&next].committed();
    let leader_log = group.nodes.get_mut(&next).unwrap().log_mut();
    leader_log.delete_below(committed * 3 / 4).unwrap();
    let start = leader_log.log_start_offset();
    assert!(start > 0, "the leader's log starts past 0 ({start})");
    group.nodes.get_mut(&next).unwrap().peer_lost(follower);
    // The follower restarts (it no longer knows what committed) and its connection comes back.
    let resets = count_resets(&mut group);
    group.restart(follower);
    group.down.clear();
    group.nodes.get_mut(&next).unwrap().peer_back(follower);
    for _ in 0..12 {
        group.tick();
    }
    assert_eq!(group.nodes[&next].role(), Role::Leader);
    assert_eq!(resets.get(), 0, "no follower was reset");
    let kept = group.nodes[&follower].log();
    assert_eq!(kept.log_start_offset(), 0, "the follower kept its whole log");
    assert_eq!(kept.log_end_offset(), group.nodes[&next].log().log_end_offset());
}

/// A deposed leader (restarted: it does not know what committed) whose uncommitted entries end where the new leader has no entry boundary (its
/// batches differ in size): the leader backs up to its nearest boundary below the follower's
/// log end and walks back from there; the follower loses only its uncommitted tail, never its
/// committed prefix, and is not reset.
#[test]
fn a_deposed_leaders_tail_that_ends_between_the_new_leaders_entries_is_cut_not_reset() {
    let (mut group, old) = committed_group(12, 120);
    let committed = group.nodes[&old].committed();
    // The leader is cut off and appends alone: batches of 4 records, never committed.
    group.down.push(old);
    for tag in 0..7 {
        group.nodes.get_mut(&old).unwrap().propose(&batch(1000 + tag, 4, 0)).unwrap();
    }
    group.nodes.get_mut(&old).unwrap().log_mut().flush().unwrap();
    let old_end = group.nodes[&old].log().log_end_offset();
    // The others elect a leader, which appends batches of 2 records and deletes its oldest
    // segments.
    group.ticks_to_leader();
    let new = group.leader().unwrap();
    assert_ne!(new, old);
    for tag in 0..30 {
        group.nodes.get_mut(&new).unwrap().propose(&batch(2000 + tag, 2, 0)).unwrap();
        group.settle();
    }
    let new_log = group.nodes.get_mut(&new).unwrap().log_mut();
    new_log.delete_below(committed * 3 / 4).unwrap();
    assert!(new_log.log_start_offset() > 0);
    assert!(new_log.base_of_batch_ending_at(old_end).unwrap().is_none(), "the old leader's end is no boundary here");
    let resets = count_resets(&mut group);
    // It restarts (no longer knowing what committed) and comes back: the leader, told it was
    // lost and is back, probes it again knowing nothing of what it holds.
    group.nodes.get_mut(&new).unwrap().peer_lost(old);
    group.restart(old);
    group.down.clear();
    group.nodes.get_mut(&new).unwrap().peer_back(old);
    for _ in 0..12 {
        group.tick();
    }
    assert_eq!(resets.get(), 0, "the deposed leader was not reset");
    let follower = group.nodes[&old].log();
    assert_eq!(follower.log_start_offset(), 0, "its committed prefix kept");
    assert_eq!(follower.log_end_offset(), group.nodes[&new].log().log_end_offset(), "caught up");
}

/// A metadata-group member restarted (it does not know what committed) whose log reaches the
/// leader's log start is sent a reset to that start: it keeps its entries up to there (it may
/// not have applied them yet: its tree would be stranded without them) and drops only what
/// follows; a partition's replica (logs deleted by retention, each on its own) starts over.
#[test]
fn a_reset_keeps_a_metadata_members_prefix_up_to_the_leaders_start() {
    for (metadata, kept) in [(true, true), (false, false)] {
        let group = if metadata {
            Group::metadata(13, small_segments())
        } else {
            Group::with_log_config(13, false, small_segments())
        };
        let (mut group, leader) = fill(group, 60);
        let follower = *group.nodes.keys().find(|&&id| id != leader).unwrap();
        group.restart(follower);
        let log = group.nodes[&follower].log();
        let (end, start) = (log.log_end_offset(), log.log_start_offset());
        assert_eq!(start, 0);
        // A boundary inside the follower's log: where the leader's log would start.
        let at = braid_engine::raft::RaftLog::boundary_at_or_below(log, end / 2).unwrap();
        let term = group.nodes[&leader].term();
        let voters = group.nodes[&leader].voters().to_vec();
        let reset =
            Message { from: leader, to: follower, term, body: Body::Reset { start: at, start_term: term, voters } };
        group.nodes.get_mut(&follower).unwrap().step(reset);
        let log = group.nodes[&follower].log();
        assert_eq!(log.log_end_offset(), at, "metadata {metadata}: what follows the start is dropped");
        assert_eq!(log.log_start_offset() == 0, kept, "metadata {metadata}: the prefix kept: {kept}");
    }
}

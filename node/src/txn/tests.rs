use super::*;

fn apply_all(c: &mut TxnCoordinator, records: &Records) {
    for (k, v) in records {
        c.apply(k, v.as_deref(), 0);
    }
}

/// An id initialised (producer 7, epoch 0) and its records applied; returns them too.
fn started(c: &mut TxnCoordinator) -> Records {
    assert_eq!(c.init("t", 60_000, None, None, 0), InitOutcome::NeedProducerId);
    let InitOutcome::Write { answer, records } = c.init("t", 60_000, None, Some(7), 0) else { panic!() };
    assert_eq!(answer, Ok((7, 0)));
    apply_all(c, &records);
    records
}

#[test]
fn a_commit_prepares_writes_markers_then_completes_and_answers() {
    let mut c = TxnCoordinator::default();
    let mut log = started(&mut c);
    let parts = vec![("a".to_owned(), 0), ("b".to_owned(), 1)];
    let added = c.add_partitions("t", (7, 0), &parts, 10).unwrap();
    assert_eq!(c.add_partitions("t", (7, 0), &parts, 11), Err(ResponseError::ConcurrentTransactions.code()));
    apply_all(&mut c, &added);
    log.extend(added);
    assert_eq!(c.add_partitions("t", (7, 0), &parts[..1], 12), Ok(Vec::new()), "already in the transaction");
    assert_eq!(c.verify("t", (7, 0), &parts[1]), 0);
    assert_eq!(c.verify("t", (7, 0), &("c".to_owned(), 0)), ResponseError::InvalidTxnState.code());
    let (reply, mut answer) = oneshot::channel();
    let prepare = c.end("t", (7, 0), true, 20, reply);
    assert_eq!(prepare.len(), 1);
    assert!(c.take_plans().is_empty(), "markers wait for the Prepare record to commit");
    apply_all(&mut c, &prepare);
    log.extend(prepare);
    let plans = c.take_plans();
    assert_eq!(plans.len(), 1);
    assert_eq!((plans[0].commit, plans[0].partitions.clone()), (true, parts.clone()));
    assert!(c.take_plans().is_empty(), "one writer of the markers");
    assert!(answer.try_recv().is_err());
    let complete = c.complete(&plans[0], 30);
    apply_all(&mut c, &complete);
    log.extend(complete);
    assert_eq!(answer.try_recv(), Ok(0));
    assert_eq!(c.describe("t").unwrap().state, TxnState::CompleteCommit);
    // A retried EndTxn after completion is answered at once.
    let (reply, mut answer) = oneshot::channel();
    assert!(c.end("t", (7, 0), true, 40, reply).is_empty());
    assert_eq!(answer.try_recv(), Ok(0));
    // Another replica that applied the same records knows the same.
    let mut other = TxnCoordinator::default();
    apply_all(&mut other, &log);
    assert_eq!(other.describe("t"), c.describe("t").map(|m| TxnMeta { pending: 0, ..m }));
}

#[test]
fn a_new_coordinator_resumes_the_markers_of_a_prepared_transaction() {
    let mut c = TxnCoordinator::default();
    let mut log = started(&mut c);
    let added = c.add_partitions("t", (7, 0), &[("a".to_owned(), 0)], 10).unwrap();
    apply_all(&mut c, &added);
    log.extend(added);
    let (reply, _answer) = oneshot::channel();
    log.extend(c.end("t", (7, 0), false, 20, reply));
    let mut next = TxnCoordinator::default();
    apply_all(&mut next, &log);
    let plans = next.take_plans();
    assert_eq!(plans.len(), 1);
    assert!(!plans[0].commit);
    let (reply, mut answer) = oneshot::channel();
    assert!(next.end("t", (7, 0), false, 25, reply).is_empty(), "a retry waits for the markers");
    let complete = next.complete(&plans[0], 30);
    apply_all(&mut next, &complete);
    assert_eq!(answer.try_recv(), Ok(0));
}

#[test]
fn init_fences_the_old_producer_and_aborts_its_open_transaction() {
    let mut c = TxnCoordinator::default();
    started(&mut c);
    let added = c.add_partitions("t", (7, 0), &[("a".to_owned(), 0)], 10).unwrap();
    apply_all(&mut c, &added);
    let InitOutcome::Write { answer, records } = c.init("t", 60_000, None, None, 20) else { panic!() };
    assert_eq!(answer, Err(ResponseError::ConcurrentTransactions.code()), "the client retries");
    apply_all(&mut c, &records);
    let plans = c.take_plans();
    assert_eq!((plans[0].commit, plans[0].epoch), (false, 1), "aborted with the new epoch");
    assert_eq!(c.add_partitions("t", (7, 0), &[("a".to_owned(), 1)], 21), Err(ResponseError::ProducerFenced.code()));
    let complete = c.complete(&plans[0], 30);
    apply_all(&mut c, &complete);
    let InitOutcome::Write { answer, .. } = c.init("t", 60_000, None, None, 40) else { panic!() };
    assert_eq!(answer, Ok((7, 2)));
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_an_idle_id_expires() {
    let mut c = TxnCoordinator::default();
    started(&mut c);
    let added = c.add_partitions("t", (7, 0), &[("a".to_owned(), 0)], 1_000).unwrap();
    apply_all(&mut c, &added);
    assert!(c.tick(61_000).is_empty());
    let abort = c.tick(61_001);
    assert_eq!(abort.len(), 1);
    apply_all(&mut c, &abort);
    let plans = c.take_plans();
    assert!(!plans[0].commit);
    let complete = c.complete(&plans[0], 61_100);
    apply_all(&mut c, &complete);
    assert_eq!(c.describe("t").unwrap().state, TxnState::CompleteAbort);
    let forget = c.tick(61_101 + ID_EXPIRATION_MS);
    assert_eq!(forget, vec![(txn_key("t"), None)]);
    apply_all(&mut c, &forget);
    assert_eq!(c.describe("t"), None);
}

#[test]
fn kip_360_a_producer_bumps_its_own_epoch_and_a_stranger_is_fenced() {
    let mut c = TxnCoordinator::default();
    started(&mut c);
    let InitOutcome::Write { answer, records } = c.init("t", 60_000, Some((7, 0)), None, 10) else { panic!() };
    assert_eq!(answer, Ok((7, 1)));
    apply_all(&mut c, &records);
    let InitOutcome::Write { answer, records } = c.init("t", 60_000, Some((7, 0)), None, 11) else { panic!() };
    assert_eq!((answer, records.len()), (Ok((7, 1)), 0), "a retry of the same bump");
    assert_eq!(c.init("t", 60_000, Some((8, 1)), None, 12), InitOutcome::Error(ResponseError::ProducerFenced.code()));
    assert_eq!(c.init("t", 0, None, None, 12), InitOutcome::Error(ResponseError::InvalidTransactionTimeout.code()));
}

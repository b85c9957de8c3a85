//! `braid txn list|describe`: transactional ids as their coordinators know them.

use crate::client::Client;
use anyhow::Context;
use clap::Subcommand;
use kafka_protocol::messages::{DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

#[derive(Subcommand, Debug)]
pub enum TxnCommand {
    /// Every transactional id, with its producer id and its transaction's state.
    List {
        /// Only ids in this state (Ongoing, PrepareCommit, CompleteAbort, ...); repeatable.
        #[arg(long)]
        state: Vec<String>,
    },
    /// A transactional id: producer id and epoch, state, timeout, when its transaction began and
    /// the partitions it holds.
    Describe { id: String },
}

pub fn run(bootstrap: &str, command: TxnCommand) -> anyhow::Result<()> {
    match command {
        TxnCommand::List { state } => {
            // Each node lists the ids it coordinates.
            let mut ids = BTreeMap::new();
            for (_, addr) in Client::brokers(bootstrap)? {
                let mut client = Client::connect(&addr)?;
                let mut request = ListTransactionsRequest::default();
                request.state_filters = state.iter().map(|s| StrBytes::from_string(s.clone())).collect();
                request.duration_filter = -1;
                let response = client.call(request)?;
                if let Some(unknown) = response.unknown_state_filters.first() {
                    anyhow::bail!("unknown transaction state {unknown}");
                }
                for t in response.transaction_states {
                    ids.insert(t.transactional_id.0.to_string(), (t.producer_id.0, t.transaction_state.to_string()));
                }
            }
            for (id, (producer_id, state)) in ids {
                println!("{id} producer {producer_id} {state}");
            }
        }
        TxnCommand::Describe { id } => {
            let mut client = Client::connect_to_coordinator(bootstrap, 1, &id)?;
            let mut request = DescribeTransactionsRequest::default();
            request.transactional_ids = vec![TransactionalId(StrBytes::from_string(id.clone()))];
            let response = client.call(request)?;
            let t = response.transaction_states.first().context("empty DescribeTransactions response")?;
            if t.error_code != 0 {
                let error = kafka_protocol::ResponseError::try_from_code(t.error_code);
                anyhow::bail!("transactional id {id}: {error:?} (error {})", t.error_code);
            }
            println!(
                "{id} producer {} epoch {} state {} timeout {} ms started {}",
                t.producer_id.0,
                t.producer_epoch,
                t.transaction_state,
                t.transaction_timeout_ms,
                t.transaction_start_time_ms
            );
            for topic in &t.topics {
                for p in &topic.partitions {
                    println!("  {} {p}", topic.topic.0);
                }
            }
        }
    }
    Ok(())
}

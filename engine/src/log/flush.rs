//! Writing and group commit: [`Log::write`] makes the appended batches readable, [`Log::flush`]
//! makes them durable (one write and one fdatasync for every append since the previous flush),
//! and two forms of the flush keep the caller's thread free while the device works: the
//! fdatasync run on another thread ([`Log::begin_sync`], [`Log::end_sync`]), or the writes and
//! the sync left queued to the device ([`Log::begin_flush`], [`Log::poll_flush`]).

use super::{io_context, Log, LogError};
use crate::io::{Storage, StorageFile};
use std::io;
use std::path::PathBuf;

/// A sync to run off the log's thread: see [`Log::begin_sync`].
#[derive(Debug)]
pub struct SyncTicket {
    file: std::sync::Arc<std::fs::File>,
    path: PathBuf,
    target: i64,
    epoch: u64,
}

impl SyncTicket {
    /// The fdatasync itself; blocks, so call it where blocking is fine.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The fdatasync as a closure of its own, to send to another thread.
    pub fn syncer(&self) -> impl FnOnce() -> io::Result<()> + Send + 'static {
        let file = std::sync::Arc::clone(&self.file);
        move || file.sync_data()
    }

    /// The log end offset this sync makes durable.
    pub fn target(&self) -> i64 {
        self.target
    }
}

/// A flush in progress: see [`Log::begin_flush`].
#[derive(Debug)]
pub struct FlushTicket {
    target: i64,
    /// The active segment's size at the ticket: readable once the writes end.
    size: u64,
    /// Write-behinds (by count) that must end before the sync starts.
    behind: u64,
    epoch: u64,
    sync: Option<u64>,
}

impl FlushTicket {
    /// The log end offset this flush makes durable.
    pub fn target(&self) -> i64 {
        self.target
    }
}

impl<S: Storage> Log<S> {
    /// Writes appended batches to the file (no fdatasync): they become readable.
    pub fn write(&mut self) -> Result<(), LogError> {
        self.check_usable()?;
        let result = self.write_tail(false);
        let result = self.poison_on_error(result);
        self.checked(result)
    }

    /// Writes appended batches and fdatasyncs the active segment: one write and one sync for
    /// every append since the last flush. Returns the new durable offset.
    pub fn flush(&mut self) -> Result<i64, LogError> {
        self.check_usable()?;
        let result = self.write_tail(true);
        let result = self.poison_on_error(result).map(|()| self.durable_offset);
        self.checked(result)
    }

    /// Group commit with the fdatasync off the caller's thread: writes what was appended (no
    /// sync) and returns what an fdatasync of the active segment makes durable, to be run
    /// anywhere ([`SyncTicket::sync`], on another thread) while this log takes more appends;
    /// [`Log::end_sync`] then moves the durable offset. `None` if everything written is durable
    /// already, or if the storage has no descriptor to sync from elsewhere (the simulator):
    /// then this was a whole [`Log::flush`].
    pub fn begin_sync(&mut self) -> Result<Option<SyncTicket>, LogError> {
        self.check_usable()?;
        let result = self.begin_sync_inner();
        self.checked(result)
    }

    fn begin_sync_inner(&mut self) -> Result<Option<SyncTicket>, LogError> {
        let result = self.write_tail(false);
        self.poison_on_error(result)?;
        if self.durable_offset >= self.written_offset {
            return Ok(None);
        }
        let active = self.active();
        let Some(fd) = active.file.raw_fd() else {
            self.flush()?;
            return Ok(None);
        };
        // SAFETY: the descriptor belongs to the active segment's file, open for the duration of
        // this call; the clone is a descriptor of its own (dup), so the sync may outlive a roll.
        let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map(|fd| std::sync::Arc::new(std::fs::File::from(fd)))
            .map_err(io_context(|| format!("duplicating the descriptor of {}", active.path.display())));
        let file = self.poison_on_error(file)?;
        let path = self.active().path.clone();
        self.issue_ticket(self.written_offset);
        Ok(Some(SyncTicket { file, path, target: self.written_offset, epoch: self.sync_epoch }))
    }

    /// A flush or sync ticket targets `target`: never below the previous one's, unless the log
    /// was cut back since (an invariant: see `invariants.rs`).
    fn issue_ticket(&mut self, target: i64) {
        let (truncations, previous) = self.ticket_target;
        assert!(
            truncations != self.truncations || target >= previous,
            "log invariant (ticket targets never fall between truncations): {}: target {target} after {previous}",
            self.dir.display()
        );
        self.ticket_target = (self.truncations, target);
    }

    /// Ends a sync from [`Log::begin_sync`] with its outcome: the durable offset moves to the
    /// ticket's target unless the log was truncated, reset or rolled meanwhile (a roll synced
    /// everything itself; after a truncation the offsets below the target may hold batches the
    /// sync never saw, and the next sync covers them). A failed sync poisons the log. Returns the
    /// durable offset.
    pub fn end_sync(&mut self, ticket: SyncTicket, result: io::Result<()>) -> Result<i64, LogError> {
        self.check_usable()?;
        if let Err(source) = result {
            let failed = Err(LogError::Io { context: format!("syncing {}", ticket.path.display()), source });
            return self.poison_on_error(failed);
        }
        if ticket.epoch == self.sync_epoch {
            self.durable_offset = self.durable_offset.max(ticket.target.min(self.written_offset));
        }
        self.check_invariants();
        Ok(self.durable_offset)
    }

    /// Group commit without blocking the caller: hands everything appended to the device as
    /// one more write-behind (whole blocks, and the partial last block padded, which stays in
    /// the tail to be written again) and returns a ticket; [`Log::poll_flush`] then moves the
    /// ticket on as the writes end, starts the fdatasync, and reports its end. Appends go on
    /// meanwhile. `None` if everything written is durable already.
    pub fn begin_flush(&mut self) -> Result<Option<FlushTicket>, LogError> {
        self.check_usable()?;
        let result = self.begin_flush_inner();
        let result = self.poison_on_error(result);
        self.checked(result)
    }

    fn begin_flush_inner(&mut self) -> Result<Option<FlushTicket>, LogError> {
        let active = self.active();
        let pending = active.size > active.readable_size;
        if !pending && self.durable_offset >= self.written_offset {
            return Ok(None);
        }
        if pending {
            self.write_tail_behind(true)?;
        }
        self.issue_ticket(self.log_end_offset());
        let active = self.active();
        Ok(Some(FlushTicket {
            target: active.next_offset,
            size: active.size,
            behind: self.behind_submitted,
            epoch: self.sync_epoch,
            sync: None,
        }))
    }

    /// Moves a flush from [`Log::begin_flush`] on without blocking: true once it ended (the
    /// durable offset then covers the ticket), false while the device works. A truncation,
    /// reset or roll since the ticket voids it (true at once, nothing moved: the log was cut or
    /// synced meanwhile, and the next flush covers the rest). An I/O failure poisons the log.
    pub fn poll_flush(&mut self, ticket: &mut FlushTicket) -> Result<bool, LogError> {
        self.check_usable()?;
        if ticket.epoch != self.sync_epoch {
            // Void; but a started fdatasync's outcome still counts (the kernel reports a
            // writeback error once).
            let Some(id) = ticket.sync else { return Ok(true) };
            let ended = self.sync_ended(id);
            return self.poison_on_error(ended);
        }
        let result = self.poll_flush_inner(ticket);
        let result = self.poison_on_error(result);
        self.checked(result)
    }

    /// Blocks until [`Log::poll_flush`] can move `ticket` on (its writes or its sync ended).
    pub fn wait_flush(&mut self, ticket: &FlushTicket) -> Result<(), LogError> {
        self.check_usable()?;
        let result = match ticket.sync {
            Some(id) => {
                let active = self.segments.last_mut().expect("a log always has a segment");
                active.file.wait_sync(id).map_err(io_context(|| format!("syncing {}", active.path.display())))
            }
            None => self.wait_behind((self.behind_submitted - ticket.behind) as usize),
        };
        let result = self.poison_on_error(result);
        self.checked(result)
    }

    fn poll_flush_inner(&mut self, ticket: &mut FlushTicket) -> Result<bool, LogError> {
        let sync = match ticket.sync {
            Some(id) => id,
            None => {
                if !self.behind_ended(ticket.behind) {
                    self.reap_behinds()?;
                    if !self.behind_ended(ticket.behind) {
                        return Ok(false);
                    }
                }
                let active = self.segments.last_mut().expect("a log always has a segment");
                active.readable_size = active.readable_size.max(ticket.size);
                self.written_offset = self.written_offset.max(ticket.target);
                let id =
                    active.file.start_sync().map_err(io_context(|| format!("syncing {}", active.path.display())))?;
                ticket.sync = Some(id);
                id
            }
        };
        if !self.sync_ended(sync)? {
            return Ok(false);
        }
        self.durable_offset = self.durable_offset.max(ticket.target);
        Ok(true)
    }

    /// Whether the sync `id` ([`StorageFile::start_sync`]) ended; its failure as an error.
    fn sync_ended(&mut self, id: u64) -> Result<bool, LogError> {
        let active = self.segments.last_mut().expect("a log always has a segment");
        match active.file.poll_sync(id) {
            Ok(None) => Ok(false),
            Ok(Some(Ok(()))) => Ok(true),
            Ok(Some(Err(source))) | Err(source) => {
                Err(LogError::Io { context: format!("syncing {}", active.path.display()), source })
            }
        }
    }

    pub(super) fn write_tail(&mut self, sync: bool) -> Result<(), LogError> {
        self.wait_partial()?;
        self.wait_behind(0)?;
        let end = self.tail_position + self.tail.len() as u64;
        self.ensure_preallocated(end)?;
        let active = self.segments.last_mut().expect("a log always has a segment");
        let pending = active.size > active.readable_size;
        if pending {
            let logical = self.tail.len();
            let alignment = active.file.write_alignment();
            self.tail.pad_to(alignment);
            let path = &active.path;
            let result = if sync {
                active.file.write_and_sync(self.tail_position, self.tail.as_slice())
            } else {
                active.file.write_at(self.tail_position, self.tail.as_slice())
            };
            let at = self.tail_position;
            result.map_err(io_context(|| format!("writing {} at byte {at}", path.display())))?;
            self.tail.truncate(logical);
            active.readable_size = active.size;
            self.written_offset = active.next_offset;
            let keep_from = active.size / alignment as u64 * alignment as u64;
            self.tail.drain_front((keep_from - self.tail_position) as usize);
            self.tail_position = keep_from;
            if alignment == 1 {
                self.zero_ahead(end);
            }
        } else if sync && self.durable_offset < self.written_offset {
            let path = &active.path;
            active.file.sync_data().map_err(io_context(|| format!("syncing {}", path.display())))?;
        }
        if sync {
            self.durable_offset = self.written_offset;
        }
        Ok(())
    }
}

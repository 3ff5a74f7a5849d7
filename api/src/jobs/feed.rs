//! Live run state for progress streams: one poller per watched run, shared by all its
//! subscribers through a `watch` channel (a run followed by a hundred browsers costs one
//! query every 250 ms, not a hundred), a cap on subscribers, and an end on shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::queue::{RunInfo, get_run};
use crate::db::Db;
use crate::{Error, Result};

/// What a subscriber sees: nothing yet, the run as last read, or why it cannot be read.
pub type Seen = Option<std::result::Result<RunInfo, String>>;

/// How often a watched run is read.
pub const POLL: Duration = Duration::from_millis(250);

type Feeds = Arc<Mutex<HashMap<String, Arc<watch::Sender<Seen>>>>>;

/// The runs being watched.
pub struct RunFeeds {
    feeds: Feeds,
    subscribers: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

/// One subscription: the run's channel, a slot under the subscriber cap, and the shutdown
/// signal (streams end when it fires).
pub struct Subscription {
    /// The run as its poller last read it; closed when the poller ends.
    pub run: watch::Receiver<Seen>,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
}

impl RunFeeds {
    /// At most `max_subscribers` streams at once; all end when `shutdown` turns true.
    pub fn new(max_subscribers: usize, shutdown: watch::Receiver<bool>) -> Self {
        RunFeeds {
            feeds: Arc::default(),
            subscribers: Arc::new(Semaphore::new(max_subscribers.max(1))),
            shutdown,
        }
    }

    /// Follow run `id` (which must exist), starting its poller if nobody follows it yet.
    pub async fn subscribe(&self, db: &Db, id: &str) -> Result<Subscription> {
        let slot = self.subscribers.clone().try_acquire_owned().map_err(|_| {
            Error::Busy(
                5,
                "too many progress streams are open; poll GET /api/train/{id} instead".into(),
            )
        })?;
        get_run(db, id).await?;
        let mut feeds = self
            .feeds
            .lock()
            .map_err(|_| Error::Internal("run feeds lock poisoned".into()))?;
        let run = match feeds.get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                let tx = Arc::new(watch::channel(None).0);
                let rx = tx.subscribe();
                feeds.insert(id.to_string(), tx.clone());
                tokio::spawn(poll(
                    db.clone(),
                    id.to_string(),
                    tx,
                    self.feeds.clone(),
                    self.shutdown.clone(),
                ));
                rx
            }
        };
        Ok(Subscription {
            run,
            shutdown: self.shutdown.clone(),
            _slot: slot,
        })
    }

    /// Runs with a live poller.
    pub fn watched(&self) -> usize {
        self.feeds.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// Read the run until it ends, every subscriber left, or the server stops; then leave the
/// map (dropping the sender closes the subscribers' channels after the last value).
async fn poll(
    db: Db,
    id: String,
    tx: Arc<watch::Sender<Seen>>,
    feeds: Feeds,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let seen = get_run(&db, &id).await.map_err(|e| {
            tracing::warn!(run = %id, error = %e, "reading a watched run failed");
            "the run could not be read".to_string()
        });
        let done = seen.as_ref().map_or(true, RunInfo::is_terminal);
        tx.send_replace(Some(seen));
        let stop = done
            || tokio::select! {
                _ = tokio::time::sleep(POLL) => false,
                _ = shutdown.wait_for(|s| *s) => true,
            };
        let Ok(mut map) = feeds.lock() else { return };
        // Nobody listens any more (checked under the lock, so no subscriber joins meanwhile).
        if stop || tx.receiver_count() == 0 {
            if map.get(&id).is_some_and(|t| Arc::ptr_eq(t, &tx)) {
                map.remove(&id);
            }
            return;
        }
    }
}

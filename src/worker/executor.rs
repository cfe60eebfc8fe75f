//! Runs each job's driver call on a thread of its own and waits for it with the job's deadline,
//! so a job that overruns `--timeout` is abandoned and the worker goes on with the next one.
//!
//! One thread (a "lane") serves job after job and keeps the drivers and their connections. When
//! a call overruns, the worker drops that lane: the thread finishes its call (every driver
//! bounds its network calls by the same timeout), finds nobody waiting, and ends; the next job
//! gets a fresh lane with fresh connections, since the old ones are in an unknown state.

use crate::broadcast::{self, BroadcastError, Broadcaster};
use crate::config::{BroadcastConfig, Driver};
use crate::event::Alert;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

/// Abandoned threads still running at which the worker gives up. Drivers bound their calls by
/// the job's timeout, so abandoned threads end within about one timeout; this many alive means
/// a driver ignores its deadline, and only a fresh process frees what they hold (as Laravel's
/// worker exits on a timeout and lets its supervisor restart it).
pub const MAX_ABANDONED: usize = 4;

/// Why one attempt did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    /// The driver reported a failure.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
    /// The attempt ran past its timeout and was abandoned.
    #[error("timed out after {} s; the attempt was abandoned", .0.as_secs_f64())]
    TimedOut(Duration),
    /// The driver panicked (a bug); the attempt counts as failed.
    #[error("the driver panicked")]
    Panicked,
    /// No thread could be started for the attempt.
    #[error("cannot start a job thread: {0}")]
    Spawn(String),
}

impl AttemptError {
    /// True when another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Broadcast(e) => e.is_retryable(),
            AttemptError::TimedOut(_) | AttemptError::Panicked | AttemptError::Spawn(_) => true,
        }
    }
}

struct Call {
    driver: Driver,
    alert: Alert,
    timeout: Duration,
}

struct Lane {
    calls: mpsc::Sender<Call>,
    results: mpsc::Receiver<Result<(), BroadcastError>>,
}

/// Runs driver calls with a deadline.
pub struct Executor {
    config: BroadcastConfig,
    lane: Option<Lane>,
    /// One clone per live thread: counts the threads that have not ended yet.
    live: Arc<()>,
}

impl Executor {
    /// An executor for drivers built from `config`; threads start on first use.
    pub fn new(config: &BroadcastConfig) -> Executor {
        Executor {
            config: config.clone(),
            lane: None,
            live: Arc::new(()),
        }
    }

    /// Broadcasts `alert` through `driver`, waiting at most `timeout`.
    pub fn run(
        &mut self,
        driver: Driver,
        alert: &Alert,
        timeout: Duration,
    ) -> Result<(), AttemptError> {
        let mut call = Call {
            driver,
            alert: alert.clone(),
            timeout,
        };
        let lane = match self.lane.take() {
            Some(lane) => lane,
            None => self.spawn()?,
        };
        let lane = match lane.calls.send(call) {
            Ok(()) => lane,
            Err(mpsc::SendError(back)) => {
                // The idle thread is gone (it panicked on an earlier call): start another.
                call = back;
                let lane = self.spawn()?;
                lane.calls.send(call).map_err(|_| AttemptError::Panicked)?;
                lane
            }
        };
        match lane.results.recv_timeout(timeout) {
            Ok(result) => {
                self.lane = Some(lane);
                result.map_err(AttemptError::from)
            }
            // Dropping the lane abandons the thread; it ends after its call returns.
            Err(RecvTimeoutError::Timeout) => Err(AttemptError::TimedOut(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(AttemptError::Panicked),
        }
    }

    /// Threads still running a call the worker gave up on.
    pub fn abandoned(&self) -> usize {
        let idle = usize::from(self.lane.is_some());
        Arc::strong_count(&self.live).saturating_sub(1 + idle)
    }

    fn spawn(&self) -> Result<Lane, AttemptError> {
        let (calls, call_rx) = mpsc::channel::<Call>();
        let (result_tx, results) = mpsc::channel();
        let config = self.config.clone();
        let token = Arc::clone(&self.live);
        thread::Builder::new()
            .name("job".into())
            .spawn(move || {
                let _alive = token;
                let mut drivers: HashMap<Driver, Box<dyn Broadcaster>> = HashMap::new();
                for call in call_rx {
                    let driver = drivers
                        .entry(call.driver)
                        .or_insert_with(|| broadcast::build(call.driver, &config));
                    let result = driver.broadcast(&call.alert, call.timeout);
                    if result_tx.send(result).is_err() {
                        // Abandoned: nobody waits for this answer any more.
                        break;
                    }
                }
            })
            .map_err(|e| AttemptError::Spawn(e.to_string()))?;
        Ok(Lane { calls, results })
    }
}

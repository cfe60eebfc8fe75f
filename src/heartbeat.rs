//! A process's heartbeat: a thread with its own Redis connection that publishes what a worker
//! or listener is doing (for `queue-work status` and the dashboard), independent of how long
//! a job or a wait blocks.

use crate::queue::Queue;
use crate::queue::registry::Member;
use crate::redis_conn::{RedisConfig, RedisError};
use log::debug;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the heartbeat is refreshed: what `status` shows is at most this old.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long a heartbeat lives: three missed beats and the process counts as gone.
pub const TTL: Duration = Duration::from_secs(15);

/// What the heartbeat thread is told.
enum Signal {
    /// Beat now: what it tells changed.
    Beat,
    /// Unregister and end.
    Stop,
}

/// A running heartbeat; [`Heartbeat::stop`] removes the process from the registry.
pub struct Heartbeat<M: Member> {
    state: Arc<Mutex<M>>,
    signal: mpsc::Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl<M: Member> Heartbeat<M> {
    /// Starts beating for `info` at the queue's Redis; the first beat is immediate. Redis being
    /// away is only logged (at debug): the heartbeat is for display, the work goes on.
    pub fn start(redis: &RedisConfig, prefix: &str, info: M) -> Heartbeat<M> {
        let state = Arc::new(Mutex::new(info));
        let (signal, signals) = mpsc::channel::<Signal>();
        let (url, prefix, shared) = (redis.clone(), prefix.to_string(), state.clone());
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || beat_until_stopped(&url, &prefix, &shared, &signals))
            .map_err(|e| debug!("no heartbeat thread: {e}"))
            .ok();
        Heartbeat {
            state,
            signal,
            thread,
        }
    }

    /// Changes what the next beat tells.
    pub fn update(&self, change: impl FnOnce(&mut M)) {
        // A poisoned lock only means another thread panicked mid-update: the data is plain.
        let mut info = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut info);
    }

    /// Changes what the heartbeat tells and beats at once (a listener that became active
    /// should not show as starting for a whole interval).
    pub fn update_now(&self, change: impl FnOnce(&mut M)) {
        self.update(change);
        let _ = self.signal.send(Signal::Beat);
    }

    /// Stops beating and removes the process from the registry.
    pub fn stop(mut self) {
        let _ = self.signal.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn beat_until_stopped<M: Member>(
    url: &RedisConfig,
    prefix: &str,
    state: &Mutex<M>,
    signals: &mpsc::Receiver<Signal>,
) {
    let mut queue: Option<Queue> = None;
    let mut first = true;
    loop {
        let info = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let result = connected(&mut queue, url, prefix).and_then(|q| {
            if first {
                // Ids of processes that died without unregistering would pile up in the set.
                q.members::<M>(true)?;
            }
            q.beat(&info, TTL)
        });
        match result {
            Ok(()) => first = false,
            Err(e) => {
                debug!("heartbeat: {e}");
                queue = None;
            }
        }
        match signals.recv_timeout(INTERVAL) {
            Ok(Signal::Beat) | Err(RecvTimeoutError::Timeout) => continue,
            Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let info = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Err(e) = connected(&mut queue, url, prefix).and_then(|q| q.unregister::<M>(info.id())) {
        debug!("heartbeat: cannot unregister: {e}");
    }
}

fn connected<'a>(
    queue: &'a mut Option<Queue>,
    url: &RedisConfig,
    prefix: &str,
) -> Result<&'a mut Queue, RedisError> {
    let q = match queue.take() {
        Some(q) => q,
        None => Queue::connect(url, prefix)?,
    };
    Ok(queue.insert(q))
}

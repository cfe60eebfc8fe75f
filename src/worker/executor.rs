//! Runs each job's driver call on a thread of its own and waits for it with the job's deadline,
//! so a job that overruns `--timeout` is abandoned and the worker goes on with the next one.
//!
//! One thread (a "lane") serves job after job and keeps the drivers and their connections. When
//! a call overruns, the worker drops that lane: the thread finishes its call (every driver
//! bounds its network calls by the same timeout), finds nobody waiting, and ends; the next job
//! gets a fresh lane with fresh connections, since the old ones are in an unknown state.

use crate::broadcast::{self, Broadcaster, Driver};
use crate::config::Config;
use crate::delivery::DeliveryError;
use crate::event::Alert;
use crate::notify::{self, Message, Notice, Notifier};
use crate::queue::job::Kind;
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
    Broadcast(#[from] DeliveryError),
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

/// A built driver or people channel, owned by the job thread with its connections.
pub enum Sink {
    /// Broadcasts events.
    Broadcast(Box<dyn Broadcaster>),
    /// Sends messages to people.
    Notify(Box<dyn Notifier>),
}

impl Sink {
    /// Delivers each alert; one result per alert, in order.
    fn deliver(
        &mut self,
        alerts: &[Alert],
        notice: Option<&Notice>,
        timeout: Duration,
    ) -> Vec<Result<(), DeliveryError>> {
        match (self, notice) {
            (Sink::Broadcast(b), _) => b.broadcast_batch(alerts, timeout),
            (Sink::Notify(n), Some(notice)) => alerts
                .iter()
                .map(|a| n.send(&Message::new(a, notice), timeout))
                .collect(),
            (Sink::Notify(_), None) => {
                let missing = "a notification job without its notice";
                vec![Err(DeliveryError::Permanent(missing.into())); alerts.len()]
            }
        }
    }
}

struct Call {
    target: Kind,
    alerts: Vec<Alert>,
    notice: Option<Notice>,
    timeout: Duration,
}

struct Lane {
    calls: mpsc::Sender<Call>,
    results: mpsc::Receiver<Vec<Result<(), DeliveryError>>>,
}

/// Builds the sink for a job's target, on the job thread (sinks own their connections there).
pub type Build = Arc<dyn Fn(Kind) -> Sink + Send + Sync>;

/// Runs driver calls with a deadline.
pub struct Executor {
    build: Build,
    lane: Option<Lane>,
    /// One clone per live thread: counts the threads that have not ended yet.
    live: Arc<()>,
}

impl Executor {
    /// An executor for drivers and people channels built from `config`; threads start on
    /// first use.
    pub fn new(config: &Config) -> Executor {
        let (broadcast, people) = (config.broadcast.clone(), config.notify.clone());
        Executor::with_drivers(Arc::new(move |target| match target {
            Kind::Broadcast(driver) => Sink::Broadcast(broadcast::build(driver, &broadcast)),
            Kind::Notify(channel) => Sink::Notify(notify::build(channel, &people)),
        }))
    }

    /// An executor whose drivers come from `build` (tests use drivers that hang or panic).
    pub fn with_drivers(build: Build) -> Executor {
        Executor {
            build,
            lane: None,
            live: Arc::new(()),
        }
    }

    /// Delivers `alert` to `target` (with the people `notice`, for a people channel),
    /// waiting at most `timeout`.
    pub fn run(
        &mut self,
        target: Kind,
        alert: &Alert,
        notice: Option<&Notice>,
        timeout: Duration,
    ) -> Result<(), AttemptError> {
        let alerts = vec![alert.clone()];
        let mut results = self.call(target, alerts, notice.cloned(), timeout)?;
        results
            .pop()
            .unwrap_or(Err(DeliveryError::Retryable("no result".into())))?;
        Ok(())
    }

    /// Broadcasts several alerts through one driver in one call (the redis driver pipelines
    /// them), waiting at most `timeout` for all; one result per alert, in order.
    pub fn run_batch(
        &mut self,
        driver: Driver,
        alerts: Vec<Alert>,
        timeout: Duration,
    ) -> Result<Vec<Result<(), DeliveryError>>, AttemptError> {
        self.call(Kind::Broadcast(driver), alerts, None, timeout)
    }

    fn call(
        &mut self,
        target: Kind,
        alerts: Vec<Alert>,
        notice: Option<Notice>,
        timeout: Duration,
    ) -> Result<Vec<Result<(), DeliveryError>>, AttemptError> {
        let mut call = Call {
            target,
            alerts,
            notice,
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
            Ok(results) => {
                self.lane = Some(lane);
                Ok(results)
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
        let build = Arc::clone(&self.build);
        let token = Arc::clone(&self.live);
        thread::Builder::new()
            .name("job".into())
            .spawn(move || {
                let _alive = token;
                let mut sinks: HashMap<Kind, Sink> = HashMap::new();
                for call in call_rx {
                    let sink = sinks
                        .entry(call.target)
                        .or_insert_with(|| build(call.target));
                    let result = sink.deliver(&call.alerts, call.notice.as_ref(), call.timeout);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Boundaries;
    use std::sync::mpsc::Receiver;
    use std::sync::{Mutex, mpsc::Sender};

    /// Log: succeeds. Null: waits until told (a message on its channel), then succeeds.
    /// Redis: panics.
    struct Fake {
        driver: Driver,
        release: Arc<Mutex<Receiver<()>>>,
    }

    impl Broadcaster for Fake {
        fn broadcast(&mut self, _: &Alert, _: Duration) -> Result<(), DeliveryError> {
            match self.driver {
                Driver::Log => Ok(()),
                Driver::Null => {
                    let _ = self.release.lock().unwrap().recv();
                    Ok(())
                }
                _ => panic!("this driver panics"),
            }
        }
    }

    fn executor() -> (Executor, Sender<()>) {
        let (release, rx) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        let build: Build = Arc::new(move |target| {
            let Kind::Broadcast(driver) = target else {
                panic!("the tests only broadcast");
            };
            Sink::Broadcast(Box::new(Fake {
                driver,
                release: Arc::clone(&rx),
            }))
        });
        (Executor::with_drivers(build), release)
    }

    fn alert() -> Alert {
        Alert::new(21, 20, &Boundaries::default(), "test")
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[test]
    fn a_hung_call_times_out_and_the_next_job_runs_on_a_fresh_thread() {
        let (mut ex, release) = executor();
        assert!(
            ex.run(Kind::Broadcast(Driver::Log), &alert(), None, SHORT)
                .is_ok()
        );
        assert_eq!(ex.abandoned(), 0);
        let err = ex
            .run(Kind::Broadcast(Driver::Null), &alert(), None, SHORT)
            .unwrap_err();
        assert!(matches!(err, AttemptError::TimedOut(_)) && err.is_retryable());
        assert_eq!(ex.abandoned(), 1);
        assert!(
            ex.run(Kind::Broadcast(Driver::Log), &alert(), None, SHORT)
                .is_ok()
        );
        // Told to finish, the abandoned thread ends by itself.
        release.send(()).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while ex.abandoned() > 0 {
            assert!(
                std::time::Instant::now() < end,
                "abandoned thread never ended"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_panicking_driver_is_a_failed_attempt_not_a_dead_worker() {
        let (mut ex, _release) = executor();
        let err = ex.run(
            Kind::Broadcast(Driver::Redis),
            &alert(),
            None,
            Duration::from_secs(5),
        );
        assert!(matches!(err, Err(AttemptError::Panicked)), "{err:?}");
        assert!(
            ex.run(Kind::Broadcast(Driver::Log), &alert(), None, SHORT)
                .is_ok()
        );
    }

    #[test]
    fn abandoned_threads_are_counted_until_they_end() {
        let (mut ex, release) = executor();
        for n in 1..=MAX_ABANDONED {
            assert!(
                ex.run(Kind::Broadcast(Driver::Null), &alert(), None, SHORT)
                    .is_err()
            );
            assert_eq!(ex.abandoned(), n);
        }
        for _ in 0..MAX_ABANDONED {
            release.send(()).unwrap();
        }
        // Told to finish, each thread ends and stops being counted.
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while ex.abandoned() > 0 {
            assert!(
                std::time::Instant::now() < end,
                "{} abandoned thread(s) never ended",
                ex.abandoned()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

//! Running a reserved batch: broadcasts through drivers that send a batch in one call go out
//! together, one call per driver; every other job runs on its own, and the whole batch is
//! finished in one round trip.

use super::Worker;
use super::attempt::{Prepared, effective_timeout};
use super::executor::AttemptError;
use crate::broadcast::Driver;
use crate::queue::{Job, Outcome, Reserved};
use log::{error, info};
use std::time::{Duration, Instant};

/// A batch sorted for running: groups by driver, and the jobs that run one by one (with
/// their decoding result, so an undecodable job is recorded, not lost).
struct Sorted<'a> {
    groups: Vec<(Driver, Vec<(&'a Reserved, Prepared)>)>,
    one_by_one: Vec<(&'a Reserved, Result<Prepared, String>)>,
}

impl Worker {
    /// Runs a reserved batch (all from one queue) and finishes all of it in one round trip.
    ///
    /// Before each job that runs on its own, the worker checks that the batch's reservation
    /// still covers the job's timeout, and hands back unrun (no attempt used) what it cannot
    /// start in time, or when it must stop (`stop`).
    pub(super) fn run_batch(
        &mut self,
        jobs: &[Reserved],
        reserved_at: Instant,
        stop: impl Fn(&Worker) -> bool,
    ) {
        let sorted = self.sort(jobs);
        let mut finished: Vec<(&Reserved, Outcome)> = Vec::with_capacity(jobs.len());
        for (driver, group) in sorted.groups {
            self.run_group(driver, group, &mut finished);
        }
        let retry_after = Duration::from_secs(self.config.queue.retry_after);
        let timeout = Duration::from_secs(self.config.queue.timeout);
        // The first job of a batch always runs, so a worker makes progress whatever happens.
        let mut ran_any = !finished.is_empty();
        let mut rest = sorted.one_by_one.into_iter();
        while let Some((reserved, decoded)) = rest.next() {
            let short = reserved_at.elapsed().saturating_add(timeout) >= retry_after;
            if ran_any && (stop(self) || short) {
                finished.push((reserved, Outcome::Release));
                finished.extend(rest.map(|(r, _)| (r, Outcome::Release)));
                break;
            }
            ran_any = true;
            if let Some(outcome) = self.run_one(reserved, decoded) {
                finished.push((reserved, outcome));
            }
        }
        let tally = std::mem::take(&mut self.tally);
        if let Err(e) = self.queue.finish(&jobs[0].queue, &finished, &tally) {
            // The reservations stay; after retry_after the jobs run again (at least once).
            error!("cannot finish {} job(s) on Redis: {e}", finished.len());
        }
    }

    /// Marks jobs as started before they run (an attempt counts only then); false when Redis
    /// cannot take it: the jobs are then left reserved, unrun and uncharged, and come back
    /// after `retry_after`.
    pub(super) fn mark_started(&mut self, jobs: &[&Reserved]) -> bool {
        let Some(first) = jobs.first() else {
            return true;
        };
        match self.queue.start(&first.queue, jobs) {
            Ok(_) => true,
            Err(e) => {
                error!(
                    "cannot mark {} job(s) started on Redis: {e}; they return unrun after \
                     retry_after",
                    jobs.len()
                );
                false
            }
        }
    }

    /// Decodes the batch and sorts it into driver groups and jobs that run on their own.
    fn sort<'a>(&self, jobs: &'a [Reserved]) -> Sorted<'a> {
        let mut sorted = Sorted {
            groups: Vec::new(),
            one_by_one: Vec::new(),
        };
        for reserved in jobs {
            let decoded = Job::decode(&reserved.raw).map(|job| self.prepare(job, reserved));
            match (decoded.as_ref().ok().and_then(Prepared::batchable), decoded) {
                (Some(driver), Ok(p)) => {
                    match sorted.groups.iter_mut().find(|(d, _)| *d == driver) {
                        Some((_, group)) => group.push((reserved, p)),
                        None => sorted.groups.push((driver, vec![(reserved, p)])),
                    }
                }
                (_, decoded) => sorted.one_by_one.push((reserved, decoded)),
            }
        }
        sorted
    }

    /// Broadcasts a group of prepared jobs through one driver in one call.
    fn run_group<'a>(
        &mut self,
        driver: Driver,
        group: Vec<(&'a Reserved, Prepared)>,
        finished: &mut Vec<(&'a Reserved, Outcome)>,
    ) {
        let started = Instant::now();
        let worker_timeout = self.config.queue.timeout;
        let timeout = group
            .iter()
            .map(|(_, p)| effective_timeout(p.job.timeout, worker_timeout))
            .min()
            .unwrap_or(Duration::from_secs(worker_timeout));
        let reserved: Vec<&Reserved> = group.iter().map(|(r, _)| *r).collect();
        if !self.mark_started(&reserved) {
            return;
        }
        for (reserved, p) in &group {
            self.observe_wait(reserved, &p.job);
            info!(
                "{}{} {} RUNNING (attempt {})",
                self.tag, p.job.id, p.job.job, reserved.attempts
            );
        }
        let alerts = group.iter().map(|(_, p)| p.job.payload.clone()).collect();
        let results = match self.executor.run_batch(driver, alerts, timeout) {
            Ok(results) => results
                .into_iter()
                .map(|r| r.map_err(AttemptError::from))
                .collect(),
            Err(e) => vec![Err(e); group.len()],
        };
        for ((reserved, p), result) in group.into_iter().zip(results) {
            let ended = self.conclude(&p, reserved, result);
            let (id, kind) = (p.job.id.to_string(), p.job.job.to_string());
            if let Some(outcome) = self.report(reserved, &id, &kind, ended, started) {
                finished.push((reserved, outcome));
            }
        }
    }
}

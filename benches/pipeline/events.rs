//! The broadcasts one subscriber received, each parsed once: when each count first arrived,
//! and how often each alert id arrived (at-least-once delivery may repeat one).

use crate::support::Subscriber;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Instant;

pub struct Events {
    sub: Subscriber,
    cursor: usize,
    /// When each count was first received.
    pub first: HashMap<u64, Instant>,
    /// Messages per alert id.
    pub ids: HashMap<String, u32>,
    /// Every message, duplicates included.
    pub messages: usize,
    /// Messages that were not an event with a count and an alert id.
    pub unparsable: usize,
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
}

impl Events {
    /// Subscribes to `channel` on the Redis at `url`; returns once the subscription is active.
    pub fn subscribe(url: &str, channel: &str) -> Events {
        Events {
            sub: Subscriber::at(url, channel),
            cursor: 0,
            first: HashMap::new(),
            ids: HashMap::new(),
            messages: 0,
            unparsable: 0,
            first_at: None,
            last_at: None,
        }
    }

    /// Parses what arrived since the last call.
    pub fn ingest(&mut self) -> &mut Self {
        let new = self.sub.since(self.cursor);
        self.cursor += new.len();
        for (at, raw) in new {
            self.messages += 1;
            self.first_at.get_or_insert(at);
            self.last_at = Some(at);
            let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
            let (Some(count), Some(id)) =
                (v["data"]["count"].as_u64(), v["data"]["alert_id"].as_str())
            else {
                self.unparsable += 1;
                continue;
            };
            self.first.entry(count).or_insert(at);
            *self.ids.entry(id.to_string()).or_default() += 1;
        }
        self
    }

    /// Messages that repeated an alert id already received.
    pub fn duplicates(&self) -> usize {
        self.ids
            .values()
            .map(|n| (*n as usize).saturating_sub(1))
            .sum()
    }

    /// How many counts of `range` arrived, at or before `until` when given.
    pub fn counts_in(&self, range: RangeInclusive<u64>, until: Option<Instant>) -> usize {
        range
            .filter(|c| {
                self.first
                    .get(c)
                    .is_some_and(|at| until.is_none_or(|u| *at <= u))
            })
            .count()
    }

    /// How many counts of `range` first arrived within `[from, to]`.
    pub fn counts_between(&self, range: RangeInclusive<u64>, from: Instant, to: Instant) -> usize {
        range
            .filter(|c| self.first.get(c).is_some_and(|at| *at >= from && *at <= to))
            .count()
    }
}

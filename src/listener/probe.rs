//! `items-listen`'s probe for `/readyz`: both servers answer now, and the body says whether
//! this listener is the active one or a standby behind another.

use crate::config::Config;
use crate::db::logical::ChangeSource;
use crate::metrics::Metrics;
use crate::metrics::probe::Servers;
use crate::metrics::server::Probe;
use std::sync::Arc;

/// The listener's probe.
pub(super) struct ListenerProbe {
    servers: Servers,
    metrics: Arc<Metrics>,
    /// The logical source's slot, whose lag is read at scrape time.
    slot: Option<String>,
}

impl ListenerProbe {
    pub(super) fn new(config: &Config, metrics: Arc<Metrics>) -> ListenerProbe {
        ListenerProbe {
            servers: Servers::new(&config.redis, &config.queue.prefix, &config.database),
            metrics,
            slot: (config.source == ChangeSource::Logical).then(|| config.slot.clone()),
        }
    }
}

impl Probe for ListenerProbe {
    fn refresh(&mut self, metrics: &Metrics) {
        let Some(slot) = &self.slot else {
            return;
        };
        let status = self
            .servers
            .db()
            .and_then(|db| db.slot_status(slot).map_err(|e| e.to_string()));
        match status {
            Ok(Some(s)) => {
                metrics.slot_lag_bytes.set(s.lag_bytes as f64);
                metrics.slot_lag_seconds.set(s.lag_seconds);
            }
            Ok(None) => {}
            Err(e) => {
                log::debug!("metrics: cannot read the slot's lag: {e}");
                self.servers.reset();
            }
        }
    }

    fn ready(&mut self) -> Result<String, String> {
        self.servers.check()?;
        Ok(if self.metrics.listener_active.get() == 1 {
            "active".into()
        } else {
            "standby".into()
        })
    }
}

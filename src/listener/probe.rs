//! `items-listen`'s probe for `/readyz`: both servers answer now, and the body says whether
//! this listener is the active one or a standby behind another.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::metrics::probe::Servers;
use crate::metrics::server::Probe;
use std::sync::Arc;

/// The listener's probe.
pub(super) struct ListenerProbe {
    servers: Servers,
    metrics: Arc<Metrics>,
}

impl ListenerProbe {
    pub(super) fn new(config: &Config, metrics: Arc<Metrics>) -> ListenerProbe {
        ListenerProbe {
            servers: Servers::new(&config.redis, &config.queue.prefix, &config.database),
            metrics,
        }
    }
}

impl Probe for ListenerProbe {
    fn refresh(&mut self, _metrics: &Metrics) {}

    fn ready(&mut self) -> Result<String, String> {
        self.servers.check()?;
        Ok(if self.metrics.listener_active.get() == 1 {
            "active".into()
        } else {
            "standby".into()
        })
    }
}

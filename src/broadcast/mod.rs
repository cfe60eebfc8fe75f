//! Broadcast drivers: where an alert's event goes. One file per driver; each driver owns its
//! settings and checks them ([`pusher::check`]), the config layer only loads them.

mod log;
mod null;
pub mod pusher;
mod redis;

pub use self::log::LogBroadcaster;
pub use self::null::NullBroadcaster;
pub use self::pusher::{PusherBroadcaster, PusherConfig};
pub use self::redis::{RedisBroadcaster, published};

use crate::delivery::DeliveryError;
use crate::event::Alert;
use crate::redis_conn::RedisConfig;
use std::time::Duration;

/// A broadcast driver, chosen by `BROADCAST_DRIVER` (a comma list sends to each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// Redis PUBLISH in Laravel Echo's format.
    Redis,
    /// The Pusher HTTP API (Pusher, Soketi, Laravel Reverb).
    Pusher,
    /// One log line per event.
    Log,
    /// Discards events (useful to test the queue alone).
    Null,
}

impl Driver {
    /// Every driver, in the order error messages list them.
    pub const ALL: [Driver; 4] = [Driver::Redis, Driver::Pusher, Driver::Log, Driver::Null];

    /// The name used in config and job kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Redis => "redis",
            Driver::Pusher => "pusher",
            Driver::Log => "log",
            Driver::Null => "null",
        }
    }

    /// Parses a driver name (any case).
    pub fn parse(name: &str) -> Option<Driver> {
        Driver::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }

    /// True for drivers that send a whole batch in one call (the worker groups their jobs).
    pub fn sends_batches(self) -> bool {
        matches!(self, Driver::Redis | Driver::Log | Driver::Null)
    }
}

/// Broadcast settings.
#[derive(Debug, Clone)]
pub struct BroadcastConfig {
    /// Where events go; one job per driver.
    pub drivers: Vec<Driver>,
    /// The channel events are broadcast on.
    pub channel: String,
    /// The event name (Laravel's class name by default).
    pub event: String,
    /// Prefix the redis driver puts before the channel (Laravel's Redis key prefix).
    pub redis_prefix: String,
    /// The Redis server the redis driver publishes to.
    pub redis: RedisConfig,
    /// The pusher driver's server and credentials; set whenever they are configured (and
    /// always when the pusher driver is selected).
    pub pusher: Option<PusherConfig>,
}

/// Sends alerts' events somewhere.
pub trait Broadcaster: Send {
    /// Broadcasts one alert's event. Every network call inside must give up within
    /// `timeout` (the job's own deadline) with a retryable error.
    fn broadcast(&mut self, alert: &Alert, timeout: Duration) -> Result<(), DeliveryError>;

    /// Broadcasts several alerts, in order; one result per alert. Drivers that can send a
    /// batch in one round trip (redis) override this.
    fn broadcast_batch(
        &mut self,
        alerts: &[Alert],
        timeout: Duration,
    ) -> Vec<Result<(), DeliveryError>> {
        alerts.iter().map(|a| self.broadcast(a, timeout)).collect()
    }
}

/// Builds the broadcaster for `driver`. Connections are opened lazily, on first use.
pub fn build(driver: Driver, config: &BroadcastConfig) -> Box<dyn Broadcaster> {
    match driver {
        Driver::Redis => Box::new(RedisBroadcaster::new(config)),
        Driver::Pusher => Box::new(PusherBroadcaster::new(config)),
        Driver::Log => Box::new(LogBroadcaster::new(config)),
        Driver::Null => Box::new(NullBroadcaster),
    }
}

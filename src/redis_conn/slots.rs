//! Redis Cluster's key-to-slot function and the map from slots to the primaries serving them.

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the first `{` and the
/// next `}`, when not empty) or of the whole key, modulo 16384, as Redis computes it.
pub fn slot_of(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Which primary (`host:port`) serves each slot, as `CLUSTER SLOTS` last said, corrected by
/// `MOVED` replies since.
#[derive(Debug, Clone, Default)]
pub struct SlotMap {
    ranges: Vec<(u16, u16, String)>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply; `queried` stands in for a node that reports an empty
    /// host (a node announces itself so when it does not know its own address).
    pub fn parse(reply: &redis::Value, queried: &str) -> Result<SlotMap, String> {
        let redis::Value::Array(entries) = reply else {
            return Err("CLUSTER SLOTS did not return a list".into());
        };
        let queried_host = super::topology::split_addr(queried).map_or("", |(h, _)| h);
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let redis::Value::Array(fields) = entry else {
                return Err("CLUSTER SLOTS entry is not a list".into());
            };
            let (Some(start), Some(end), Some(redis::Value::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err("CLUSTER SLOTS entry is too short".into());
            };
            let host = match primary.first() {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(redis::Value::SimpleString(s)) => s.clone(),
                _ => String::new(),
            };
            let host = if host.is_empty() || host == "?" {
                queried_host.to_string()
            } else {
                host
            };
            let port = primary.get(1).and_then(int).unwrap_or(0);
            let (start, end) = (int(start).unwrap_or(-1), int(end).unwrap_or(-1));
            if !(0..i64::from(SLOTS)).contains(&start) || !(start..i64::from(SLOTS)).contains(&end)
            {
                return Err(format!("CLUSTER SLOTS has a bad range {start}-{end}"));
            }
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            ranges.push((start as u16, end as u16, addr));
        }
        if ranges.is_empty() {
            return Err("the cluster serves no slots yet".into());
        }
        Ok(SlotMap { ranges })
    }

    /// The primary serving `slot`, if known.
    pub fn node(&self, slot: u16) -> Option<&str> {
        self.ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, addr)| addr.as_str())
    }

    /// Records that `slot` moved to `addr` (a `MOVED` reply).
    pub fn moved(&mut self, slot: u16, addr: &str) {
        if self.node(slot) == Some(addr) {
            return;
        }
        let mut split = Vec::with_capacity(self.ranges.len() + 2);
        for (start, end, node) in self.ranges.drain(..) {
            if (start..=end).contains(&slot) {
                if start < slot {
                    split.push((start, slot - 1, node.clone()));
                }
                if slot < end {
                    split.push((slot + 1, end, node));
                }
            } else {
                split.push((start, end, node));
            }
        }
        split.push((slot, slot, addr.to_string()));
        self.ranges = split;
    }

    /// Every primary, each once, in slot order.
    pub fn primaries(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for (_, _, addr) in &self.ranges {
            if !seen.contains(addr) {
                seen.push(addr.clone());
            }
        }
        seen
    }

    /// True before the first `CLUSTER SLOTS` (or after a failover made it stale).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

fn int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(
            slot_of(b"inventory:{queues:default}:notify"),
            slot_of(b"inventory:{queues:default}")
        );
    }

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
            ]),
        ])
    }

    #[test]
    fn slot_map_parses_and_follows_moved() {
        let reply = Value::Array(vec![
            range(0, 5460, "127.0.0.1", 7000),
            range(5461, 10922, "", 7001),
            range(10923, 16383, "127.0.0.1", 7002),
        ]);
        let mut map = SlotMap::parse(&reply, "10.0.0.9:7001").expect("parses");
        assert_eq!(map.node(0), Some("127.0.0.1:7000"));
        assert_eq!(map.node(6000), Some("10.0.0.9:7001"));
        assert_eq!(map.node(16383), Some("127.0.0.1:7002"));
        map.moved(100, "127.0.0.1:7002");
        assert_eq!(map.node(100), Some("127.0.0.1:7002"));
        assert_eq!(map.node(99), Some("127.0.0.1:7000"));
        assert_eq!(map.node(101), Some("127.0.0.1:7000"));
        assert_eq!(map.primaries().len(), 3);
        assert!(SlotMap::parse(&Value::Array(vec![]), "h:1").is_err());
        assert!(SlotMap::parse(&Value::Array(vec![range(9, 3, "h", 1)]), "h:1").is_err());
    }
}

//! A SCAN over the whole cluster: each master in turn, each with its own cursor.

use redis_conn::{Cmd, Error, Value};

use crate::{ClusterClient, ClusterError, NodeAddr};

/// A cluster-wide SCAN, from [`ClusterClient::scan`]. Like SCAN itself it guarantees that a key
/// present for the whole scan is returned at least once (a key may come twice); keys that move
/// between masters during the scan (resharding) may be missed or repeated.
#[derive(Debug)]
pub struct ClusterScan {
    client: ClusterClient,
    masters: Vec<NodeAddr>,
    node: usize,
    cursor: Vec<u8>,
    pattern: Option<String>,
    count: usize,
    key_type: Option<String>,
}

impl ClusterScan {
    /// A scan of `masters`, each from cursor 0.
    pub(crate) fn new(
        client: ClusterClient,
        masters: Vec<NodeAddr>,
        pattern: Option<&str>,
        count: usize,
        key_type: Option<&str>,
    ) -> ClusterScan {
        ClusterScan {
            client,
            masters,
            node: 0,
            cursor: b"0".to_vec(),
            pattern: pattern.map(str::to_string),
            count: count.max(1),
            key_type: key_type.map(str::to_string),
        }
    }

    /// The next batch of keys (possibly empty), or `None` when every master has been scanned.
    ///
    /// # Errors
    /// The node's error; the scan can be resumed by calling again.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<bytes::Bytes>>, ClusterError> {
        let Some(addr) = self.masters.get(self.node) else {
            return Ok(None);
        };
        let mut cmd = Cmd::new("SCAN").arg(&self.cursor);
        if let Some(pattern) = &self.pattern {
            cmd = cmd.arg("MATCH").arg(pattern);
        }
        cmd = cmd.arg("COUNT").arg_int(self.count as i64);
        if let Some(t) = &self.key_type {
            cmd = cmd.arg("TYPE").arg(t);
        }
        let conn = self.client.connection(addr).await?;
        let reply = conn.send(cmd).await?;
        let bad = || {
            ClusterError::Node(Error::Unsupported(format!(
                "unexpected SCAN reply from {addr}"
            )))
        };
        let Value::Array(mut parts) = reply else {
            return Err(bad());
        };
        if parts.len() != 2 {
            return Err(bad());
        }
        let keys = parts.pop().ok_or_else(bad)?;
        let cursor = parts
            .pop()
            .and_then(|c| c.as_bytes().cloned())
            .ok_or_else(bad)?;
        let Value::Array(keys) = keys else {
            return Err(bad());
        };
        if &cursor[..] == b"0" {
            self.node += 1;
            self.cursor = b"0".to_vec();
        } else {
            self.cursor = cursor.to_vec();
        }
        Ok(Some(
            keys.into_iter()
                .filter_map(|k| k.as_bytes().cloned())
                .collect(),
        ))
    }
}

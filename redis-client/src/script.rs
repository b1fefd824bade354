//! Lua scripts sent by SHA-1, loaded automatically.

use std::sync::Arc;

use redis_conn::Cmd;

use crate::commands::with_keys;
use crate::{Commands, FromValue, Result, ToArgs};

/// A Lua script, invoked with `EVALSHA` (only its SHA-1 travels); when the server does not know
/// it (`NOSCRIPT`: a restart, a failover, a new node), it is sent once with `EVAL`, which loads
/// it, and the call goes on. `NOSCRIPT` means nothing ran, so the fallback never runs a script
/// twice.
///
/// ```no_run
/// # async fn demo(client: redis_client::Client) -> redis_client::Result<()> {
/// use redis_client::Script;
///
/// let capped_incr = Script::new(
///     "local v = redis.call('INCR', KEYS[1]) \
///      if v > tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return tonumber(ARGV[1]) end \
///      return v",
/// );
/// let n: i64 = capped_incr.invoke(&client, "hits", 100).await?;
/// # let _ = n;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Script {
    code: Arc<str>,
    sha1: Arc<str>,
}

impl Script {
    /// A script; its SHA-1 is computed here.
    pub fn new(code: &str) -> Script {
        Script {
            code: code.into(),
            sha1: sha1_smol::Sha1::from(code).digest().to_string().into(),
        }
    }

    /// The script's SHA-1, as `SCRIPT LOAD` would return it.
    pub fn sha1(&self) -> &str {
        &self.sha1
    }

    /// The script's code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Runs the script with `keys` (in a cluster, one slot) and `args`.
    ///
    /// # Errors
    /// The script's own error replies, and the usual errors of the call.
    pub async fn invoke<T: FromValue>(
        &self,
        on: &impl Commands,
        keys: impl ToArgs,
        args: impl ToArgs,
    ) -> Result<T> {
        let by_sha = with_keys(Cmd::new("EVALSHA").arg(&*self.sha1), &keys, &args);
        match on.query_cmd(by_sha).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                let full = with_keys(Cmd::new("EVAL").arg(&*self.code), &keys, &args);
                T::from_value(on.query_cmd(full).await?)
            }
            other => T::from_value(other?),
        }
    }

    /// Loads the script (`SCRIPT LOAD`; every master in a cluster) ahead of its first use.
    ///
    /// # Errors
    /// The call's errors.
    pub async fn load(&self, on: &impl Commands) -> Result<()> {
        on.script_load(&*self.code).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sha1_is_the_one_redis_computes() {
        // SCRIPT LOAD "return 1" answers this on any Redis.
        assert_eq!(
            super::Script::new("return 1").sha1(),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }
}

//! `Cmd`: one command as its arguments, with what the table says about it.

use std::fmt;

use bytes::BytesMut;

use crate::table::{self, Blocking, CommandInfo, Effect};

/// One command: a name and binary-safe arguments, plus an optional retry override.
///
/// Arguments are stored back to back in one buffer; encoding appends RESP to the connection's
/// write buffer without intermediate allocations. `Debug` redacts credentials (`AUTH`, `HELLO
/// ... AUTH`, `CONFIG SET requirepass`, `ACL SETUSER ... >pw`, `MIGRATE ... AUTH`).
///
/// ```
/// use redis_conn::Cmd;
///
/// let cmd = Cmd::new("SET").arg("key").arg(b"value").arg("EX").arg_int(60);
/// assert_eq!(cmd.len(), 5);
/// assert_eq!(cmd.arg_at(4), Some(&b"60"[..]));
/// let auth = Cmd::new("AUTH").arg("app").arg("S3cr3t");
/// assert!(!format!("{auth:?}").contains("S3cr3t"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    data: Vec<u8>,
    ends: Vec<usize>,
    effect: Option<Effect>,
}

impl Cmd {
    /// A command with its name.
    pub fn new(name: impl AsRef<[u8]>) -> Cmd {
        let name = name.as_ref();
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(name);
        Cmd {
            data,
            ends: vec![name.len()],
            effect: None,
        }
    }

    /// Appends an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Cmd {
        self.push_arg(arg);
        self
    }

    /// Appends an integer argument, formatted in decimal.
    #[must_use]
    pub fn arg_int(mut self, n: i64) -> Cmd {
        let mut buf = [0u8; 20];
        let digits = format_i64(n, &mut buf);
        self.push_arg(digits);
        self
    }

    /// Appends an argument in place.
    pub fn push_arg(&mut self, arg: impl AsRef<[u8]>) {
        self.data.extend_from_slice(arg.as_ref());
        self.ends.push(self.data.len());
    }

    /// Declares the command safe to resend even when it may have been executed (the caller knows
    /// that running it twice is harmless).
    #[must_use]
    pub fn idempotent(mut self) -> Cmd {
        self.effect = Some(Effect::Idempotent);
        self
    }

    /// Declares the command unsafe to resend once it may have been executed, whatever the table
    /// says.
    #[must_use]
    pub fn not_idempotent(mut self) -> Cmd {
        self.effect = Some(Effect::NonIdempotent);
        self
    }

    /// Number of arguments, the name included.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Always false: a command has at least its name.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Argument `i` (0 is the name).
    pub fn arg_at(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.data[start..end])
    }

    /// The command's name as given.
    pub fn name(&self) -> &[u8] {
        &self.data[..self.ends[0]]
    }

    /// All arguments, the name first.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.ends.len()).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.data[start..self.ends[i]]
        })
    }

    /// What the command table says of this command.
    pub fn info(&self) -> CommandInfo {
        table::lookup(self.name())
    }

    /// The effect used for retry decisions: the caller's override, else the table's.
    pub fn effect(&self) -> Effect {
        self.effect.unwrap_or_else(|| self.info().effect)
    }

    /// How long this command may block.
    pub fn blocking(&self) -> Blocking {
        self.info().blocking(|i| self.arg_at(i), self.len())
    }

    /// Appends the command's RESP encoding to `dst`.
    pub fn write_to(&self, dst: &mut BytesMut) {
        dst.reserve(self.data.len() + 16 * self.ends.len() + 16);
        resp_codec::write_array_header(dst, self.ends.len());
        for arg in self.args() {
            resp_codec::write_bulk(dst, arg);
        }
    }

    /// Indexes of arguments that hold credentials and must never be printed.
    fn secret_args(&self) -> Vec<usize> {
        let upper = |i: usize| self.arg_at(i).map(|a| a.to_ascii_uppercase());
        let is = |i: usize, word: &[u8]| upper(i).as_deref() == Some(word);
        let name = upper(0).unwrap_or_default();
        let mut secret = Vec::new();
        match name.as_slice() {
            b"AUTH" => secret.extend(1..self.len()),
            b"HELLO" | b"MIGRATE" => {
                for i in 1..self.len() {
                    if is(i, b"AUTH") {
                        secret.push(i + 1);
                        if name == b"HELLO" {
                            secret.push(i + 2);
                        }
                    } else if is(i, b"AUTH2") {
                        secret.extend([i + 1, i + 2]);
                    }
                }
            }
            b"CONFIG" if is(1, b"SET") => {
                for i in (2..self.len()).step_by(2) {
                    let key = upper(i).unwrap_or_default();
                    if key.ends_with(b"PASS") || key.ends_with(b"AUTH") || key == b"MASTERUSER" {
                        secret.push(i + 1);
                    }
                }
            }
            b"ACL" if is(1, b"SETUSER") => {
                for i in 3..self.len() {
                    if let Some(a) = self.arg_at(i) {
                        if matches!(a.first(), Some(b'>' | b'<' | b'#' | b'!')) {
                            secret.push(i);
                        }
                    }
                }
            }
            b"SENTINEL" => {
                for i in 1..self.len() {
                    let key = upper(i).unwrap_or_default();
                    if key == b"AUTH-PASS" || key == b"SENTINEL-PASS" {
                        secret.push(i + 1);
                    }
                }
            }
            _ => {}
        }
        secret
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = self.secret_args();
        let mut list = f.debug_list();
        for (i, arg) in self.args().enumerate() {
            if secret.contains(&i) {
                list.entry(&format_args!("***"));
            } else if arg.len() > 64 {
                list.entry(&format_args!(
                    "{:?}... ({} bytes)",
                    String::from_utf8_lossy(&arg[..64]),
                    arg.len()
                ));
            } else {
                list.entry(&String::from_utf8_lossy(arg));
            }
        }
        list.finish()
    }
}

/// Formats an `i64` into `buf`, returning the digits.
fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_an_array_of_bulk_strings() {
        let mut buf = BytesMut::new();
        Cmd::new("SET")
            .arg("k")
            .arg_int(-12)
            .arg(b"")
            .write_to(&mut buf);
        assert_eq!(
            &buf[..],
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n-12\r\n$0\r\n\r\n"
        );
        let mut b = [0u8; 20];
        assert_eq!(
            format_i64(i64::MIN, &mut b),
            i64::MIN.to_string().as_bytes()
        );
    }

    #[test]
    fn debug_never_shows_credentials() {
        let marker = "S3cr3t-marker";
        for cmd in [
            Cmd::new("AUTH").arg(marker),
            Cmd::new("auth").arg("user").arg(marker),
            Cmd::new("HELLO")
                .arg("3")
                .arg("AUTH")
                .arg("default")
                .arg(marker),
            Cmd::new("CONFIG").arg("SET").arg("requirepass").arg(marker),
            Cmd::new("CONFIG").arg("SET").arg("masterauth").arg(marker),
            Cmd::new("ACL")
                .arg("SETUSER")
                .arg("app")
                .arg("on")
                .arg(format!(">{marker}")),
            Cmd::new("MIGRATE")
                .arg("h")
                .arg("1")
                .arg("")
                .arg("0")
                .arg("5000")
                .arg("AUTH2")
                .arg("u")
                .arg(marker),
            Cmd::new("MIGRATE").arg("AUTH").arg(marker),
            Cmd::new("SENTINEL")
                .arg("SET")
                .arg("mymaster")
                .arg("auth-pass")
                .arg(marker),
        ] {
            let text = format!("{cmd:?}");
            assert!(!text.contains(marker), "{text}");
            assert!(text.contains("***"), "{text}");
        }
        assert_eq!(format!("{:?}", Cmd::new("GET").arg("k")), r#"["GET", "k"]"#);
    }

    #[test]
    fn overrides_beat_the_table() {
        assert_eq!(Cmd::new("INCR").arg("k").effect(), Effect::NonIdempotent);
        assert_eq!(
            Cmd::new("INCR").arg("k").idempotent().effect(),
            Effect::Idempotent
        );
        assert_eq!(
            Cmd::new("GET").arg("k").not_idempotent().effect(),
            Effect::NonIdempotent
        );
    }
}

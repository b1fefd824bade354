//! `Cmd`: one command as its arguments, with what the table says about it.

use std::fmt;

use bytes::BytesMut;

use crate::table::{self, Blocking, CommandInfo, Effect};

/// One command: a name and binary-safe arguments, plus an optional retry override.
///
/// Arguments are encoded as RESP bulk strings as they are added, into one buffer: sending the
/// command copies that buffer into the connection's write buffer behind a `*<argc>` header, with
/// no other allocation. `Debug` redacts credentials (`AUTH`, `HELLO ... AUTH`, `CONFIG SET
/// requirepass`, `ACL SETUSER ... >pw`, `MIGRATE ... AUTH`).
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
    /// The arguments, each as `$<len>\r\n<bytes>\r\n`.
    body: BytesMut,
    argc: usize,
    effect: Option<Effect>,
    /// The table's entry for the name, looked up once when the command is made (every send
    /// needs it, a cluster twice).
    info: CommandInfo,
}

impl Cmd {
    /// A command with its name.
    pub fn new(name: impl AsRef<[u8]>) -> Cmd {
        let name = name.as_ref();
        let mut cmd = Cmd {
            // Room for a name, a key and a value of a couple hundred bytes, so that most
            // commands allocate once (a SET of a 100-byte value needs 131 bytes).
            body: BytesMut::with_capacity(256),
            argc: 0,
            effect: None,
            info: table::lookup(name),
        };
        cmd.push_arg(name);
        cmd
    }

    /// Appends an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Cmd {
        self.push_arg(arg);
        self
    }

    /// Appends an integer argument, formatted in decimal without allocating.
    #[must_use]
    pub fn arg_int(mut self, n: i64) -> Cmd {
        resp_codec::write_bulk_int(&mut self.body, n);
        self.argc += 1;
        self
    }

    /// Appends an integer argument in place, formatted without allocating.
    pub fn push_int(&mut self, n: i64) {
        resp_codec::write_bulk_int(&mut self.body, n);
        self.argc += 1;
    }

    /// Appends an argument in place.
    pub fn push_arg(&mut self, arg: impl AsRef<[u8]>) {
        resp_codec::write_bulk(&mut self.body, arg.as_ref());
        self.argc += 1;
    }

    /// Keeps the first `len` arguments (the name is the first, and always stays) and drops the
    /// others, keeping the memory: a way to reuse a command as a template.
    ///
    /// ```
    /// use redis_conn::Cmd;
    ///
    /// let mut cmd = Cmd::new("SET").arg("k").arg("v");
    /// cmd.truncate(2);
    /// assert_eq!(cmd, Cmd::new("SET").arg("k"));
    /// ```
    pub fn truncate(&mut self, len: usize) {
        let len = len.max(1);
        if len >= self.argc {
            return;
        }
        let mut args = self.args();
        args.nth(len - 1);
        let keep = self.body.len() - args.rest().len();
        self.body.truncate(keep);
        self.argc = len;
    }

    /// Declares the command safe to resend even when it may have been executed (the caller knows
    /// that running it twice is harmless).
    #[must_use]
    pub fn idempotent(mut self) -> Cmd {
        self.effect = Some(Effect::RetrySafe);
        self
    }

    /// Declares the command unsafe to resend once it may have been executed, whatever the table
    /// says.
    #[must_use]
    pub fn not_idempotent(mut self) -> Cmd {
        self.effect = Some(Effect::NotRetrySafe);
        self
    }

    /// Number of arguments, the name included.
    pub fn len(&self) -> usize {
        self.argc
    }

    /// Always false: a command has at least its name.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Argument `i` (0 is the name).
    pub fn arg_at(&self, i: usize) -> Option<&[u8]> {
        self.args().nth(i)
    }

    /// The command's name as given.
    pub fn name(&self) -> &[u8] {
        self.args().next().unwrap_or_default()
    }

    /// All arguments, the name first.
    pub fn args(&self) -> Args<'_> {
        Args::new(&self.body, self.argc)
    }

    /// The encoded arguments (without the array header) and their count, for the connection.
    pub(crate) fn encoded(&self) -> (usize, &[u8]) {
        (self.argc, &self.body)
    }

    /// A command from its encoded arguments (a batch's copy of one).
    pub(crate) fn from_parts(
        body: &[u8],
        argc: usize,
        info: CommandInfo,
        effect: Option<Effect>,
    ) -> Cmd {
        Cmd {
            body: BytesMut::from(body),
            argc,
            effect,
            info,
        }
    }

    /// The caller's retry override, if any.
    pub(crate) fn effect_override(&self) -> Option<Effect> {
        self.effect
    }

    /// What the command table says of this command.
    pub fn info(&self) -> CommandInfo {
        self.info
    }

    /// The effect used for retry decisions: the caller's override, else the table's.
    pub fn effect(&self) -> Effect {
        self.effect.unwrap_or_else(|| self.info.effect(self.args()))
    }

    /// How long this command may block.
    pub fn blocking(&self) -> Blocking {
        self.info.blocking(|i| self.arg_at(i), self.len())
    }

    /// The table's entry, the effect and the blocking time (what the connection needs per call).
    pub(crate) fn traits(&self) -> (CommandInfo, Effect, Blocking) {
        let effect = self.effect();
        (self.info, effect, self.blocking())
    }

    /// Appends the command's RESP encoding to `dst`.
    pub fn write_to(&self, dst: &mut BytesMut) {
        dst.reserve(self.body.len() + 16);
        resp_codec::write_array_header(dst, self.argc);
        dst.extend_from_slice(&self.body);
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

/// The arguments of a [`Cmd`], read back from its encoding.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Args<'a> {
    /// The `left` arguments encoded in `rest`.
    pub(crate) fn new(rest: &'a [u8], left: usize) -> Args<'a> {
        Args { rest, left }
    }

    /// The encoding of the arguments not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // The buffer holds only what `write_bulk` wrote: `$<len>\r\n<bytes>\r\n`, the length
        // in decimal digits.
        let mut len = 0usize;
        let mut at = 1;
        while let Some(&d) = self.rest.get(at).filter(|d| d.is_ascii_digit()) {
            len = len * 10 + usize::from(d - b'0');
            at += 1;
        }
        let start = at + 2;
        let arg = self.rest.get(start..start + len)?;
        self.rest = self.rest.get(start + len + 2..)?;
        self.left -= 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Args<'_> {}

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
        let cmd = Cmd::new("X").arg_int(i64::MIN).arg(b"a\r\nb");
        let args: Vec<&[u8]> = cmd.args().collect();
        assert_eq!(
            args,
            vec![&b"X"[..], i64::MIN.to_string().as_bytes(), b"a\r\nb"]
        );
        assert_eq!(cmd.arg_at(3), None);
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
        assert_eq!(Cmd::new("INCR").arg("k").effect(), Effect::NotRetrySafe);
        assert_eq!(
            Cmd::new("INCR").arg("k").idempotent().effect(),
            Effect::RetrySafe
        );
        assert_eq!(
            Cmd::new("GET").arg("k").not_idempotent().effect(),
            Effect::NotRetrySafe
        );
    }
}

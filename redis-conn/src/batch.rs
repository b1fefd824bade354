//! `Batch`: a pipeline's commands encoded back to back into one buffer.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::cmd::{Args, Cmd};
use crate::table::{self, Blocking, CommandInfo, Effect};

/// Commands encoded back to back, array headers included, into one buffer, with what the
/// command table says of each: a pipeline ready to be written as it is.
///
/// A pipeline of [`Cmd`]s keeps one buffer per command and is copied into one more when sent;
/// a batch is that one buffer from the start, so that queueing a command costs no allocation of
/// its own and sending costs one copy. [`Connection::send_batch`](crate::Connection::send_batch)
/// (and the same method of the layers above) sends it; [`Batch::get`] and [`Batch::iter`] read
/// the commands back, for routing. `Debug` redacts credentials as [`Cmd`]'s does.
///
/// ```
/// use redis_conn::{Batch, Cmd};
///
/// let mut batch = Batch::new();
/// batch.push(&Cmd::new("SET").arg("k").arg("v"));
/// batch.start("EXPIRE");
/// batch.push_arg("k");
/// batch.push_int(60);
/// assert_eq!(batch.len(), 2);
/// assert_eq!(batch.get(1).unwrap().arg_at(2), Some(&b"60"[..]));
/// assert_eq!(
///     batch.as_bytes(),
///     b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n60\r\n"
/// );
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Batch {
    buf: BytesMut,
    entries: Vec<Entry>,
    /// Kept up to date as commands are added: how many of them are not ordinary (see
    /// [`CommandInfo::is_ordinary`]), and how many may not be resent, so that sending a batch of
    /// ordinary commands needs no pass over them.
    special: usize,
    unsafe_to_resend: usize,
    retry_safe: usize,
    /// Commands whose effect their arguments decide (`SET ... NX`): looked at when sent.
    judged_by_arguments: usize,
}

/// Where one command of a batch is, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Offset of its array header.
    start: usize,
    /// Offset of its first argument (the name), right after the header.
    body: usize,
    argc: usize,
    info: CommandInfo,
    effect: Option<Effect>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// An empty batch with room for `commands` commands of `bytes` encoded bytes in all.
    pub fn with_capacity(commands: usize, bytes: usize) -> Batch {
        Batch {
            buf: BytesMut::with_capacity(bytes),
            entries: Vec::with_capacity(commands),
            ..Batch::default()
        }
    }

    /// Appends a command (its encoding is copied; `cmd` can be reused or dropped).
    pub fn push(&mut self, cmd: &Cmd) {
        let (argc, body) = cmd.encoded();
        let start = self.buf.len();
        self.reserve_for(body.len() + 16);
        resp_codec::write_array_header(&mut self.buf, argc);
        let body_at = self.buf.len();
        self.buf.extend_from_slice(body);
        self.add_entry(Entry {
            start,
            body: body_at,
            argc,
            info: cmd.info(),
            effect: cmd.effect_override(),
        });
    }

    /// Appends a command of another batch (its encoding is copied as it is).
    pub fn push_batched(&mut self, cmd: BatchCmd<'_>) {
        let start = self.buf.len();
        let bytes = cmd.encoded();
        self.reserve_for(bytes.len());
        self.buf.extend_from_slice(bytes);
        self.add_entry(Entry {
            start,
            body: start + (cmd.entry.body - cmd.entry.start),
            ..*cmd.entry
        });
    }

    /// Starts a command with its name; [`Batch::push_arg`] and [`Batch::push_int`] add its
    /// arguments.
    pub fn start(&mut self, name: impl AsRef<[u8]>) {
        let name = name.as_ref();
        let start = self.buf.len();
        self.reserve_for(name.len() + 16);
        resp_codec::write_array_header(&mut self.buf, 1);
        let body = self.buf.len();
        resp_codec::write_bulk(&mut self.buf, name);
        self.add_entry(Entry {
            start,
            body,
            argc: 1,
            info: table::lookup(name),
            effect: None,
        });
    }

    /// Records one more command, and what it changes in the batch's summary.
    #[inline]
    fn add_entry(&mut self, entry: Entry) {
        self.special += usize::from(!entry.info.is_ordinary());
        match entry.effect {
            Some(Effect::NotRetrySafe) => self.unsafe_to_resend += 1,
            Some(Effect::RetrySafe) => self.retry_safe += 1,
            Some(Effect::ReadOnly) => {}
            // Judged with its arguments, which are not written yet: when the batch is sent.
            None if entry.info.judged_by_arguments() => self.judged_by_arguments += 1,
            None => match entry.info.effect_by_name() {
                Effect::NotRetrySafe => self.unsafe_to_resend += 1,
                Effect::RetrySafe => self.retry_safe += 1,
                Effect::ReadOnly => {}
            },
        }
        self.entries.push(entry);
    }

    /// When every command is ordinary (none may block, needs a connection of its own or
    /// streams its replies), the effect of the batch as a whole: its least resendable
    /// command's. `None` when some command needs a closer look.
    pub(crate) fn ordinary_effect(&self) -> Option<Effect> {
        if self.special > 0 {
            return None;
        }
        let by_name = if self.unsafe_to_resend > 0 {
            Effect::NotRetrySafe
        } else if self.retry_safe > 0 {
            Effect::RetrySafe
        } else {
            Effect::ReadOnly
        };
        if self.judged_by_arguments == 0 || by_name == Effect::NotRetrySafe {
            return Some(by_name);
        }
        Some(
            self.iter()
                .filter(|c| c.entry.effect.is_none() && c.entry.info.judged_by_arguments())
                .fold(by_name, |effect, c| effect.worst(c.effect())),
        )
    }

    /// Appends an argument to the last command.
    ///
    /// # Panics
    /// When the batch is empty (a programming error: there is no command to add to).
    pub fn push_arg(&mut self, arg: impl AsRef<[u8]>) {
        self.assert_open();
        resp_codec::write_bulk(&mut self.buf, arg.as_ref());
        self.grow_last(1);
    }

    /// Appends an integer argument to the last command, formatted without allocating.
    ///
    /// # Panics
    /// When the batch is empty.
    pub fn push_int(&mut self, n: i64) {
        self.assert_open();
        resp_codec::write_bulk_int(&mut self.buf, n);
        self.grow_last(1);
    }

    /// Appends `more`'s arguments, its name left out, to the last command: a way to add the
    /// arguments of any [`Cmd`] builder at once.
    ///
    /// # Panics
    /// When the batch is empty.
    pub fn extend_last(&mut self, more: &Cmd) {
        self.assert_open();
        let mut args = more.args();
        if args.next().is_none() {
            return;
        }
        // What follows the name's encoding.
        self.buf.extend_from_slice(args.rest());
        self.grow_last(more.len() - 1);
    }

    /// Room for a command of about `bytes` bytes. A batch made without a capacity starts with
    /// room for several commands like its first one: a pipeline of a hundred commands then
    /// grows its buffer three times, not seven.
    fn reserve_for(&mut self, bytes: usize) {
        if self.entries.capacity() == 0 {
            self.entries.reserve(16);
            self.buf
                .reserve(bytes.saturating_mul(16).clamp(1024, 64 * 1024));
        } else {
            self.buf.reserve(bytes);
        }
    }

    fn assert_open(&self) {
        assert!(
            !self.entries.is_empty(),
            "a batch needs a command before arguments can be added to it"
        );
    }

    /// Counts `added` arguments just appended to the last command, rewriting its array header
    /// (in place, or moved by a byte when the count gains a digit).
    #[inline]
    fn grow_last(&mut self, added: usize) {
        let Some(last) = self.entries.last_mut() else {
            return;
        };
        last.argc += added;
        if last.argc < 10 {
            // `*<digit>\r\n`, as it was: one digit to change (most commands).
            self.buf[last.start + 1] = b'0' + last.argc as u8;
        } else {
            self.rewrite_last_header();
        }
    }

    /// Writes the last command's array header for its count, moving its arguments when the
    /// header grew.
    #[inline(never)]
    fn rewrite_last_header(&mut self) {
        let Some(last) = self.entries.last_mut() else {
            return;
        };
        let header = resp_codec::array_header(last.argc);
        let header = header.as_ref();
        let old = last.body - last.start;
        if header.len() > old {
            let shift = header.len() - old;
            let end = self.buf.len();
            self.buf.resize(end + shift, 0);
            self.buf.copy_within(last.body..end, last.body + shift);
            last.body += shift;
        }
        self.buf[last.start..last.body].copy_from_slice(header);
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the commands, keeping the memory for new ones.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
        self.special = 0;
        self.unsafe_to_resend = 0;
        self.retry_safe = 0;
        self.judged_by_arguments = 0;
    }

    /// Command `i`.
    pub fn get(&self, i: usize) -> Option<BatchCmd<'_>> {
        (i < self.entries.len()).then(|| self.at(i))
    }

    /// The commands, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = BatchCmd<'_>> + '_ {
        (0..self.entries.len()).map(|i| self.at(i))
    }

    /// Command `i`, which exists.
    fn at(&self, i: usize) -> BatchCmd<'_> {
        let entry = &self.entries[i];
        let end = self
            .entries
            .get(i + 1)
            .map_or(self.buf.len(), |next| next.start);
        BatchCmd {
            entry,
            bytes: &self.buf[entry.start..end],
        }
    }

    /// The whole encoding: every command, as written to the server.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The whole encoding, taken without a copy.
    pub fn into_bytes(self) -> Bytes {
        self.buf.freeze()
    }

    /// Every command as a [`Cmd`] of its own (a copy of each).
    pub fn to_cmds(&self) -> Vec<Cmd> {
        self.iter().map(|c| c.to_cmd()).collect()
    }
}

impl From<&[Cmd]> for Batch {
    fn from(cmds: &[Cmd]) -> Batch {
        let bytes = cmds.iter().map(|c| c.encoded().1.len() + 8).sum();
        let mut batch = Batch::with_capacity(cmds.len(), bytes);
        batch.extend(cmds);
        batch
    }
}

impl<'a> Extend<&'a Cmd> for Batch {
    fn extend<I: IntoIterator<Item = &'a Cmd>>(&mut self, cmds: I) {
        for cmd in cmds {
            self.push(cmd);
        }
    }
}

impl Extend<Cmd> for Batch {
    fn extend<I: IntoIterator<Item = Cmd>>(&mut self, cmds: I) {
        for cmd in cmds {
            self.push(&cmd);
        }
    }
}

impl FromIterator<Cmd> for Batch {
    fn from_iter<I: IntoIterator<Item = Cmd>>(cmds: I) -> Batch {
        let mut batch = Batch::new();
        batch.extend(cmds);
        batch
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One command of a [`Batch`], borrowed.
#[derive(Clone, Copy)]
pub struct BatchCmd<'a> {
    entry: &'a Entry,
    /// Its encoding, header included.
    bytes: &'a [u8],
}

impl<'a> BatchCmd<'a> {
    /// Number of arguments, the name included.
    pub fn len(&self) -> usize {
        self.entry.argc
    }

    /// Always false: a command has at least its name.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// All arguments, the name first.
    pub fn args(&self) -> Args<'a> {
        Args::new(self.body(), self.entry.argc)
    }

    /// Argument `i` (0 is the name).
    pub fn arg_at(&self, i: usize) -> Option<&'a [u8]> {
        self.args().nth(i)
    }

    /// The command's name as given.
    pub fn name(&self) -> &'a [u8] {
        self.args().next().unwrap_or_default()
    }

    /// What the command table says of this command.
    pub fn info(&self) -> CommandInfo {
        self.entry.info
    }

    /// The effect used for retry decisions: the caller's override, else the table's.
    pub fn effect(&self) -> Effect {
        self.entry
            .effect
            .unwrap_or_else(|| self.entry.info.effect(self.args()))
    }

    /// How long this command may block.
    pub fn blocking(&self) -> Blocking {
        self.entry
            .info
            .blocking(|i| self.arg_at(i), self.entry.argc)
    }

    /// Its RESP encoding, as written.
    pub fn encoded(&self) -> &'a [u8] {
        self.bytes
    }

    /// The command as a [`Cmd`] of its own.
    pub fn to_cmd(&self) -> Cmd {
        Cmd::from_parts(
            self.body(),
            self.entry.argc,
            self.entry.info,
            self.entry.effect,
        )
    }

    fn body(&self) -> &'a [u8] {
        &self.bytes[self.entry.body - self.entry.start..]
    }
}

impl fmt::Debug for BatchCmd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_cmd(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(cmds: &[Cmd]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for cmd in cmds {
            cmd.write_to(&mut out);
        }
        out.to_vec()
    }

    #[test]
    fn holds_what_the_commands_would_write() {
        let cmds = [
            Cmd::new("SET")
                .arg("k")
                .arg(vec![7u8; 300])
                .arg("EX")
                .arg_int(9),
            Cmd::new("INCR").arg("n").idempotent(),
            Cmd::new("PING"),
        ];
        let batch = Batch::from(&cmds[..]);
        assert_eq!(batch.as_bytes(), &encoded(&cmds)[..]);
        assert_eq!(batch.len(), 3);
        for (cmd, got) in cmds.iter().zip(batch.iter()) {
            assert_eq!(got.to_cmd(), *cmd);
            assert_eq!(got.len(), cmd.len());
            assert_eq!(got.name(), cmd.name());
            assert_eq!(got.effect(), cmd.effect());
            assert_eq!(got.info(), cmd.info());
            let mut alone = BytesMut::new();
            cmd.write_to(&mut alone);
            assert_eq!(got.encoded(), &alone[..]);
        }
        assert!(batch.get(3).is_none());
        assert_eq!(batch.to_cmds(), cmds.to_vec());
        assert_eq!(batch.clone().into_bytes(), encoded(&cmds));
    }

    #[test]
    fn arguments_added_later_rewrite_the_header() {
        let mut batch = Batch::new();
        batch.push(&Cmd::new("GET").arg("a"));
        batch.start("RPUSH");
        let mut expected = Cmd::new("RPUSH");
        // 1 -> 9 -> 10 -> 99 -> 100 arguments: the header gains a digit twice.
        for i in 0..120 {
            batch.push_arg(format!("item{i}"));
            expected.push_arg(format!("item{i}"));
            batch.push_int(i);
            expected.push_int(i);
            assert_eq!(batch.get(1).unwrap().to_cmd(), expected);
        }
        assert_eq!(
            batch.as_bytes(),
            &encoded(&[Cmd::new("GET").arg("a"), expected.clone()])[..]
        );
        let more = Cmd::new("ignored").arg("x").arg_int(-5);
        batch.extend_last(&more);
        let expected = expected.arg("x").arg_int(-5);
        assert_eq!(batch.get(1).unwrap().to_cmd(), expected);
        assert_eq!(batch.get(1).unwrap().len(), 243);
        // A typed command's arguments can be extended too.
        batch.push(&Cmd::new("SET").arg("k").arg("v"));
        batch.push_arg("NX");
        assert_eq!(
            batch.get(2).unwrap().to_cmd(),
            Cmd::new("SET").arg("k").arg("v").arg("NX")
        );
    }

    #[test]
    fn commands_copy_from_one_batch_to_another() {
        let cmds = [
            Cmd::new("GET").arg("a"),
            Cmd::new("INCR").arg("n").idempotent(),
            Cmd::new("RPUSH")
                .arg("l")
                .arg("1")
                .arg("2")
                .arg("3")
                .arg("4")
                .arg("5")
                .arg("6")
                .arg("7")
                .arg("8")
                .arg("9"),
        ];
        let all = Batch::from(&cmds[..]);
        let mut some = Batch::new();
        some.push_batched(all.get(2).unwrap());
        some.push_batched(all.get(1).unwrap());
        assert_eq!(some.to_cmds(), vec![cmds[2].clone(), cmds[1].clone()]);
        assert_eq!(some.get(1).unwrap().effect(), Effect::RetrySafe);
        some.push_arg("more");
        assert_eq!(some.get(1).unwrap().to_cmd(), cmds[1].clone().arg("more"));
        assert_eq!(
            some.as_bytes(),
            &encoded(&[cmds[2].clone(), cmds[1].clone().arg("more")])[..]
        );
    }

    #[test]
    fn the_summary_follows_the_commands_added() {
        let batch = |cmds: &[Cmd]| Batch::from(cmds);
        let get = || Cmd::new("GET").arg("k");
        assert_eq!(batch(&[get()]).ordinary_effect(), Some(Effect::ReadOnly));
        let set = Cmd::new("SET").arg("k").arg("v");
        assert_eq!(
            batch(&[get(), set.clone(), get()]).ordinary_effect(),
            Some(Effect::RetrySafe)
        );
        let incr = Cmd::new("incr").arg("n");
        assert_eq!(
            batch(&[set.clone(), incr.clone()]).ordinary_effect(),
            Some(Effect::NotRetrySafe)
        );
        // The caller's overrides count, both ways.
        assert_eq!(
            batch(&[incr.clone().idempotent()]).ordinary_effect(),
            Some(Effect::RetrySafe)
        );
        assert_eq!(
            batch(&[get().not_idempotent()]).ordinary_effect(),
            Some(Effect::NotRetrySafe)
        );
        // A command that may block, needs its own connection or streams its replies asks for a
        // closer look, wherever it is.
        for special in [
            Cmd::new("BLPOP").arg("l").arg("1"),
            Cmd::new("XREAD").arg("STREAMS").arg("s").arg("0"),
            Cmd::new("WATCH").arg("k"),
            Cmd::new("MULTI"),
            Cmd::new("SUBSCRIBE").arg("c"),
        ] {
            let mut b = batch(&[get(), special.clone(), get()]);
            assert_eq!(b.ordinary_effect(), None, "{special:?}");
            let mut copy = Batch::new();
            copy.push_batched(b.get(1).unwrap());
            assert_eq!(copy.ordinary_effect(), None, "{special:?} copied");
            b.clear();
            assert_eq!(b.ordinary_effect(), Some(Effect::ReadOnly));
        }
        // Commands started by name count as well.
        let mut b = Batch::new();
        b.start("BRPOP");
        b.push_arg("l");
        b.push_int(0);
        assert_eq!(b.ordinary_effect(), None);
        let mut b = Batch::new();
        b.start("DEL");
        b.push_arg("k");
        assert_eq!(b.ordinary_effect(), Some(Effect::NotRetrySafe));
        // Commands whose arguments decide are judged with the arguments added after the name.
        let mut b = Batch::new();
        b.start("SET");
        b.push_arg("k");
        b.push_arg("v");
        assert_eq!(b.ordinary_effect(), Some(Effect::RetrySafe));
        b.start("SET");
        b.push_arg("lock");
        b.push_arg("me");
        b.push_arg("NX");
        assert_eq!(b.ordinary_effect(), Some(Effect::NotRetrySafe));
        let mut copy = Batch::new();
        copy.push_batched(b.get(1).unwrap());
        assert_eq!(copy.ordinary_effect(), Some(Effect::NotRetrySafe));
        assert_eq!(
            batch(&[
                get(),
                Cmd::new("ZADD").arg("z").arg("INCR").arg("1").arg("m")
            ])
            .ordinary_effect(),
            Some(Effect::NotRetrySafe)
        );
    }

    #[test]
    #[should_panic(expected = "needs a command")]
    fn arguments_need_a_command() {
        Batch::new().push_arg("x");
    }

    #[test]
    fn clear_keeps_nothing() {
        let mut batch: Batch = [Cmd::new("PING"), Cmd::new("PING")].into_iter().collect();
        batch.clear();
        assert!(batch.is_empty());
        assert!(batch.as_bytes().is_empty());
        batch.start("ECHO");
        batch.push_arg("hi");
        assert_eq!(batch.as_bytes(), b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n");
    }

    #[test]
    fn debug_redacts_credentials() {
        let mut batch = Batch::new();
        batch.push(&Cmd::new("AUTH").arg("user").arg("S3cr3t-marker"));
        batch.start("CONFIG");
        batch.push_arg("SET");
        batch.push_arg("requirepass");
        batch.push_arg("S3cr3t-marker");
        let text = format!("{batch:?}");
        assert!(!text.contains("S3cr3t-marker"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}

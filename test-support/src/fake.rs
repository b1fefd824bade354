//! For fake servers (a peer that misbehaves in ways a real server cannot): reading the commands
//! a client writes.

/// One command (a RESP array of bulk strings) at the start of `buf`, its arguments in capitals,
/// and how many bytes it took; `None` until a whole command is there (or for anything else).
///
/// ```
/// let (args, used) = test_support::parse_command(b"*2\r\n$4\r\nping\r\n$2\r\nhi\r\n").unwrap();
/// assert_eq!((args, used), (vec!["PING".to_string(), "HI".to_string()], 22));
/// assert!(test_support::parse_command(b"*2\r\n$4\r\nping\r\n").is_none());
/// ```
pub fn parse_command(buf: &[u8]) -> Option<(Vec<String>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let number = |text: &[u8], prefix: &[u8]| -> Option<usize> {
        std::str::from_utf8(text.strip_prefix(prefix)?)
            .ok()?
            .parse()
            .ok()
    };
    let (head, mut at) = line(buf, 0)?;
    let n = number(head, b"*")?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let (len, next) = line(buf, at)?;
        let len = number(len, b"$")?;
        let arg = buf.get(next..next.checked_add(len)?)?;
        if buf.len() < next + len + 2 {
            return None;
        }
        args.push(String::from_utf8_lossy(arg).to_uppercase());
        at = next + len + 2;
    }
    Some((args, at))
}

//! The Redis handshake, done on every connect and reconnect: HELLO 3 (or RESP2's AUTH),
//! CLIENT SETNAME, SELECT, READONLY, pipelined in one write.

use bytes::BytesMut;
use resp_codec::{Decoder, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::transport::Stream;
use crate::{Cmd, ConnectionConfig, Error, Protocol};

/// The protocol the connection ended up speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spoken {
    Resp2,
    Resp3,
}

/// Runs the handshake. Replies are read with the connection's own buffer and decoder, so nothing
/// that arrives after them is lost.
pub(crate) async fn handshake(
    stream: &mut Stream,
    config: &ConnectionConfig,
    addr: &str,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Result<Spoken, Error> {
    if config.protocol == Protocol::Resp3 {
        let mut hello = Cmd::new("HELLO").arg("3");
        if let Some(password) = &config.password {
            hello = hello
                .arg("AUTH")
                .arg(config.username.as_deref().unwrap_or("default"))
                .arg(password.expose());
        }
        if let Some(name) = &config.client_name {
            hello = hello.arg("SETNAME").arg(name);
        }
        let mut cmds = vec![hello];
        cmds.extend(session_commands(config));
        let replies = round_trip(stream, &cmds, addr, buf, decoder).await?;
        match &replies[0] {
            Value::Error(e) => {
                let text = String::from_utf8_lossy(e);
                let code = text.split(' ').next().unwrap_or("");
                if code == "NOPROTO" || text.contains("unknown command") {
                    // Redis < 6: speak RESP2. The rest of the pipeline failed with NOAUTH or
                    // ran unauthenticated; it is redone below.
                } else {
                    return Err(classify(addr, &text));
                }
            }
            _ => {
                check_session_replies(&replies[1..], addr)?;
                return Ok(Spoken::Resp3);
            }
        }
    }
    let mut cmds = Vec::new();
    if let Some(password) = &config.password {
        let mut auth = Cmd::new("AUTH");
        if let Some(user) = &config.username {
            auth = auth.arg(user);
        }
        cmds.push(auth.arg(password.expose()));
    }
    if let Some(name) = &config.client_name {
        cmds.push(Cmd::new("CLIENT").arg("SETNAME").arg(name));
    }
    cmds.extend(session_commands(config));
    if !cmds.is_empty() {
        let replies = round_trip(stream, &cmds, addr, buf, decoder).await?;
        check_session_replies(&replies, addr)?;
    }
    Ok(Spoken::Resp2)
}

fn session_commands(config: &ConnectionConfig) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    if config.database != 0 {
        cmds.push(Cmd::new("SELECT").arg_int(config.database));
    }
    if config.readonly {
        cmds.push(Cmd::new("READONLY"));
    }
    cmds
}

fn check_session_replies(replies: &[Value], addr: &str) -> Result<(), Error> {
    for reply in replies {
        if let Value::Error(e) = reply {
            return Err(classify(addr, &String::from_utf8_lossy(e)));
        }
    }
    Ok(())
}

/// Credential errors are `Auth` (permanent); anything else is a handshake failure.
fn classify(addr: &str, message: &str) -> Error {
    let code = message.split(' ').next().unwrap_or("");
    if matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
        || message.contains("invalid password")
        || message.contains("invalid username-password")
        || message.contains("without any password configured")
    {
        Error::Auth {
            addr: addr.to_string(),
            message: message.to_string(),
        }
    } else {
        Error::Handshake {
            addr: addr.to_string(),
            message: message.to_string(),
        }
    }
}

/// Writes `cmds` in one write and reads one reply each.
async fn round_trip(
    stream: &mut Stream,
    cmds: &[Cmd],
    addr: &str,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Result<Vec<Value>, Error> {
    let lost = |reason: String| Error::ConnectionLost {
        addr: addr.to_string(),
        reason,
        sent: crate::Sent::Maybe,
    };
    // A TLS alert after the handshake (a client certificate the server refused, with TLS 1.3)
    // surfaces on the first read: report it as the TLS error it is.
    let io_error = |e: std::io::Error| match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::Tls {
            addr: addr.to_string(),
            reason: tls.to_string(),
        },
        None => lost(format!("during the handshake: {e}")),
    };
    let mut out = BytesMut::new();
    for cmd in cmds {
        cmd.write_to(&mut out);
    }
    stream.write_all(&out).await.map_err(io_error)?;
    let mut replies = Vec::with_capacity(cmds.len());
    while replies.len() < cmds.len() {
        match decoder.decode(buf) {
            Ok(Some(Value::Push(_))) => {}
            Ok(Some(v)) => replies.push(v),
            Ok(None) => {
                buf.reserve(8192);
                let n = stream.read_buf(buf).await.map_err(io_error)?;
                if n == 0 {
                    return Err(lost("closed by the server during the handshake".into()));
                }
            }
            Err(source) => {
                return Err(Error::Protocol {
                    addr: addr.to_string(),
                    source,
                })
            }
        }
    }
    Ok(replies)
}

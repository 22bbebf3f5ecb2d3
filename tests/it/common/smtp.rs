//! An SMTP server on loopback, in the test process, that accepts every message and hands it to
//! the test: envelope, raw data, and the decoded text of its body (MIME parts, base64 and
//! quoted-printable undone by `mail-parser`), so a test can look for a link in it however the
//! mailer encoded it. Only the small SMTP loop is written here.
//! It can also be slow to accept a message, to keep the call that sends it in flight, and can be
//! stopped and started again on the same port, to play a mail server that is down for a while.

use std::time::Duration;

use mail_parser::{Message, MessageParser};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One message as received.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope sender (MAIL FROM), without angle brackets.
    pub from: String,
    /// The envelope recipients (RCPT TO), without angle brackets.
    pub to: Vec<String>,
    /// The DATA, dot-unstuffed, without the final ".".
    pub data: String,
}

impl Mail {
    fn parsed(&self) -> Message<'_> {
        MessageParser::default()
            .parse(self.data.as_bytes())
            .expect("a MIME message")
    }

    /// The value of the first header `name` (case-insensitive) as written, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let message = self.parsed();
        let raw = message.header_raw(name)?;
        let lines: Vec<&str> = raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        Some(lines.join(" "))
    }

    /// The decoded text of every body part, joined by newlines.
    pub fn text(&self) -> String {
        let message = self.parsed();
        let parts: Vec<&str> = message
            .parts
            .iter()
            .filter_map(|part| part.text_contents())
            .collect();
        parts.join("\n")
    }
}

pub struct SmtpSink {
    pub port: u16,
    messages: mpsc::UnboundedReceiver<Mail>,
    task: Option<JoinHandle<()>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        Self::bind(0, Duration::ZERO).await
    }

    /// A sink on `port`, e.g. the port of one stopped earlier.
    pub async fn start_on(port: u16) -> SmtpSink {
        Self::bind(port, Duration::ZERO).await
    }

    /// A sink that hands each message to the test as soon as it has it, but acknowledges it only
    /// `delay` later: the client's send, and the call making it, stay in flight meanwhile.
    pub async fn slow(delay: Duration) -> SmtpSink {
        Self::bind(0, delay).await
    }

    async fn bind(port: u16, delay: Duration) -> SmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("binding SMTP");
        let port = listener.local_addr().unwrap().port();
        let (tx, messages) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(session(stream, tx.clone(), delay));
            }
        });
        SmtpSink {
            port,
            messages,
            task: Some(task),
        }
    }

    /// Stops listening, and returns once the port refuses connections.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The next message received; panics if none arrives within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Mail {
        tokio::time::timeout(wait, self.messages.recv())
            .await
            .expect("no message arrived")
            .expect("the SMTP server stopped")
    }

    /// A message already received, if any.
    pub fn try_next(&mut self) -> Option<Mail> {
        self.messages.try_recv().ok()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One SMTP session: enough of RFC 5321 for a client that sends plain (no TLS, no AUTH) mail.
async fn session(stream: TcpStream, tx: mpsc::UnboundedSender<Mail>, delay: Duration) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut from = String::new();
    let mut to = Vec::new();
    if write
        .write_all(b"220 sink.test ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    loop {
        let mut line = String::new();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 sink.test\r\n",
            "MAIL" => {
                from = address(command);
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                to.push(address(command));
                b"250 OK\r\n"
            }
            "DATA" => {
                if write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut data = String::new();
                loop {
                    let mut line = String::new();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    match line.strip_prefix('.') {
                        Some(rest) => data.push_str(rest),
                        None => data.push_str(&line),
                    }
                }
                // Hand the message over before acknowledging it: once the client has its 250,
                // the test can find the message.
                let _ = tx.send(Mail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
                tokio::time::sleep(delay).await;
                b"250 OK queued\r\n"
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                let _ = write.write_all(b"221 Bye\r\n").await;
                return;
            }
            _ => b"502 Command not implemented\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The address in `MAIL FROM:<a@b> SIZE=…` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    let after = command.split_once(':').map(|(_, a)| a).unwrap_or("").trim();
    match (after.find('<'), after.find('>')) {
        (Some(open), Some(close)) if open < close => after[open + 1..close].to_string(),
        _ => after.split_whitespace().next().unwrap_or("").to_string(),
    }
}

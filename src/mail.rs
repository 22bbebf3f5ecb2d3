//! Invitation emails over SMTP (lettre). Delivery happens after the invitation committed, so a
//! failing mail server never loses an invitation; the outcome is reported to the caller, who
//! can resend.

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::invitation::Invitation;

#[derive(Clone, Debug)]
pub struct MailOptions {
    /// Base of the accept link; the token is appended as `token=…`.
    pub accept_url: Option<String>,
    /// `smtp://host:port` (plain; `?tls=required` or `?tls=opportunistic` for STARTTLS),
    /// `smtps://host:port` (TLS), with optional `user:password@`. Without it no email is sent.
    pub smtp_url: Option<String>,
    pub from: String,
}

impl Default for MailOptions {
    fn default() -> Self {
        Self {
            accept_url: None,
            smtp_url: None,
            from: "no-reply@localhost".into(),
        }
    }
}

/// What happened to one invitation email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    NotConfigured,
    Sent,
    Failed(String),
}

#[derive(Clone)]
pub struct Mailer {
    options: MailOptions,
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
}

impl Mailer {
    /// Checks the settings; a malformed SMTP URL or sender is a start-up error.
    pub fn new(options: MailOptions) -> Result<Mailer, String> {
        let transport = match &options.smtp_url {
            None => None,
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("--smtp-url {url:?}: {e}"))?
                    .timeout(Some(std::time::Duration::from_secs(10)))
                    .build(),
            ),
        };
        options
            .from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("--smtp-from {:?}: {e}", options.from))?;
        Ok(Mailer { options, transport })
    }

    /// The accept link for `token`, when a base URL is configured.
    pub fn accept_url(&self, token: &str) -> Option<String> {
        self.options.accept_url.as_ref().map(|base| {
            let separator = if base.contains('?') { '&' } else { '?' };
            format!("{base}{separator}token={token}")
        })
    }

    /// Sends the invitation email with its accept link (or token).
    pub async fn send_invitation(
        &self,
        invitation: &Invitation,
        tenant_name: &str,
        token: &str,
    ) -> Delivery {
        let Some(transport) = &self.transport else {
            return Delivery::NotConfigured;
        };
        let link = self
            .accept_url(token)
            .unwrap_or_else(|| format!("Invitation token: {token}"));
        let body = format!(
            "You have been invited to join {tenant_name} as {role}.\r\n\r\nAccept the invitation:\r\n{link}\r\n\r\nThis invitation expires at {expires} (UTC).\r\n",
            role = invitation.role,
            expires = chrono::DateTime::from_timestamp_micros(invitation.expires_at)
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
        );
        let message = match (|| {
            Message::builder()
                .from(self.options.from.parse()?)
                .to(invitation.email.parse()?)
                .subject(format!("You are invited to join {tenant_name}"))
                .header(ContentType::TEXT_PLAIN)
                .body(body)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        })() {
            Ok(message) => message,
            Err(error) => return Delivery::Failed(error.to_string()),
        };
        match transport.send(message).await {
            Ok(_) => Delivery::Sent,
            Err(error) => {
                tracing::warn!(%error, invitation = %invitation.id, "invitation email failed");
                Delivery::Failed(error.to_string())
            }
        }
    }
}

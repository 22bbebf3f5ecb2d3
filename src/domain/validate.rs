//! Input validation that collects every invalid field of a request, so a caller sees all of its
//! mistakes at once (one `google.rpc.BadRequest` with a violation per field).

use uuid::Uuid;

use super::email::canonical_email;
use super::error::{DomainError, FieldViolation};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 320;
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;
pub const MAX_ROLE_NAME_CHARS: usize = 64;
pub const MAX_QUERY_CHARS: usize = 200;
pub const MAX_REQUEST_ID_CHARS: usize = 64;

#[derive(Default)]
pub struct Validator {
    violations: Vec<FieldViolation>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn violation(&mut self, field: &str, description: impl Into<String>) {
        self.violations
            .push(FieldViolation::new(field, description));
    }

    /// A required UUID. Returns the nil UUID on error so callers can keep validating.
    pub fn uuid(&mut self, field: &str, value: &str) -> Uuid {
        if value.is_empty() {
            self.violation(field, "is required");
            return Uuid::nil();
        }
        match Uuid::try_parse(value) {
            Ok(id) if !id.is_nil() => id,
            Ok(_) => {
                self.violation(field, "must not be the nil UUID");
                Uuid::nil()
            }
            Err(_) => {
                self.violation(field, format!("must be a UUID, got {:?}", truncate(value)));
                Uuid::nil()
            }
        }
    }

    /// An optional UUID: empty means absent.
    pub fn optional_uuid(&mut self, field: &str, value: &str) -> Option<Uuid> {
        if value.is_empty() {
            None
        } else {
            Some(self.uuid(field, value))
        }
    }

    /// A required email address, returned in canonical form (`email::canonical_email`).
    pub fn email(&mut self, field: &str, value: &str) -> String {
        match canonical_email(value) {
            Ok(email) => email,
            Err(description) => {
                self.violation(field, description);
                String::new()
            }
        }
    }

    /// Text with a maximum length; `required` refuses empty or blank text.
    pub fn text(&mut self, field: &str, value: &str, max_chars: usize, required: bool) -> String {
        let trimmed = value.trim();
        if required && trimmed.is_empty() {
            self.violation(field, "is required");
        } else if trimmed.chars().count() > max_chars {
            self.violation(field, format!("must be at most {max_chars} characters"));
        } else if trimmed.chars().any(char::is_control) {
            self.violation(field, "must not contain control characters");
        }
        trimmed.to_string()
    }

    /// An optional idempotency key (AIP-155): a UUID when present.
    pub fn request_id(&mut self, field: &str, value: &str) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        if value.len() > MAX_REQUEST_ID_CHARS || Uuid::try_parse(value).is_err() {
            self.violation(field, "must be a UUID");
            return None;
        }
        Some(value.to_ascii_lowercase())
    }

    pub fn finish(self) -> Result<(), DomainError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(DomainError::InvalidArgument(self.violations))
        }
    }
}

pub(crate) fn truncate(value: &str) -> String {
    value.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_violation() {
        let mut v = Validator::new();
        v.uuid("tenant_id", "nope");
        v.email("email", "x");
        v.text("display_name", &"x".repeat(201), MAX_NAME_CHARS, false);
        match v.finish() {
            Err(DomainError::InvalidArgument(violations)) => assert_eq!(violations.len(), 3),
            other => panic!("unexpected {other:?}"),
        }
    }
}

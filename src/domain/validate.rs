//! Input validation that collects every invalid field of a request, so a caller sees all of its
//! mistakes at once (one `google.rpc.BadRequest` with a violation per field).

use uuid::Uuid;

use super::Micros;
use super::email::canonical_email;
use super::error::{DomainError, FieldViolation};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 320;
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;
pub const MAX_ROLE_NAME_CHARS: usize = 64;
pub const MAX_QUERY_CHARS: usize = 200;
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// The range of a `google.protobuf.Duration` (about ±10,000 years), as duration.proto defines it.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
/// The range of a `google.protobuf.Timestamp` (timestamp.proto): 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999999Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
const MAX_NANOS: i32 = 999_999_999;

/// List pages (AIP-158): the size of a page that asks for none, and the largest served.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

#[derive(Default)]
pub struct Validator {
    violations: Vec<FieldViolation>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds `T` with a fresh validator: every violation found while building is reported at
    /// once, and an input with any is refused whole.
    pub fn check<T>(build: impl FnOnce(&mut Validator) -> T) -> Result<T, DomainError> {
        let mut v = Validator::new();
        let built = build(&mut v);
        v.finish()?;
        Ok(built)
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

    /// An event cursor (a position in the event log; 0 is before the first event). Negative is
    /// never a position, so it is a malformed request rather than an expired cursor. Returns
    /// the value, or 0 when invalid so callers can keep validating.
    /// An AIP-158 page size: 0 means the default, more than the maximum means the maximum.
    pub fn page_size(&mut self, field: &str, raw: i32) -> u64 {
        match raw {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => {
                self.violation(field, "must not be negative");
                DEFAULT_PAGE_SIZE
            }
            n => (n as u64).min(MAX_PAGE_SIZE),
        }
    }

    pub fn cursor(&mut self, field: &str, value: i64) -> i64 {
        if value < 0 {
            self.violation(
                field,
                format!("must not be negative (positions start at 0), got {value}"),
            );
            return 0;
        }
        value
    }

    /// A `google.protobuf.Duration` given as its `seconds` and `nanos`, in microseconds (finer
    /// precision dropped). The spec's rules: seconds within ±315,576,000,000, nanos within
    /// ±999,999,999, and when both are non-zero, of the same sign. `None` when invalid.
    pub fn duration(&mut self, field: &str, seconds: i64, nanos: i32) -> Option<Micros> {
        if !(-MAX_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&seconds) {
            self.violation(
                field,
                format!("seconds must be within ±{MAX_DURATION_SECONDS}, got {seconds}"),
            );
            return None;
        }
        if !(-MAX_NANOS..=MAX_NANOS).contains(&nanos) {
            self.violation(
                field,
                format!("nanos must be within ±{MAX_NANOS}, got {nanos}"),
            );
            return None;
        }
        if (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0) {
            self.violation(
                field,
                format!(
                    "seconds and nanos must have the same sign, got seconds {seconds} and nanos {nanos}"
                ),
            );
            return None;
        }
        Some(seconds * 1_000_000 + i64::from(nanos / 1_000))
    }

    /// A `google.protobuf.Timestamp` given as its `seconds` and `nanos`, in microseconds since
    /// the epoch (finer precision dropped). The spec's rules: from 0001-01-01 to 9999-12-31
    /// (UTC), nanos within 0..=999,999,999. `None` when invalid.
    pub fn timestamp(&mut self, field: &str, seconds: i64, nanos: i32) -> Option<Micros> {
        if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
            self.violation(
                field,
                format!(
                    "seconds must be within {MIN_TIMESTAMP_SECONDS}..={MAX_TIMESTAMP_SECONDS} \
                     (0001-01-01 to 9999-12-31), got {seconds}"
                ),
            );
            return None;
        }
        if !(0..=MAX_NANOS).contains(&nanos) {
            self.violation(
                field,
                format!("nanos must be within 0..={MAX_NANOS}, got {nanos}"),
            );
            return None;
        }
        Some(seconds * 1_000_000 + i64::from(nanos / 1_000))
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
    fn durations_and_timestamps_follow_the_protobuf_spec() {
        let mut v = Validator::new();
        assert_eq!(v.duration("d", 3600, 5_000), Some(3_600_000_005));
        assert_eq!(v.duration("d", -1, -999_999_999), Some(-1_999_999));
        assert_eq!(v.duration("d", 0, -5_000), Some(-5));
        assert_eq!(v.timestamp("t", 0, 999_999_999), Some(999_999));
        assert_eq!(
            v.timestamp("t", MIN_TIMESTAMP_SECONDS, 0),
            Some(MIN_TIMESTAMP_SECONDS * 1_000_000)
        );
        assert!(v.finish().is_ok());
        let mut v = Validator::new();
        assert_eq!(v.duration("d", 3600, -5), None);
        assert_eq!(v.duration("d", -3600, 5), None);
        assert_eq!(v.duration("d", 0, 1_000_000_000), None);
        assert_eq!(v.duration("d", MAX_DURATION_SECONDS + 1, 0), None);
        assert_eq!(v.duration("d", i64::MIN, 0), None);
        assert_eq!(v.timestamp("t", 0, -1), None);
        assert_eq!(v.timestamp("t", MAX_TIMESTAMP_SECONDS + 1, 0), None);
        assert_eq!(v.timestamp("t", MIN_TIMESTAMP_SECONDS - 1, 0), None);
        match v.finish() {
            Err(DomainError::InvalidArgument(violations)) => assert_eq!(violations.len(), 8),
            other => panic!("unexpected {other:?}"),
        }
    }

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

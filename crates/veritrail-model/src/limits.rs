//! Size and shape limits enforced at ingest.
//!
//! The configurable limits live in [`Limits`]; the per-field limits are constants because they
//! are part of the event schema (changing them changes what a valid event is).

/// Configurable ingest limits. Construct with [`Limits::default`] and override fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted HTTP body, in bytes (default 16 MiB). Checked before parsing.
    pub max_body_bytes: usize,
    /// Largest accepted event, in bytes of its compact JSON serialization (default 64 KiB).
    pub max_event_bytes: usize,
    /// Most events in one batch (default 10 000).
    pub max_batch_events: usize,
    /// Deepest nesting of arrays and objects, counting the event object itself as level 1
    /// (default 16). The JSON parser also stops at 128 levels, whatever this says.
    pub max_depth: usize,
    /// Most top-level keys in `metadata` (default 128).
    pub max_metadata_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_event_bytes: 64 * 1024,
            max_batch_events: 10_000,
            max_depth: 16,
            max_metadata_keys: 128,
        }
    }
}

/// Longest `id`, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest `action`, in characters.
pub const MAX_ACTION_CHARS: usize = 128;
/// Longest `actor.id`, in characters.
pub const MAX_ACTOR_ID_CHARS: usize = 256;
/// Longest `actor.name`, in characters.
pub const MAX_ACTOR_NAME_CHARS: usize = 256;
/// Longest `actor.email`, in characters (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 320;
/// Most entries in `actor.roles`.
pub const MAX_ROLES: usize = 32;
/// Longest role name, in characters.
pub const MAX_ROLE_CHARS: usize = 128;
/// Longest `resource.type` / `targets[].type`, in characters.
pub const MAX_RESOURCE_TYPE_CHARS: usize = 128;
/// Longest `resource.id` / `targets[].id`, in characters.
pub const MAX_RESOURCE_ID_CHARS: usize = 256;
/// Longest `resource.name` / `targets[].name`, in characters.
pub const MAX_RESOURCE_NAME_CHARS: usize = 256;
/// Most entries in `targets`.
pub const MAX_TARGETS: usize = 64;
/// Longest `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 2048;
/// Longest `data_subject`, in characters.
pub const MAX_DATA_SUBJECT_CHARS: usize = 256;
/// Longest `context.user_agent`, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 1024;
/// Longest `context.location`, in characters.
pub const MAX_LOCATION_CHARS: usize = 256;
/// Longest `context.session_id` and `context.request_id`, in characters.
pub const MAX_CORRELATION_ID_CHARS: usize = 256;
/// Longest `context.endpoint`, in characters.
pub const MAX_ENDPOINT_CHARS: usize = 512;
/// Longest short string inside a reserved `metadata` key (names, references, versions...).
pub const MAX_METADATA_SHORT_CHARS: usize = 256;
/// Longest free-text string inside a reserved `metadata` key (descriptions, addresses, error messages).
pub const MAX_METADATA_TEXT_CHARS: usize = 2048;
/// Most entries in `metadata.consent.purposes`.
pub const MAX_CONSENT_PURPOSES: usize = 32;
/// Largest magnitude of any JSON number: 2^53 − 1, the I-JSON (RFC 7493) exact-integer range.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Earliest accepted `occurred_at` year (UTC).
pub const MIN_OCCURRED_YEAR: i16 = 1970;
/// Latest accepted `occurred_at` year (UTC).
pub const MAX_OCCURRED_YEAR: i16 = 9999;

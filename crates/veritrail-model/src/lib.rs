//! Veritrail's event model: the ingest event schema (SPEC §2) and its validation, the action
//! taxonomy (SPEC §6), event ids, and the sealed record format (SPEC §3) with its personal-data
//! commitments.
//!
//! Architecture invariant: this crate is pure. It does no I/O, reads no clock and draws no
//! random numbers; callers pass times, ids and salts in. It owns every persisted JSON format
//! of an event: the ingest JSON, the sealed record, and the personal-data blob.

mod batch;
mod error;
mod event;
mod fields;
mod id;
mod jcs;
mod json;
pub mod limits;
mod metadata;
mod personal;
mod seal;
pub mod taxonomy;
#[cfg(test)]
mod test_events;
mod time;
mod validate;
mod vocabulary;
mod wire;

pub use batch::{BodyFormat, parse_batch, parse_event};
pub use error::{BatchError, OpenError, SealError, ValidationError, ValidationErrorKind};
pub use event::{Actor, Changes, Context, Event, Resource};
pub use id::new_event_id;
pub use limits::Limits;
pub use metadata::RESERVED_METADATA_KEYS;
pub use personal::{Owner, PersonalData, PersonalValue, owner_of};
pub use seal::{
    COMMITMENT_DOMAIN, ERASED, MemberLayout, PERSONAL_FIELDS, PERSONAL_FIELDS_MEMBER, PrepareContext, PreparedEvent,
    SEALED_RECORD_VERSION, SealedMembers, commitment, open, seal, seal_with_layout, validate_personal_path,
};
pub use time::{format_exact as format_timestamp, format_millis as format_timestamp_millis};
pub use validate::validate_event;
pub use veritrail_ledger::JcsError;
pub use vocabulary::{ActorType, Channel, Outcome, PurposeCategory, Sensitivity};

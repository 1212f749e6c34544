//! The validated event: what [`crate::parse_event`] returns.

use std::collections::BTreeSet;
use std::net::IpAddr;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::time;
use crate::vocabulary::{ActorType, Channel, Outcome, Sensitivity};

/// One validated audit event (SPEC §2), with defaults applied (`actor.type`, `outcome`) and
/// values normalised (`occurred_at` in UTC, `context.ip` in canonical text, `sensitivity`
/// sorted and deduplicated, empty arrays and objects dropped).
///
/// The only way to build one is [`crate::parse_event`] / [`crate::parse_batch`] /
/// [`crate::validate_event`], so every `Event` satisfies the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub(crate) id: Option<String>,
    pub(crate) action: String,
    pub(crate) occurred_at: Option<Timestamp>,
    pub(crate) actor: Actor,
    pub(crate) resource: Option<Resource>,
    pub(crate) targets: Vec<Resource>,
    pub(crate) outcome: Outcome,
    pub(crate) reason: Option<String>,
    pub(crate) context: Option<Context>,
    pub(crate) changes: Option<Changes>,
    pub(crate) data_subject: Option<String>,
    pub(crate) sensitivity: BTreeSet<Sensitivity>,
    pub(crate) metadata: Option<Map<String, Value>>,
}

/// `actor`: who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub(crate) id: String,
    pub(crate) actor_type: ActorType,
    pub(crate) name: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) roles: Vec<String>,
}

/// `resource` and each entry of `targets`: what was acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub(crate) resource_type: String,
    pub(crate) id: String,
    pub(crate) name: Option<String>,
}

/// `context`: where and how the action came in. Never empty (an empty object is dropped).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) user_agent: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) channel: Option<Channel>,
    pub(crate) endpoint: Option<String>,
}

/// `changes`: the state before and after. A present `null` is kept (`Some(Value::Null)`),
/// since "before: null" means "did not exist".
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub(crate) before: Option<Value>,
    pub(crate) after: Option<Value>,
}

impl Event {
    /// Client-chosen id (idempotency key), if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Dotted action type, e.g. `data.updated`.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Client-supplied time of the action, if any.
    pub fn occurred_at(&self) -> Option<Timestamp> {
        self.occurred_at
    }

    /// Who acted.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The primary resource acted on.
    pub fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }

    /// Further resources acted on (empty when absent).
    pub fn targets(&self) -> &[Resource] {
        &self.targets
    }

    /// How the action ended.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Why the action was taken.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Where and how the action came in.
    pub fn context(&self) -> Option<&Context> {
        self.context.as_ref()
    }

    /// State before and after.
    pub fn changes(&self) -> Option<&Changes> {
        self.changes.as_ref()
    }

    /// Whose personal data the event concerns.
    pub fn data_subject(&self) -> Option<&str> {
        self.data_subject.as_deref()
    }

    /// Data classes touched, sorted, without duplicates (empty when absent).
    pub fn sensitivity(&self) -> &BTreeSet<Sensitivity> {
        &self.sensitivity
    }

    /// Free-form metadata, reserved keys validated.
    pub fn metadata(&self) -> Option<&Map<String, Value>> {
        self.metadata.as_ref()
    }

    /// The normalised event as a JSON object, in the ingest schema (all values in clear).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut object = Map::new();
        if let Some(id) = &self.id {
            object.insert("id".into(), Value::String(id.clone()));
        }
        object.insert("action".into(), Value::String(self.action.clone()));
        if let Some(occurred_at) = self.occurred_at {
            let text = time::format_exact(occurred_at);
            object.insert("occurred_at".into(), Value::String(text));
        }
        object.insert("actor".into(), Value::Object(self.actor.to_json()));
        if let Some(resource) = &self.resource {
            object.insert("resource".into(), Value::Object(resource.to_json()));
        }
        if !self.targets.is_empty() {
            let mut targets = Vec::new();
            for target in &self.targets {
                targets.push(Value::Object(target.to_json()));
            }
            object.insert("targets".into(), Value::Array(targets));
        }
        object.insert("outcome".into(), self.outcome.as_str().into());
        if let Some(reason) = &self.reason {
            object.insert("reason".into(), Value::String(reason.clone()));
        }
        if let Some(context) = &self.context {
            object.insert("context".into(), Value::Object(context.to_json()));
        }
        if let Some(changes) = &self.changes {
            object.insert("changes".into(), Value::Object(changes.to_json()));
        }
        if let Some(data_subject) = &self.data_subject {
            object.insert("data_subject".into(), Value::String(data_subject.clone()));
        }
        if !self.sensitivity.is_empty() {
            let mut labels = Vec::new();
            for label in &self.sensitivity {
                labels.push(Value::from(label.as_str()));
            }
            object.insert("sensitivity".into(), Value::Array(labels));
        }
        if let Some(metadata) = &self.metadata {
            object.insert("metadata".into(), Value::Object(metadata.clone()));
        }
        object
    }
}

impl Actor {
    /// Unique id of the actor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Kind of actor (`user` when the client did not say).
    pub fn actor_type(&self) -> ActorType {
        self.actor_type
    }

    /// Display name (personal data).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Email address (personal data).
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// Roles held at the time of the event (empty when absent).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut object = Map::new();
        object.insert("id".into(), Value::String(self.id.clone()));
        object.insert("type".into(), self.actor_type.as_str().into());
        if let Some(name) = &self.name {
            object.insert("name".into(), Value::String(name.clone()));
        }
        if let Some(email) = &self.email {
            object.insert("email".into(), Value::String(email.clone()));
        }
        if !self.roles.is_empty() {
            let roles = self.roles.iter().cloned().map(Value::String).collect();
            object.insert("roles".into(), Value::Array(roles));
        }
        object
    }
}

impl Resource {
    /// Kind of resource, e.g. `project`.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// Id of the resource.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Display name of the resource.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut object = Map::new();
        object.insert("type".into(), Value::String(self.resource_type.clone()));
        object.insert("id".into(), Value::String(self.id.clone()));
        if let Some(name) = &self.name {
            object.insert("name".into(), Value::String(name.clone()));
        }
        object
    }
}

impl Context {
    /// Client IP address (personal data).
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// User agent (personal data).
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// Location, e.g. `Berlin, DE` (personal data).
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// Session id.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Request id.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Channel the action came through.
    pub fn channel(&self) -> Option<Channel> {
        self.channel
    }

    /// Endpoint, e.g. `PATCH /projects/p-42`.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self == &Context::default()
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut object = Map::new();
        if let Some(ip) = self.ip {
            object.insert("ip".into(), Value::String(ip.to_string()));
        }
        insert_opt(&mut object, "user_agent", &self.user_agent);
        insert_opt(&mut object, "location", &self.location);
        insert_opt(&mut object, "session_id", &self.session_id);
        insert_opt(&mut object, "request_id", &self.request_id);
        if let Some(channel) = self.channel {
            object.insert("channel".into(), channel.as_str().into());
        }
        insert_opt(&mut object, "endpoint", &self.endpoint);
        object
    }
}

impl Changes {
    /// State before the action (`Some(Null)` when the client sent `null`).
    pub fn before(&self) -> Option<&Value> {
        self.before.as_ref()
    }

    /// State after the action (`Some(Null)` when the client sent `null`).
    pub fn after(&self) -> Option<&Value> {
        self.after.as_ref()
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut object = Map::new();
        if let Some(before) = &self.before {
            object.insert("before".into(), before.clone());
        }
        if let Some(after) = &self.after {
            object.insert("after".into(), after.clone());
        }
        object
    }
}

fn insert_opt(object: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        object.insert(key.into(), Value::String(value.clone()));
    }
}

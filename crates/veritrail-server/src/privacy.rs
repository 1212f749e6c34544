//! What readers may see of personal data (issue 5, item 8): callers without `pii:read` get
//! personal fields masked; every unmasked read of sensitive events is itself recorded as
//! `data.sensitive.accessed`; personal filter values never reach the ledger in clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use veritrail_crypto::mask;
use veritrail_model::ERASED;

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::auth::{KeyPrincipal, Permission};
use crate::error::ApiError;

/// Query parameters whose values are personal data: recorded in self-audit events only as
/// withheld, never in clear (they would land in sealed records, which erasure cannot touch).
const PERSONAL_FILTERS: &[&str] = &["actor_email", "ip", "q"];
/// What a withheld filter value reads as in self-audit metadata.
pub(crate) const WITHHELD: &str = "[personal data withheld]";
/// Event ids listed in one `data.sensitive.accessed` event at most (the count is exact).
const MAX_LISTED: usize = 100;

/// Query parameters as self-audit metadata: personal values withheld.
pub(crate) fn audit_filters(pairs: &[(String, String)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(name, value)| {
            let value = if PERSONAL_FILTERS.contains(&name.as_str()) { WITHHELD } else { value.as_str() };
            (name.clone(), json!(value))
        })
        .collect()
}

/// How one field is masked.
type Mask = fn(&str) -> String;

/// Store setting holding a tenant's classification `{"fields": {"<path>": "pii|phi|pci"}}`.
pub(crate) fn classification_setting(tenant: &str) -> String {
    format!("privacy.classification/{tenant}")
}

/// How long a node trusts its cached copy of a tenant's classification (another node may change
/// it; the node taking the change drops its copy at once).
const CLASSIFICATION_TTL: Duration = Duration::from_secs(5);

/// When a tenant's paths were read, and the paths.
type CachedPaths = (Instant, Arc<Vec<String>>);

/// Per-tenant cache of the classified personal paths ingest commits.
#[derive(Default)]
pub(crate) struct ClassificationCache {
    entries: Mutex<CachedClassifications>,
}

#[derive(Default)]
struct CachedClassifications {
    paths: HashMap<String, CachedPaths>,
    /// Moved on by every [`ClassificationCache::forget`]: a read of the setting that started
    /// before a change does not put what it read back (it would be used for another
    /// [`CLASSIFICATION_TTL`], sealing new personal fields in clear).
    generation: u64,
}

impl ClassificationCache {
    /// After the tenant's classification changed on this node.
    pub(crate) fn forget(&self, tenant: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.generation += 1;
        entries.paths.remove(tenant);
    }

    /// The cached paths of `tenant` while fresh; otherwise the generation to hand to
    /// [`ClassificationCache::remember`] after reading the setting.
    fn get(&self, tenant: &str) -> Result<Arc<Vec<String>>, u64> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.paths.get(tenant) {
            Some((at, paths)) if at.elapsed() < CLASSIFICATION_TTL => Ok(paths.clone()),
            _ => Err(entries.generation),
        }
    }

    /// Caches what a read that started at `generation` found, unless a change came since.
    fn remember(&self, tenant: &str, generation: u64, read_at: Instant, paths: Arc<Vec<String>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.generation == generation {
            entries.paths.insert(tenant.to_string(), (read_at, paths));
        }
    }
}

/// The paths `tenant` declared personal, in the order ingest commits them.
pub(crate) async fn classified_paths(state: &AppState, tenant: &str) -> Result<Arc<Vec<String>>, ApiError> {
    let generation = match state.classification.get(tenant) {
        Ok(paths) => return Ok(paths),
        Err(generation) => generation,
    };
    let read_at = Instant::now();
    let setting = state.store.setting(&classification_setting(tenant)).await?;
    let fields: Value = setting.and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or(Value::Null);
    let mut paths: Vec<String> =
        fields["fields"].as_object().map(|fields| fields.keys().cloned().collect()).unwrap_or_default();
    paths.sort_unstable();
    let paths = Arc::new(paths);
    state.classification.remember(tenant, generation, read_at, paths.clone());
    Ok(paths)
}

/// The classified paths of an opened event (its `personal_fields` member).
fn classified_in(view: &Value) -> Vec<String> {
    view[veritrail_model::PERSONAL_FIELDS_MEMBER]
        .as_array()
        .map(|paths| paths.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Masks the personal fields of an event as API readers see it (erased values stay erased).
pub(crate) fn mask_view(view: &mut Value) {
    const FIELDS: [(&str, &str, Mask); 5] = [
        ("actor", "name", mask::text),
        ("actor", "email", mask::email),
        ("context", "ip", mask::ip),
        ("context", "user_agent", |_| "[masked]".to_string()),
        ("context", "location", mask::text),
    ];
    for (parent, field, how) in FIELDS {
        if let Some(value) = view.get_mut(parent).and_then(|p| p.get_mut(field))
            && let Some(text) = value.as_str()
            && text != ERASED
        {
            *value = json!(how(text));
        }
    }
    if view.get("sensitivity").and_then(Value::as_array).is_some_and(|labels| !labels.is_empty())
        && let Some(changes) = view.get_mut("changes")
        && changes.as_str() != Some(ERASED)
    {
        *changes = json!("[masked]");
    }
    for path in classified_in(view) {
        let Some(rest) = path.strip_prefix("metadata.") else { continue };
        let slot = rest.split('.').try_fold(&mut view["metadata"], |value, key| value.get_mut(key));
        if let Some(slot) = slot
            && slot.as_str() != Some(ERASED)
        {
            *slot = match slot.as_str() {
                Some(text) => json!(mask::text(text)),
                None => json!("[masked]"),
            };
        }
    }
}

/// True for events with a sensitivity label or fields the tenant classified as personal.
pub(crate) fn is_sensitive(view: &Value) -> bool {
    view.get("sensitivity").and_then(Value::as_array).is_some_and(|labels| !labels.is_empty())
        || !classified_in(view).is_empty()
}

/// Prepares events for a reader: masked without `pii:read`; with it, the read of any sensitive
/// event among them is recorded first (`data.sensitive.accessed`, durable before the data leaves).
pub(crate) async fn present(
    state: &AppState,
    key: &KeyPrincipal,
    request: &RequestContext,
    views: &mut [Value],
) -> Result<(), ApiError> {
    if !key.has(Permission::PiiRead) {
        views.iter_mut().for_each(mask_view);
        return Ok(());
    }
    let sensitive: Vec<&Value> = views.iter().filter(|view| is_sensitive(view)).collect();
    if sensitive.is_empty() {
        return Ok(());
    }
    let ids: Vec<&Value> = sensitive.iter().filter_map(|view| view.get("id")).take(MAX_LISTED).collect();
    let mut subjects: Vec<&str> = sensitive.iter().filter_map(|view| view["data_subject"].as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    subjects.truncate(MAX_LISTED);
    let metadata = json!({
        "event_count": sensitive.len(),
        "event_ids": ids,
        "data_subjects": subjects,
        "endpoint": request.endpoint,
    });
    audit::record(state, &key.tenant, "data.sensitive.accessed", key.actor_json(), metadata, request).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_personal_fields_only() {
        let mut view = json!({
            "actor": {"id": "u-1", "name": "Jane Smith", "email": "jane@acme.com"},
            "context": {"ip": "203.0.113.7", "user_agent": "curl/8", "location": "Berlin, DE", "channel": "api"},
            "changes": {"before": {"dx": "A"}},
            "sensitivity": ["phi"],
            "data_subject": "patient-7",
        });
        mask_view(&mut view);
        assert_eq!(view["actor"]["name"], "J*** S***");
        assert_eq!(view["actor"]["email"], "j***@a***.com");
        assert_eq!(view["actor"]["id"], "u-1");
        assert_eq!(view["context"]["ip"], "203.0.113.x");
        assert_eq!(view["context"]["user_agent"], "[masked]");
        assert_eq!(view["context"]["channel"], "api");
        assert_eq!(view["changes"], "[masked]");
        assert_eq!(view["data_subject"], "patient-7");
        let mut erased = json!({"actor": {"id": "u", "email": ERASED}});
        mask_view(&mut erased);
        assert_eq!(erased["actor"]["email"], ERASED);
    }

    /// A read of the old classification that started before a change must not be cached after
    /// the change dropped the cached copy.
    #[test]
    fn a_classification_read_before_a_change_is_not_cached_after_it() {
        let cache = ClassificationCache::default();
        let old = Arc::new(vec!["metadata.a".to_string()]);
        let generation = cache.get("t").unwrap_err();
        cache.forget("t"); // the change commits meanwhile
        cache.remember("t", generation, Instant::now(), old.clone());
        let generation = cache.get("t").expect_err("the stale read was cached");
        let new = Arc::new(vec!["metadata.a".to_string(), "metadata.b".to_string()]);
        cache.remember("t", generation, Instant::now(), new.clone());
        assert_eq!(cache.get("t"), Ok(new));
        cache.remember("u", 0, Instant::now() - CLASSIFICATION_TTL, old);
        assert!(cache.get("u").is_err(), "an entry older than the TTL is read again");
    }

    #[test]
    fn personal_filters_are_withheld() {
        let pairs = vec![("actor_email".to_string(), "a@b.c".to_string()), ("actor_id".to_string(), "u".to_string())];
        let map = audit_filters(&pairs);
        assert_eq!(map["actor_email"], WITHHELD);
        assert_eq!(map["actor_id"], "u");
    }
}

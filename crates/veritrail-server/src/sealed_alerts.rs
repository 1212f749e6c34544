//! Monitoring state encrypted at rest (issue 5: personal data is encrypted everywhere). An
//! alert's `group_key` and `summary` can name an IP address or an e-mail, a webhook payload
//! carries the alert, and a webhook secret is a credential: [`SealedAlertStore`] wraps any
//! [`AlertStore`] and seals exactly those fields with [`Store::seal_tenant_text`] on the way in
//! and opens them on the way out, so the rest of the server sees clear values and the
//! database sees none. Text stored before encryption reads as it is.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;
use veritrail_store::{
    Alert, AlertFilter, AlertStatus, AlertStore, BoxFuture, Delivery, DeliveryStatus, NewAlert, OutboundMessage,
    RecordedAttempt, StatusChange, Store, StoreResult, StoredRule, WebhookEndpoint,
};

/// An [`AlertStore`] whose personal and secret fields are sealed under the tenant's key.
pub(crate) struct SealedAlertStore {
    inner: Arc<dyn AlertStore>,
    keys: Arc<dyn Store>,
}

impl SealedAlertStore {
    pub(crate) fn new(inner: Arc<dyn AlertStore>, keys: Arc<dyn Store>) -> SealedAlertStore {
        SealedAlertStore { inner, keys }
    }

    async fn seal(&self, tenant: &str, context: String, text: &str) -> StoreResult<String> {
        self.keys.seal_tenant_text(tenant, &context, text).await
    }

    async fn open(&self, tenant: &str, context: String, text: &str) -> StoreResult<String> {
        self.keys.open_tenant_text(tenant, &context, text).await
    }

    async fn seal_alert(&self, mut alert: Alert) -> StoreResult<Alert> {
        (alert.group_key, alert.summary) =
            self.seal_alert_text(&alert.tenant, &alert.id, &alert.group_key, &alert.summary).await?;
        Ok(alert)
    }

    /// An alert's group key and summary as stored.
    async fn seal_alert_text(
        &self,
        tenant: &str,
        id: &str,
        group_key: &Value,
        summary: &str,
    ) -> StoreResult<(Value, String)> {
        let group_key = serde_json::to_string(group_key).unwrap_or_default();
        let group_key = Value::String(self.seal(tenant, format!("alert.group_key/{id}"), &group_key).await?);
        Ok((group_key, self.seal(tenant, format!("alert.summary/{id}"), summary).await?))
    }

    async fn open_alert(&self, mut alert: Alert) -> StoreResult<Alert> {
        if let Value::String(sealed) = &alert.group_key {
            let text = self.open(&alert.tenant, format!("alert.group_key/{}", alert.id), sealed).await?;
            alert.group_key = serde_json::from_str(&text).unwrap_or(Value::String(text));
        }
        alert.summary = self.open(&alert.tenant, format!("alert.summary/{}", alert.id), &alert.summary).await?;
        Ok(alert)
    }

    async fn seal_message(&self, tenant: &str, mut message: OutboundMessage) -> StoreResult<OutboundMessage> {
        message.payload = self.seal_payload(tenant, &message.id, &message.payload).await?;
        Ok(message)
    }

    /// A message's payload as stored.
    async fn seal_payload(&self, tenant: &str, message_id: &str, payload: &str) -> StoreResult<String> {
        self.seal(tenant, format!("message/{message_id}"), payload).await
    }

    async fn open_delivery(&self, mut delivery: Delivery) -> StoreResult<Delivery> {
        let context = format!("message/{}", delivery.message_id);
        delivery.payload = self.open(&delivery.tenant, context, &delivery.payload).await?;
        Ok(delivery)
    }

    async fn open_deliveries(&self, deliveries: Vec<Delivery>) -> StoreResult<Vec<Delivery>> {
        let mut out = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            out.push(self.open_delivery(delivery).await?);
        }
        Ok(out)
    }

    async fn open_endpoint(&self, mut endpoint: WebhookEndpoint) -> StoreResult<WebhookEndpoint> {
        endpoint.secret =
            self.open(&endpoint.tenant, format!("webhook.secret/{}", endpoint.id), &endpoint.secret).await?;
        Ok(endpoint)
    }
}

impl AlertStore for SealedAlertStore {
    fn install_rules(&self, tenant: &str, rules: Vec<StoredRule>, next_seq: u64) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.install_rules(tenant, rules, next_seq)
    }

    fn rules(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<StoredRule>>> {
        self.inner.rules(tenant)
    }

    fn rule(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<StoredRule>>> {
        self.inner.rule(tenant, id)
    }

    fn rule_version(&self, tenant: &str, id: &str, version: u32) -> BoxFuture<'_, StoreResult<Option<StoredRule>>> {
        self.inner.rule_version(tenant, id, version)
    }

    fn create_rule(&self, tenant: &str, rule: StoredRule) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.create_rule(tenant, rule)
    }

    fn update_rule(&self, tenant: &str, rule: StoredRule, expected_version: u32) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.update_rule(tenant, rule, expected_version)
    }

    fn delete_rule(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.delete_rule(tenant, id, at)
    }

    fn rule_change_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        self.inner.rule_change_counts()
    }

    fn engine_nodes(&self, node: &str, ttl: std::time::Duration) -> BoxFuture<'_, StoreResult<Option<Vec<String>>>> {
        self.inner.engine_nodes(node, ttl)
    }

    fn leave_engine_nodes(&self, node: &str) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.leave_engine_nodes(node)
    }

    fn engine_cursor(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Option<u64>>> {
        self.inner.engine_cursor(tenant)
    }

    fn set_engine_cursor(&self, tenant: &str, next_seq: u64, durable: bool) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.set_engine_cursor(tenant, next_seq, durable)
    }

    fn record_alerts(
        &self,
        tenant: &str,
        alerts: Vec<NewAlert>,
        next_seq: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let mut sealed = Vec::with_capacity(alerts.len());
            for NewAlert { alert, messages } in alerts {
                let mut sealed_messages = Vec::with_capacity(messages.len());
                for message in messages {
                    sealed_messages.push(self.seal_message(&tenant, message).await?);
                }
                sealed.push(NewAlert { alert: self.seal_alert(alert).await?, messages: sealed_messages });
            }
            self.inner.record_alerts(&tenant, sealed, next_seq).await
        })
    }

    fn alert(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<Alert>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            match self.inner.alert(&tenant, &id).await? {
                Some(alert) => Ok(Some(self.open_alert(alert).await?)),
                None => Ok(None),
            }
        })
    }

    fn alerts<'a>(
        &'a self,
        tenant: &'a str,
        filter: &'a AlertFilter,
        before: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<Alert>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for alert in self.inner.alerts(tenant, filter, before, limit).await? {
                out.push(self.open_alert(alert).await?);
            }
            Ok(out)
        })
    }

    fn change_alert_status(
        &self,
        tenant: &str,
        id: &str,
        from: AlertStatus,
        change: StatusChange,
        message: Option<OutboundMessage>,
    ) -> BoxFuture<'_, StoreResult<Option<Alert>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let message = match message {
                Some(message) => Some(self.seal_message(&tenant, message).await?),
                None => None,
            };
            match self.inner.change_alert_status(&tenant, &id, from, change, message).await? {
                Some(alert) => Ok(Some(self.open_alert(alert).await?)),
                None => Ok(None),
            }
        })
    }

    fn create_webhook(&self, mut endpoint: WebhookEndpoint) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let context = format!("webhook.secret/{}", endpoint.id);
            endpoint.secret = self.seal(&endpoint.tenant.clone(), context, &endpoint.secret).await?;
            self.inner.create_webhook(endpoint).await
        })
    }

    fn webhooks(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<WebhookEndpoint>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let mut out = Vec::new();
            for endpoint in self.inner.webhooks(&tenant).await? {
                out.push(self.open_endpoint(endpoint).await?);
            }
            Ok(out)
        })
    }

    fn webhook(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<WebhookEndpoint>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            match self.inner.webhook(&tenant, &id).await? {
                Some(endpoint) => Ok(Some(self.open_endpoint(endpoint).await?)),
                None => Ok(None),
            }
        })
    }

    fn delete_webhook(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.delete_webhook(tenant, id)
    }

    fn deliveries(
        &self,
        tenant: &str,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        before: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<Delivery>>> {
        let (tenant, endpoint_id) = (tenant.to_string(), endpoint_id.to_string());
        Box::pin(async move {
            let deliveries = self.inner.deliveries(&tenant, &endpoint_id, status, before, limit).await?;
            self.open_deliveries(deliveries).await
        })
    }

    fn delivery(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<Delivery>>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(async move {
            match self.inner.delivery(&tenant, &endpoint_id, &message_id).await? {
                Some(delivery) => Ok(Some(self.open_delivery(delivery).await?)),
                None => Ok(None),
            }
        })
    }

    fn due_deliveries(&self, now: Timestamp, limit: u32) -> BoxFuture<'_, StoreResult<Vec<Delivery>>> {
        Box::pin(async move {
            let deliveries = self.inner.due_deliveries(now, limit).await?;
            self.open_deliveries(deliveries).await
        })
    }

    fn next_delivery_due(&self) -> BoxFuture<'_, StoreResult<Option<Timestamp>>> {
        self.inner.next_delivery_due()
    }

    fn record_delivery_attempts(&self, attempts: Vec<RecordedAttempt>) -> BoxFuture<'_, StoreResult<Vec<bool>>> {
        self.inner.record_delivery_attempts(attempts)
    }

    fn rewrite_alert(
        &self,
        tenant: &str,
        id: &str,
        group_key: Value,
        summary: String,
        status_note: Option<String>,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let (group_key, summary) = self.seal_alert_text(&tenant, &id, &group_key, &summary).await?;
            self.inner.rewrite_alert(&tenant, &id, group_key, summary, status_note).await
        })
    }

    fn rewrite_delivery(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        payload: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(async move {
            let payload = self.seal_payload(&tenant, &message_id, &payload).await?;
            self.inner.rewrite_delivery(&tenant, &endpoint_id, &message_id, payload).await
        })
    }

    fn redeliver(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Option<Delivery>>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(async move {
            match self.inner.redeliver(&tenant, &endpoint_id, &message_id, at).await? {
                Some(delivery) => Ok(Some(self.open_delivery(delivery).await?)),
                None => Ok(None),
            }
        })
    }
}

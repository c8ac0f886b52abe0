//! The one [`Store`] implementation, for every [`Dialect`]: a table of contents.
//!
//! Each method delegates to the module of [`super::queries`] that holds its SQL (or, for the
//! claim, migrations and wake-ups, to the dialect), so this file says where each query lives
//! and holds none of them.

use super::dialect::Dialect;
use super::queries::{
    Attempts, Catalog, Deliveries, Destinations, Inbound, Maintenance, Portal, Tenants,
};
use super::{
    CallbackQuery, Claimed, DeliveryQuery, Finish, Finished, LinkState, NewEvent, NewEventType,
    NewsStream, Published, Result, Scope, Store, TokenRecord,
};
use crate::domain::callback::{Callback, CallbackEndpoint, Ingested};
use crate::domain::catalog::EventType;
use crate::domain::health::DestinationHealth;
use crate::domain::model::{Delivery, Destination, Event, Recovery, Tenant};
use crate::domain::time::Millis;

/// Every store is a [`Dialect`] plus the shared queries.
#[async_trait::async_trait]
impl<S> Store for S
where
    S: Dialect
        + Tenants
        + Destinations
        + Deliveries
        + Attempts
        + Catalog
        + Inbound
        + Portal
        + Maintenance
        + 'static,
{
    fn kind(&self) -> &'static str {
        S::KIND
    }

    async fn migrate(&self) -> Result<()> {
        self.migrate_schema().await
    }

    // --- News between processes: the dialect's --------------------------------------------

    fn news(&self) -> Option<NewsStream> {
        self.listen()
    }

    async fn close(&self) {
        self.close_notifiers().await
    }

    async fn ping(&self) -> Result<()> {
        Maintenance::ping(self).await
    }

    async fn seal_at_rest(&self, now: Millis) -> Result<u64> {
        Maintenance::seal_at_rest(self, now).await
    }

    // --- Tenants and tokens: `tenants` ------------------------------------------------------

    async fn insert_token(
        &self,
        id: &str,
        hash: &str,
        tenant_id: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        Tenants::insert_token(self, id, hash, tenant_id, now).await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        Tenants::find_token(self, hash).await
    }

    async fn has_admin_token(&self) -> Result<bool> {
        Tenants::has_admin_token(self).await
    }

    async fn upsert_tenant(
        &self,
        id: &str,
        metadata: &serde_json::Value,
        now: Millis,
    ) -> Result<(Tenant, bool)> {
        Tenants::upsert_tenant(self, id, metadata, now).await
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        Tenants::get_tenant(self, id).await
    }

    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>> {
        Tenants::list_tenants(self, after, limit).await
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool> {
        Tenants::delete_tenant(self, id).await
    }

    // --- Destinations: `destinations` -------------------------------------------------------

    async fn insert_destination(&self, d: &Destination, max_per_tenant: u32) -> Result<()> {
        Destinations::insert_destination(self, d, max_per_tenant).await
    }

    async fn get_destination(&self, tenant_id: &str, id: &str) -> Result<Option<Destination>> {
        Destinations::get_destination(self, tenant_id, id).await
    }

    async fn list_destinations(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Destination>> {
        Destinations::list_destinations(self, tenant_id, after, limit).await
    }

    async fn update_destination(&self, d: &Destination) -> Result<bool> {
        Destinations::update_destination(self, d).await
    }

    async fn delete_destination(&self, tenant_id: &str, id: &str, now: Millis) -> Result<bool> {
        Destinations::delete_destination(self, tenant_id, id, now).await
    }

    // --- Events and deliveries: `deliveries` ------------------------------------------------

    async fn publish(&self, events: &[NewEvent], now: Millis) -> Result<Vec<Published>> {
        Deliveries::publish(self, events, now).await
    }

    async fn get_event(&self, scope: Scope<'_>, id: &str) -> Result<Option<Event>> {
        Deliveries::get_event(self, scope, id).await
    }

    async fn list_events(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        Deliveries::list_events(self, tenant_id, after, limit).await
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        Deliveries::list_deliveries(self, q).await
    }

    async fn get_delivery(&self, scope: Scope<'_>, id: &str) -> Result<Option<Delivery>> {
        Deliveries::get_delivery(self, scope, id).await
    }

    async fn retry_delivery(&self, scope: Scope<'_>, id: &str, now: Millis) -> Result<Delivery> {
        Deliveries::retry_delivery(self, scope, id, now).await
    }

    async fn replay_event(
        &self,
        scope: Scope<'_>,
        event_id: &str,
        destination_ids: Option<&[String]>,
        now: Millis,
    ) -> Result<u32> {
        Deliveries::replay_event(self, scope, event_id, destination_ids, now).await
    }

    async fn recover_destination(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
        dry_run: bool,
        now: Millis,
    ) -> Result<Recovery> {
        Deliveries::recover_destination(self, tenant_id, destination_id, since, dry_run, now).await
    }

    async fn get_recovery(&self, tenant_id: &str, id: &str) -> Result<Option<Recovery>> {
        Deliveries::get_recovery(self, tenant_id, id).await
    }

    // --- The scheduler: the dialect's claim, then `deliveries` ------------------------------

    async fn claim(&self, limit: u32, now: Millis, lease_until: Millis) -> Result<Vec<Claimed>> {
        self.claim_due(limit, now, lease_until).await
    }

    async fn finish_batch(&self, fs: &[Finish]) -> Result<Vec<Finished>> {
        Deliveries::finish_batch(self, fs).await
    }

    async fn rescue_expired(&self, now: Millis) -> Result<u64> {
        Deliveries::rescue_expired(self, now).await
    }

    async fn next_due(&self) -> Result<Option<Millis>> {
        Deliveries::next_due(self).await
    }

    async fn release(&self, delivery_id: &str, attempt: u32, now: Millis) -> Result<bool> {
        Deliveries::release(self, delivery_id, attempt, now).await
    }

    async fn purge_before(&self, cutoff: Millis, batch: u32) -> Result<u64> {
        Maintenance::purge_before(self, cutoff, batch).await
    }

    async fn queue_stats(&self, now: Millis) -> Result<(u64, Option<Millis>)> {
        Deliveries::queue_stats(self, now).await
    }

    // --- Inbound: `inbound` -----------------------------------------------------------------

    async fn insert_callback_endpoint(&self, e: &CallbackEndpoint) -> Result<()> {
        Inbound::insert_callback_endpoint(self, e).await
    }

    async fn get_callback_endpoint(
        &self,
        scope: Scope<'_>,
        id: &str,
    ) -> Result<Option<CallbackEndpoint>> {
        Inbound::get_callback_endpoint(self, scope, id).await
    }

    async fn find_callback_endpoint(&self, slug: &str) -> Result<Option<CallbackEndpoint>> {
        Inbound::find_callback_endpoint(self, slug).await
    }

    async fn reply_endpoint_of(
        &self,
        scope: Scope<'_>,
        event_id: &str,
    ) -> Result<Option<CallbackEndpoint>> {
        Inbound::reply_endpoint_of(self, scope, event_id).await
    }

    async fn list_callback_endpoints(
        &self,
        scope: Scope<'_>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CallbackEndpoint>> {
        Inbound::list_callback_endpoints(self, scope, after, limit).await
    }

    async fn delete_callback_endpoint(&self, scope: Scope<'_>, id: &str) -> Result<bool> {
        Inbound::delete_callback_endpoint(self, scope, id).await
    }

    async fn ingest_callback(&self, c: &Callback) -> Result<Ingested> {
        Inbound::ingest_callback(self, c).await
    }

    async fn ingest_callbacks(&self, cs: &[Callback]) -> Result<Vec<Ingested>> {
        Inbound::ingest_callbacks(self, cs).await
    }

    async fn callbacks_after(
        &self,
        endpoint_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        Inbound::callbacks_after(self, endpoint_id, after, limit).await
    }

    async fn rejected_callbacks(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        Inbound::rejected_callbacks(self, endpoint_id, after, limit).await
    }

    async fn list_callbacks(&self, q: &CallbackQuery) -> Result<Vec<Callback>> {
        Inbound::list_callbacks(self, q).await
    }

    async fn get_callback(&self, scope: Scope<'_>, id: &str) -> Result<Option<Callback>> {
        Inbound::get_callback(self, scope, id).await
    }

    async fn ack_callback(
        &self,
        scope: Scope<'_>,
        id: &str,
        now: Millis,
    ) -> Result<Option<Callback>> {
        Inbound::ack_callback(self, scope, id, now).await
    }

    // --- The event-type catalog: `catalog` --------------------------------------------------

    async fn put_event_type(&self, t: &NewEventType<'_>, now: Millis) -> Result<EventType> {
        Catalog::put_event_type(self, t, now).await
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        Catalog::get_event_type(self, name).await
    }

    async fn list_event_types(
        &self,
        after: Option<&str>,
        limit: u32,
        include_archived: bool,
    ) -> Result<Vec<EventType>> {
        Catalog::list_event_types(self, after, limit, include_archived).await
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        Catalog::delete_event_type(self, name).await
    }

    // --- The tenant portal: `portal` --------------------------------------------------------

    async fn insert_portal_link(
        &self,
        hash: &str,
        tenant_id: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()> {
        Portal::insert_portal_link(self, hash, tenant_id, expires_at, now).await
    }

    async fn redeem_portal_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        session_expires_at: Millis,
        now: Millis,
    ) -> Result<LinkState> {
        Portal::redeem_portal_link(self, link_hash, session_hash, session_expires_at, now).await
    }

    async fn check_portal_link(&self, link_hash: &str, now: Millis) -> Result<LinkState> {
        Portal::check_portal_link(self, link_hash, now).await
    }

    async fn find_portal_session(&self, hash: &str, now: Millis) -> Result<Option<String>> {
        Portal::find_portal_session(self, hash, now).await
    }

    async fn delete_portal_session(&self, hash: &str) -> Result<()> {
        Portal::delete_portal_session(self, hash).await
    }

    async fn destination_health(
        &self,
        tenant_id: &str,
        destination_id: &str,
        since: Millis,
    ) -> Result<DestinationHealth> {
        Portal::destination_health(self, tenant_id, destination_id, since).await
    }
}

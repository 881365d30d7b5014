//! Delivery: each delivery is a task of its own, counted in its namespace's share of the
//! pending deliveries from before it is claimed until it ends ([`Deliveries::reserve`]),
//! so that what is claimed is always delivered or given up on, never dropped for room.
//! Attempts take one of a few sending slots, shared fairly between namespaces; the
//! backoff between attempts holds none. The target's Ready condition tells the outcome.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use super::NotifyError;
use super::payload::{self, ID_HEADER, Notice, SIGNATURE_HEADER};
use crate::api::notification::{NotificationTarget, TargetType};
use crate::api::{apply_status, now, set_condition};
use crate::controller::fairness::Shares;
use crate::controller::outbound::{Http, OutboundError};
use crate::controller::slots::Slots;

/// Deliveries pending (claimed and not yet delivered or given up), per namespace and in
/// all: one namespace's silent receivers cannot take another namespace's room.
pub const PENDING_PER_NAMESPACE: usize = 256;
const PENDING: usize = 2_048;
/// Attempts in flight at once, in all and per namespace.
const IN_FLIGHT: usize = 8;
const IN_FLIGHT_PER_NAMESPACE: usize = 4;
/// Attempts per delivery, and the time limit of each.
const ATTEMPTS: u32 = 6;
const TIMEOUT: Duration = Duration::from_secs(10);

/// One notice for one target.
#[derive(Debug, Clone)]
pub struct Delivery {
    namespace: String,
    target: String,
    target_type: TargetType,
    secret: String,
    notice: Notice,
}

impl Delivery {
    pub fn new(target: &NotificationTarget, notice: Notice) -> Self {
        Self {
            namespace: target.namespace().unwrap_or_default(),
            target: target.name_any(),
            target_type: target.spec.target_type,
            secret: target.spec.secret_ref.name.clone(),
            notice,
        }
    }
}

pub struct Deliveries {
    client: Client,
    http: Http,
    pending: Mutex<Shares>,
    sending: Slots,
}

/// Room taken in a namespace's share for deliveries about to be claimed; what is not
/// used is given back when it is dropped.
pub struct Reservation {
    deliveries: Arc<Deliveries>,
    namespace: String,
    left: usize,
}

impl Reservation {
    /// Starts `delivery` in room this reservation holds. False (and nothing started)
    /// when it holds no more.
    pub fn start(&mut self, delivery: Delivery) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        let deliveries = self.deliveries.clone();
        tokio::spawn(async move {
            let namespace = delivery.namespace.clone();
            deliveries.deliver(delivery).await;
            deliveries.give_back(&namespace, 1);
        });
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.deliveries.give_back(&self.namespace, self.left);
    }
}

impl Deliveries {
    pub fn new(client: Client, http: Http) -> Self {
        Self {
            client,
            http,
            pending: Mutex::new(Shares::new(PENDING_PER_NAMESPACE, PENDING)),
            sending: Slots::new(IN_FLIGHT, IN_FLIGHT_PER_NAMESPACE),
        }
    }

    /// Room for `n` deliveries of `namespace`, if its share has it: take it before
    /// claiming what they deliver. Never waits.
    pub fn reserve(self: &Arc<Self>, namespace: &str, n: usize) -> Option<Reservation> {
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(namespace, n);
        taken.then(|| Reservation {
            deliveries: self.clone(),
            namespace: namespace.to_owned(),
            left: n,
        })
    }

    fn give_back(&self, namespace: &str, n: usize) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .give_back(namespace, n);
    }

    /// Tries `d` until it is delivered or [`ATTEMPTS`] failed; each attempt in a sending
    /// slot, the waits between them in none.
    async fn deliver(&self, d: Delivery) {
        let mut delay = Duration::from_secs(1);
        let mut outcome = Err(NotifyError::Rejected {
            status: 0,
            body: String::new(),
        });
        for attempt in 1..=ATTEMPTS {
            outcome = {
                let _slot = self.sending.acquire(&d.namespace).await;
                send_once(&self.client, &self.http, &d).await
            };
            match &outcome {
                Ok(()) => break,
                // Trying again changes nothing the controller's policy or a missing
                // Secret decided.
                Err(
                    NotifyError::Outbound(OutboundError::Refused(_)) | NotifyError::Secret { .. },
                ) => {
                    break;
                }
                Err(e) if attempt < ATTEMPTS => {
                    warn!(target = %d.target, namespace = %d.namespace, attempt, error = %e, "notification not delivered; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
                Err(_) => {}
            }
        }
        match &outcome {
            Ok(()) => {
                info!(target = %d.target, namespace = %d.namespace, event = d.notice.event.as_str(), "notification delivered")
            }
            Err(e) => {
                warn!(target = %d.target, namespace = %d.namespace, error = %e, "notification given up")
            }
        }
        if let Err(e) = record(&self.client, &d, &outcome).await {
            warn!(error = %e, "could not record a notification's outcome");
        }
    }
}

async fn send_once(client: &Client, http: &Http, d: &Delivery) -> Result<(), NotifyError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &d.namespace);
    let secret = secrets
        .get_opt(&d.secret)
        .await?
        .ok_or_else(|| NotifyError::Secret {
            name: d.secret.clone(),
            message: "not found".into(),
        })?;
    let value = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|v| v.0.clone())
    };
    let address = value("address")
        .and_then(|v| String::from_utf8(v).ok())
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| NotifyError::Secret {
            name: d.secret.clone(),
            message: "has no `address` key".into(),
        })?;
    let mut headers = vec![(ID_HEADER, d.notice.id.clone())];
    let body = match d.target_type {
        TargetType::Webhook => {
            let body = payload::webhook_body(&d.notice);
            if let Some(token) = value("token") {
                headers.push((SIGNATURE_HEADER, payload::sign(&token, &body)));
            }
            body
        }
        TargetType::Slack => payload::slack_body(&d.notice),
    };
    // The one URL policy: scheme flags, --allowed-notification-hosts, addresses.
    http.policy()
        .check_request(&address, crate::source::policy::Purpose::Notification)
        .map_err(OutboundError::from)?;
    let response = http
        .send(Method::POST, &address, &headers, Some(body), TIMEOUT)
        .await?;
    if response.is_success() {
        Ok(())
    } else {
        Err(NotifyError::Rejected {
            status: response.status,
            body: response.text(200),
        })
    }
}

/// Writes the target's Ready condition and last delivery with server-side apply.
async fn record(
    client: &Client,
    d: &Delivery,
    outcome: &Result<(), NotifyError>,
) -> Result<(), kube::Error> {
    let api: Api<NotificationTarget> = Api::namespaced(client.clone(), &d.namespace);
    let Some(target) = api.get_opt(&d.target).await? else {
        return Ok(());
    };
    let mut status = target.status.clone().unwrap_or_default();
    let ts = now();
    let what = format!(
        "{} {}/{}",
        d.notice.event.as_str(),
        d.notice.repository,
        d.notice.run.as_deref().unwrap_or("")
    );
    let what = what.trim_end_matches('/').to_owned();
    match outcome {
        Ok(()) => {
            set_condition(
                &mut status.conditions,
                "Ready",
                true,
                "Delivered",
                format!("delivered {what}"),
                target.metadata.generation,
                &ts,
            );
            status.last_event = Some(what);
            status.last_sent_at = Some(ts);
        }
        Err(e) => {
            // The message names the failure, never the address (it may be a credential).
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                e.label(),
                format!("could not deliver {what}: {}", e.tenant_message()),
                target.metadata.generation,
                &ts,
            );
        }
    }
    apply_status(&api, &d.target, &status).await?;
    Ok(())
}

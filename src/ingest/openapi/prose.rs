//! The parts of the OpenAPI document that are prose, not types: the API's introduction, its
//! tags, how callers authenticate, the shared parameters and headers, and the answers several
//! operations share (each with the one problem code it carries).

use serde_json::{Value, json};

use super::{Code, Problems};
use crate::ingest::problem::ProblemCode;

/// `info`, without the version (the package's own).
pub(super) fn info() -> Value {
    json!({
        "title": "Postern gateway API",
        "summary": "Secure gateway for safeguarding information sharing between UK agencies.",
        "description": "Postern is a secure gateway for safeguarding information sharing between UK \
            agencies. An agency system submits a transfer (an envelope describing who, why, on \
            what basis, what and for how long, plus the payload file); the gateway checks the \
            envelope, decides against the registered organisations, purposes and data sharing \
            agreements, seals the payload as it arrives, queues it for every recipient, and \
            records the decision in a hash-chained transfer log. A transfer is all or nothing: \
            if one recipient is refused, nothing is shared with anyone.\n\nA delivery worker \
            then reseals the payload (and the envelope) for each recipient alone, with age, to \
            the age keys registered for it, and delivers it by the recipient's channel: secure \
            email, direct HTTPS with mutual TLS to the gateway that serves the recipient (`POST \
            /v1/inbound` on that gateway), or this gateway's own inbox, from which the recipient \
            organisation downloads and acknowledges it (`/v1/inbox`). The one exception to \
            resealing is an email recipient registered as `tls_only` (an accredited secure email \
            domain whose users cannot run age): it receives the envelope and payload unencrypted \
            inside the message, sent only over verified TLS, and policy allows that only up to \
            the endpoint's marking ceiling. The sender follows each recipient's delivery with \
            `GET /v1/transfers/{id}`.\n\n## Callers: organisations and peer gateways\n\nEvery \
            request is made over HTTPS (TLS 1.2 or 1.3) with a client certificate. The \
            certificate must be issued by one of the client CAs the gateway trusts, and must map \
            (by its SHA-256 fingerprint or a subject alternative name) to exactly one registered \
            organisation or registered peer gateway. That organisation or peer is the caller of \
            every request on the connection: an envelope never names its sender.\n\nEach \
            operation is for one kind of caller, stated in its description and as \
            `x-postern-caller` (`organisation` or `peer_gateway`):\n\n- organisations submit \
            transfers and follow them (`/v1/transfers`), add the rationale of an urgent transfer \
            afterwards (`/v1/transfers/{id}/rationale`), record decisions not to share \
            (`/v1/decisions`), and read and acknowledge their inbox (`/v1/inbox`); a peer \
            gateway calling these is answered 403 `not_an_organisation`;\n- peer gateways \
            deliver transfers for this gateway's organisations (`POST /v1/inbound`); an \
            organisation calling it is answered 403 `not_a_peer`.\n\nThese two answers come \
            before anything else is read, and are not recorded.\n\nA peer gateway delivers only \
            for the organisations its registration here lists (`senders` in its `[[peer]]` entry \
            in `peers.toml`): a delivery naming any other sender is answered 403 \
            `sender_not_permitted`, so that one peer cannot speak in another's name.\n\nA \
            missing certificate, a certificate from a CA the gateway does not trust, or a \
            certificate that maps to no organisation or peer, or to more than one, fails the TLS \
            handshake. There is never an HTTP answer (no 401 or 403) for these: the connection \
            is closed during the handshake.\n\n## Errors\n\nEvery error answer is an RFC 9457 \
            problem document (`application/problem+json`) with a stable, machine-readable `code` \
            (see the `ProblemCode` schema), `field` naming the part of the request at fault \
            where there is one, and a `detail` sentence a person understands. Internal errors \
            never carry their cause. Each operation lists the codes it can answer with under \
            each status. `title` is a short summary for people (see the `Problem` schema); match \
            on `code`, never on `title`. Every 503 answer carries a `Retry-After` header.\n\nTwo \
            answers come from the router itself rather than from an operation: a path that is \
            not described here is answered 404 with code `not_found`, and a method a described \
            path does not support is answered 405 with code `method_not_allowed` (see \
            `components.responses`).\n\n## Delivery\n\nEach recipient's delivery is `queued` \
            when the transfer is accepted, `delivering` during an attempt, `retrying` after a \
            temporary failure (retried with exponential backoff until the delivery's lifetime, 5 \
            days in the shipped configuration, ends), and finally `delivered`, with the receipt \
            the recipient's side gave, or `dead`, with the reason (a permanent failure, or the \
            lifetime ended). Delivery is at least once: the recipient's side may receive a \
            transfer more than once, and the inbound contract (`POST /v1/inbound`) makes a \
            repeat harmless.\n\n## Corrections, urgent shares and decisions not to share\n\nA \
            transfer whose envelope has `correction_of` corrects an earlier transfer: it is \
            delivered to every recipient that received the earlier one (every recipient whose \
            delivery is not `dead`), as well as to the recipients it names, and the policy \
            decides for all of them (all or nothing, as for any transfer). Only the organisation \
            that sent the earlier transfer, or the data holding agency it named as `originator`, \
            may correct it (403 `correction_not_permitted` otherwise). The correction's record \
            names the transfer it corrects, and the transfer log finds the corrections of a \
            transfer through its index.\n\nIn an emergency, share first and document the \
            rationale afterwards: an envelope whose `urgency.level` is `urgent` may leave \
            `justification` out, and its sender adds it later with `POST \
            /v1/transfers/{id}/rationale`. Until then the transfer log marks the share as having \
            its rationale to follow.\n\nA decision not to share is recorded too, with its \
            reasons (`POST /v1/decisions`): who decided, with whom sharing was considered, why \
            not, and the request it answers. Nothing is sent to anyone.\n\n## Records\n\nEvery \
            submission that reaches a decision is recorded in the transfer log under a transfer \
            id (a UUID v7, so ids sort by arrival), whether it was accepted, refused by policy \
            or rejected as malformed or invalid. Problem answers to `POST /v1/transfers` carry \
            that id as `transfer_id` where one was recorded. The record holds the envelope's \
            metadata and grounds (including the justification, reasons and summary, in clear, \
            because a data protection officer must be able to read them), the payload's digests \
            and never the payload; subject references are kept only as keyed hashes (HMAC-SHA256 \
            under the deployment's secret), and in clear only inside the envelope sealed for the \
            recipients. Every delivery attempt and its outcome, every delivery received into the \
            inbox, every acknowledgement of an inbox item, every decision not to share \
            (`decision_declined`, under its decision id) and every rationale added to an urgent \
            share (`rationale_added`, under the transfer's id) is recorded too. Error answers \
            never contain the payload, the justification or other free text of the envelope, or \
            subject references.",
        "license": {
            "name": "Apache-2.0",
            "identifier": "Apache-2.0"
        }
    })
}

pub(super) fn tags() -> Value {
    json!([
        {
            "name": "transfers",
            "description": "Organisations: submitting transfers and following their delivery."
        },
        {
            "name": "decisions",
            "description": "Organisations: recording decisions not to share, with their reasons."
        },
        {
            "name": "requests",
            "description": "Organisations: asking each other for information in writing, and \
                following each request's clock until it is answered, declined or withdrawn."
        },
        {
            "name": "inbound",
            "description": "Peer gateways: delivering transfers for this gateway's organisations. A contract \
                another agency can implement without running Postern."
        },
        {
            "name": "inbox",
            "description": "Organisations: what was delivered to them here, to download and acknowledge."
        }
    ])
}

pub(super) fn security_schemes() -> Value {
    json!({
        "mutualTLS": {
            "type": "mutualTLS",
            "description": "A client certificate issued by a CA the gateway trusts, mapping (by fingerprint \
                or subject alternative name) to exactly one registered organisation or peer \
                gateway, which becomes the caller. A missing, unknown or ambiguous certificate, \
                or one from an untrusted CA, fails the TLS handshake: there is no HTTP answer. \
                Each operation is for one kind of caller (`x-postern-caller`); the other kind is \
                answered 403 (`not_an_organisation` or `not_a_peer`)."
        }
    })
}

pub(super) fn parameters() -> Value {
    json!({
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Makes a retry safe. 1 to 255 visible ASCII characters (else 400 \
                `invalid_idempotency_key`). Keys are per sender. A request with the same key and \
                the same envelope (byte for byte) as an earlier request from the same sender \
                that was accepted (202), refused (403) or found invalid (422 `invalid_envelope`) \
                gets the first answer again, with the header `Idempotent-Replayed: true`, and \
                nothing new is shared or recorded. The same key with a different envelope is 422 \
                `idempotency_key_reused`. Requests rejected for other reasons (400, 403 \
                `not_an_organisation`, 408, 413, 415, 500, 503) are not remembered, so they may \
                be retried with the same key.",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[!-~]+$"
            }
        },
        "InboxItemId": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "The inbox item id (`id` in the listing; the `receipt_id` the delivering gateway \
                was given). An id that is unknown, or is another organisation's item, is 404 \
                `inbox_item_not_found`.",
            "schema": {
                "type": "string"
            }
        }
    })
}

pub(super) fn headers() -> Value {
    json!({
        "Location": {
            "description": "The transfer's status URL, `/v1/transfers/{id}` (the same as `status_url`), on \
                the first answer and on a replay alike.",
            "schema": {
                "type": "string"
            }
        },
        "IdempotentReplayed": {
            "description": "`true` when this is the stored first answer to an earlier request with the same \
                Idempotency-Key and envelope; absent otherwise.",
            "schema": {
                "type": "string",
                "const": "true"
            }
        },
        "RetryAfter": {
            "description": "Seconds to wait before retrying (5). Every 503 answer carries it. After a 507 \
                (`insufficient_storage`: the gateway's disk is short of space) it is a minute \
                (60).",
            "schema": {
                "type": "integer",
                "minimum": 0
            }
        },
        "DecisionLocation": {
            "description": "The decision's URL, `/v1/decisions/{id}` (the same as `decision_url`), on the \
                first answer and on a replay alike.",
            "schema": {
                "type": "string"
            }
        }
    })
}

/// The answers several operations share, by name: `components.responses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shared {
    NotFound,
    MethodNotAllowed,
    NotAnOrganisation,
    InboxItemNotFound,
    CertificateNoLongerAccepted,
    InsufficientStorage,
    HeadersTooLarge,
}

impl Shared {
    pub(super) const ALL: [Shared; 7] = [
        Shared::NotFound,
        Shared::MethodNotAllowed,
        Shared::NotAnOrganisation,
        Shared::InboxItemNotFound,
        Shared::CertificateNoLongerAccepted,
        Shared::InsufficientStorage,
        Shared::HeadersTooLarge,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Shared::NotFound => "NotFound",
            Shared::MethodNotAllowed => "MethodNotAllowed",
            Shared::NotAnOrganisation => "NotAnOrganisation",
            Shared::InboxItemNotFound => "InboxItemNotFound",
            Shared::CertificateNoLongerAccepted => "CertificateNoLongerAccepted",
            Shared::InsufficientStorage => "InsufficientStorage",
            Shared::HeadersTooLarge => "HeadersTooLarge",
        }
    }

    /// Answered by the router itself, not by an operation (so the document says its status).
    pub(super) fn answered_by_the_router(self) -> bool {
        matches!(self, Shared::NotFound | Shared::MethodNotAllowed)
    }

    pub(super) fn problems(self) -> Problems {
        match self {
            Shared::NotFound => Problems {
                intro: "Answered by the router for any path this document does not describe.",
                codes: &[(
                    Code::Api(ProblemCode::NotFound),
                    "there is no such endpoint",
                )],
            },
            Shared::MethodNotAllowed => Problems {
                intro: "Answered by the router for a method a described path does not support (e.g. \
                    `GET /v1/transfers`).",
                codes: &[(
                    Code::Api(ProblemCode::MethodNotAllowed),
                    "the endpoint does not support that method",
                )],
            },
            Shared::NotAnOrganisation => Problems {
                intro: "The caller is not an organisation. Nothing was read or recorded.",
                codes: &[(
                    Code::Api(ProblemCode::NotAnOrganisation),
                    "the client certificate is a peer gateway's; peer gateways only deliver, to \
                    `POST /v1/inbound`",
                )],
            },
            Shared::InboxItemNotFound => Problems {
                intro: "No inbox item with this id is addressed to the caller's organisation.",
                codes: &[(
                    Code::Api(ProblemCode::InboxItemNotFound),
                    "the id is unknown, or the item is another organisation's",
                )],
            },
            Shared::CertificateNoLongerAccepted => Problems {
                intro: "The connection's client certificate no longer authenticates anyone: since \
                    the connection was opened it was revoked, it expired, or a reload removed \
                    its identity. Every request on an open connection is authenticated again \
                    when the configuration has changed (and at least once a minute). Nothing was \
                    done; the gateway closes the connection after this answer. Connect again \
                    with a valid certificate (a new connection with the same certificate fails \
                    its TLS handshake).",
                codes: &[(
                    Code::Api(ProblemCode::CertificateNoLongerAccepted),
                    "the certificate was revoked, expired or unregistered after the connection \
                    was opened",
                )],
            },
            Shared::InsufficientStorage => Problems {
                intro: "The gateway is short of storage and kept nothing from this request: the free \
                    space on its state directory's filesystem is below its reserve \
                    (`limits.min_free_bytes`, counting the request's declared `Content-Length`), \
                    checked before anything is read, or the disk filled while the request was \
                    being stored. A transfer refused this way is recorded (`transfer_failed`). \
                    Temporary: retry after `Retry-After` seconds (60), with the same \
                    `Idempotency-Key`.",
                codes: &[(
                    Code::Api(ProblemCode::InsufficientStorage),
                    "the disk is full or below its reserve; nothing was kept",
                )],
            },
            Shared::HeadersTooLarge => Problems {
                intro: "The request's head could not be read: its headers are larger than this \
                    gateway reads. Answered before any handler runs, like a head that is not \
                    valid HTTP (which is 400 `malformed_request`); the connection is closed \
                    after the answer. Nothing was done.",
                codes: &[(
                    Code::Api(ProblemCode::HeadersTooLarge),
                    "the request's headers are too large",
                )],
            },
        }
    }
}

//! The operations of the API as the OpenAPI document describes them: for each route, what it
//! does and for whom, what it takes and answers, and the problem codes it can answer with,
//! each with what it means here. The statuses of the problem answers, their code lists, their
//! `Retry-After` headers and the route list itself come from the types (see `super`).

use serde_json::{Value, json};

use super::prose::Shared;
use super::{CallerKind, Code, Operation, Problems};
use crate::domain::policy::Rule;
use crate::ingest::problem::ProblemCode;

pub(super) fn operations() -> Vec<Operation> {
    vec![
        Operation {
            method: "post",
            path: "/v1/transfers",
            caller: CallerKind::Organisation,
            id: "submitTransfer",
            tag: "transfers",
            summary: "Submit a transfer",
            description: "Submits one transfer: the envelope, then the payload, as `multipart/form-data` \
                with exactly two parts in this order. The envelope is parsed and the policy \
                decision made before a single payload byte is read, so a refused or invalid \
                transfer never uploads its payload. The payload is sealed as it streams in; the \
                answer is 202 only once the sealed payload and its record are durably stored. \
                Each recipient's delivery is then queued, for the recipient's channel. A \
                transfer with `correction_of` is a correction: before the policy decision it is \
                refused unless its sender sent the corrected transfer or originated its data \
                (403 `correction_not_permitted`), and every earlier recipient of the corrected \
                transfer is added to its recipients, so that it reaches everyone who had the \
                inaccurate data (the 202 answer lists them all).\n\n**Caller:** an organisation, \
                which is the sender. A peer gateway's certificate is answered 403 \
                `not_an_organisation` before the body is read (nothing is recorded).",
            parameters: json!([
                {
                    "$ref": "#/components/parameters/IdempotencyKey"
                }
            ]),
            request_body: json!({
                "required": true,
                "description": "Exactly two parts, in order: `envelope` (JSON) then `payload` (the file). \
                    Any other part, or a part after the payload, is 400 `unexpected_part`.",
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["envelope", "payload"],
                            "properties": {
                                "envelope": {
                                    "$ref": "#/components/schemas/Envelope"
                                },
                                "payload": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "The file to share, of any media type. Its part's \
                                        `filename` and Content-Type are recorded when the \
                                        envelope gives no `file_name` or `content_type`."
                                }
                            }
                        },
                        "encoding": {
                            "envelope": {
                                "contentType": "application/json"
                            },
                            "payload": {
                                "contentType": "*/*"
                            }
                        }
                    }
                }
            }),
            answers: json!({
                "202": {
                    "description": "Accepted: policy allowed the transfer to every recipient, the payload is \
                        sealed and queued for delivery to each, and the decision is recorded. A \
                        replay of an earlier accepted request with the same Idempotency-Key and \
                        envelope returns the first answer's body with `Idempotent-Replayed: \
                        true`.",
                    "headers": {
                        "Location": {
                            "$ref": "#/components/headers/Location"
                        },
                        "Idempotent-Replayed": {
                            "$ref": "#/components/headers/IdempotentReplayed"
                        }
                    },
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/Accepted"
                            },
                            "example": {
                                "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d",
                                "status": "accepted",
                                "received_at": "2026-11-22T10:15:30.123456Z",
                                "recipients": [
                                    {
                                        "recipient": "northshire-police",
                                        "agreement": "northshire-safeguarding-isa"
                                    }
                                ],
                                "payload": {
                                    "size": 48213,
                                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                                },
                                "status_url": "/v1/transfers/0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d"
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "The request is malformed. Nothing was shared; the rejection is recorded.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::MalformedRequest),
                            "the multipart body could not be read, or the request ended before \
                            the end of the payload",
                        ),
                        (
                            Code::Api(ProblemCode::EnvelopeNotJson),
                            "the `envelope` part is not valid JSON",
                        ),
                        (
                            Code::Api(ProblemCode::EnvelopeMissing),
                            "there are no parts, or the first part is not `envelope`",
                        ),
                        (
                            Code::Api(ProblemCode::PayloadMissing),
                            "there is an envelope but no `payload` part",
                        ),
                        (
                            Code::Api(ProblemCode::UnexpectedPart),
                            "a part other than `envelope` and `payload`, a second part that is \
                            not `payload`, or anything after the payload",
                        ),
                        (
                            Code::Api(ProblemCode::InvalidIdempotencyKey),
                            "the Idempotency-Key header is not 1 to 255 visible ASCII \
                            characters\n\nIf the client goes away or the connection fails during \
                            the upload, nothing is kept and nothing is recorded (no decision was \
                            made); if anyone is still listening, the answer is \
                            `malformed_request`.",
                        ),
                    ],
                },
                Problems {
                    intro: "Refused by policy. Nothing was shared with any recipient; the refusal is \
                        recorded. `code` names the rule that refused, `field` the envelope field \
                        it concerns (e.g. `recipients[0]`, `marking`), and `recipient` and \
                        `agreement` the recipient and agreement considered where there is one. A \
                        correction (`correction_of`) is first checked to come from the corrected \
                        transfer's sender or originator (`correction_not_permitted`, `field` is \
                        `correction_of`); its recipients then include every earlier recipient of \
                        the corrected transfer, and a refusal about one of those that the \
                        envelope did not name has `field` `correction_of`. Rules are checked in \
                        this order (the rules from `unknown_recipient` on for each recipient in \
                        turn) and the first that fails refuses; where several agreements bind \
                        the sender and a recipient, the refusal names the one that came closest \
                        to permitting the share.\n\nThe same status with code \
                        `not_an_organisation` (not a policy refusal, and not recorded) answers a \
                        peer gateway that calls this operation.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::CorrectionNotPermitted),
                            "a correction from an organisation that neither sent the corrected \
                            transfer nor is the data holding agency its envelope named \
                            (`originator`); `field` is `correction_of`. Checked before the \
                            policy rules below; recorded like a refusal",
                        ),
                        (
                            Code::Refused(Rule::SenderRegistered),
                            "the sender is not a registered organisation (the registry changed \
                            after the TLS handshake)",
                        ),
                        (
                            Code::Refused(Rule::MarkingWithinGateway),
                            "the marking is SECRET or TOP SECRET; this gateway carries the \
                            OFFICIAL tier only",
                        ),
                        (
                            Code::Refused(Rule::PurposeKnown),
                            "`purpose` is not a configured purpose",
                        ),
                        (
                            Code::Refused(Rule::LawfulBasisFitsPurpose),
                            "`lawful_basis` is not one of the bases the purpose allows",
                        ),
                        (
                            Code::Refused(Rule::SpecialCategoryCondition),
                            "`data_categories` includes `special_category` but no \
                            `special_category_condition` is given",
                        ),
                        (
                            Code::Refused(Rule::SpecialCategoryPermitted),
                            "the purpose does not allow special category data",
                        ),
                        (
                            Code::Refused(Rule::OriginatorPermission),
                            "`originator` is not the sender and no `originator_permission_ref` is \
                            given",
                        ),
                        (
                            Code::Refused(Rule::StatutoryOnlySender),
                            "the purpose is statutory-only and the sender is not a statutory body",
                        ),
                        (
                            Code::Refused(Rule::RecipientRegistered),
                            "a recipient is not a registered organisation",
                        ),
                        (
                            Code::Refused(Rule::StatutoryOnlyRecipient),
                            "the purpose is statutory-only and a recipient is not a statutory \
                            body",
                        ),
                        (
                            Code::Refused(Rule::MarkingWithinClearance),
                            "the marking is above a recipient's clearance",
                        ),
                        (
                            Code::Refused(Rule::RecipientHasEndpoint),
                            "a recipient has no delivery endpoint configured, so nothing could be \
                            delivered to it",
                        ),
                        (
                            Code::Refused(Rule::MarkingWithinChannel),
                            "the marking is above the ceiling of a recipient's delivery channel \
                            (e.g. an email endpoint limited to OFFICIAL)",
                        ),
                        (
                            Code::Refused(Rule::AgreementExists),
                            "the sender and a recipient are not parties to a common agreement",
                        ),
                        (
                            Code::Refused(Rule::AgreementInForce),
                            "the agreement with a recipient is not in force today",
                        ),
                        (
                            Code::Refused(Rule::PurposeInAgreement),
                            "the agreement does not permit the purpose",
                        ),
                        (
                            Code::Refused(Rule::LawfulBasisInAgreement),
                            "the agreement does not permit the lawful basis",
                        ),
                        (
                            Code::Refused(Rule::MarkingWithinAgreement),
                            "the marking is above the agreement's maximum",
                        ),
                    ],
                },
                Problems {
                    intro: "The upload made no progress for longer than the gateway's idle timeout \
                        (`limits.idle_timeout_secs`, 60 seconds in the shipped configuration) \
                        and was abandoned. Nothing was kept; the rejection is recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::RequestTimeout),
                        "the envelope or payload stalled",
                    )],
                },
                Problems {
                    intro: "Too large. Nothing was kept; the rejection is recorded. `detail` states \
                        the limit.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::EnvelopeTooLarge),
                            "the `envelope` part is larger than the envelope limit \
                            (`limits.max_envelope_bytes`, 64 KiB in the shipped configuration)",
                        ),
                        (
                            Code::Api(ProblemCode::PayloadTooLarge),
                            "the `payload` part, or the request as a whole (by Content-Length or \
                            as it streams), is larger than the payload limit \
                            (`limits.max_payload_bytes`, 2 GiB in the shipped configuration)",
                        ),
                        (
                            Code::Api(ProblemCode::PayloadTooLargeForEmail),
                            "a recipient receives by email, and the payload, sealed, is larger \
                            than an email may carry (`smtp.max_message_bytes`, 20 MiB in the \
                            shipped configuration); `recipient` is not set, `detail` names the \
                            recipient. This is known only once the payload has been read, so it \
                            is uploaded and then discarded; send to that recipient separately, \
                            or in smaller parts",
                        ),
                    ],
                },
                Problems {
                    intro: "The request is not `multipart/form-data` with a boundary. Nothing was \
                        shared; the rejection is recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::UnsupportedMediaType),
                        "the Content-Type is missing or is not multipart with a boundary",
                    )],
                },
                Problems {
                    intro: "The envelope is JSON but not a valid envelope, or the Idempotency-Key \
                        was reused for a different envelope. Nothing was shared.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::InvalidEnvelope),
                            "fields are missing or invalid; `errors` lists every one (`field` is \
                            the first entry of `errors`), and the rejection is recorded. For a \
                            correction, `correction_of` that is not the id of a transfer this \
                            gateway accepted (unknown, or refused or rejected) is one of these \
                            (`invalid_value`)",
                        ),
                        (
                            Code::Api(ProblemCode::IdempotencyKeyReused),
                            "this sender already used the Idempotency-Key for a different \
                            envelope; `field` is `Idempotency-Key`",
                        ),
                    ],
                },
                Problems {
                    intro: "The gateway could not complete the request. Nothing was shared. The \
                        cause is logged for the operators, never returned; `transfer_id` \
                        identifies the request.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage, sealing)",
                    )],
                },
                Problems {
                    intro: "The gateway is unavailable. Nothing was shared; try again later.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::Unavailable),
                            "the gateway is shutting down and its store no longer accepts writes; \
                            nothing was kept. A `Retry-After` header says when to retry (with \
                            the same Idempotency-Key)",
                        ),
                        (
                            Code::Api(ProblemCode::Busy),
                            "the gateway is receiving as many uploads as its memory cap allows \
                            (`limits.upload_memory_bytes`) and none finished within \
                            `limits.upload_memory_wait_secs`; nothing of the request was read or \
                            kept, and it is not recorded. Retry after `Retry-After` seconds \
                            (with the same Idempotency-Key)",
                        ),
                    ],
                },
            ],
            problem_extras: json!({
                "403": {
                    "content": {
                        "application/problem+json": {
                            "example": {
                                "type": "urn:postern:problem:no_agreement",
                                "title": "Refused by policy",
                                "status": 403,
                                "detail": "Northshire County Council (`northshire-cc`) and Northshire \
                                    Police (`northshire-police`) are not parties to any common \
                                    agreement",
                                "code": "no_agreement",
                                "field": "recipients[0]",
                                "recipient": "northshire-police",
                                "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d"
                            }
                        }
                    },
                    "headers": {
                        "Idempotent-Replayed": {
                            "$ref": "#/components/headers/IdempotentReplayed"
                        }
                    }
                },
                "422": {
                    "content": {
                        "application/problem+json": {
                            "example": {
                                "type": "urn:postern:problem:invalid_envelope",
                                "title": "Invalid envelope",
                                "status": 422,
                                "detail": "The envelope has 2 problems: `purpose` is required: the \
                                    purpose id of this share; `urgency.reason` is required: why \
                                    this share is urgent",
                                "code": "invalid_envelope",
                                "field": "purpose",
                                "errors": [
                                    {
                                        "code": "missing_field",
                                        "field": "purpose",
                                        "message": "`purpose` is required: the purpose id of this share"
                                    },
                                    {
                                        "code": "missing_field",
                                        "field": "urgency.reason",
                                        "message": "`urgency.reason` is required: why this share is \
                                            urgent"
                                    }
                                ],
                                "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d"
                            }
                        }
                    },
                    "headers": {
                        "Idempotent-Replayed": {
                            "$ref": "#/components/headers/IdempotentReplayed"
                        }
                    }
                }
            }),
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::HeadersTooLarge,
                Shared::InsufficientStorage,
            ],
        },
        Operation {
            method: "get",
            path: "/v1/transfers/{id}",
            caller: CallerKind::Organisation,
            id: "getTransfer",
            tag: "transfers",
            summary: "A transfer's delivery status",
            description: "The state of an accepted transfer and of its delivery to each recipient: the \
                channel, the state, the attempts, the next attempt or last error, and once \
                delivered, when and the receipt the recipient's side gave. Only the sender may \
                see a transfer: to any other organisation it does not exist (404 \
                `transfer_not_found`), as do refused and rejected submissions.\n\n**Caller:** an \
                organisation, the transfer's sender. A peer gateway's certificate is answered \
                403 `not_an_organisation`.",
            parameters: json!([
                {
                    "name": "id",
                    "in": "path",
                    "required": true,
                    "description": "The transfer id from the 202 answer (`transfer_id`, or the `Location` \
                        header). An id that is not a UUID is answered 404 `transfer_not_found`.",
                    "schema": {
                        "type": "string",
                        "format": "uuid"
                    }
                }
            ]),
            request_body: json!(null),
            answers: json!({
                "200": {
                    "description": "The transfer and its deliveries.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/TransferStatus"
                            },
                            "example": {
                                "id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d",
                                "received_at": "2026-11-22T10:15:30.123456Z",
                                "purpose": "child-protection-s47",
                                "marking": "OFFICIAL-SENSITIVE PERSONAL",
                                "payload_size": 48213,
                                "payload_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                                "recipients": [
                                    {
                                        "recipient": "northshire-health",
                                        "agreement": "northshire-safeguarding-isa",
                                        "channel": "email",
                                        "state": "retrying",
                                        "attempts": 2,
                                        "next_attempt_at": "2026-11-22T10:17:05.402117Z",
                                        "last_error": "could not deliver: connection refused",
                                        "delivered_at": null,
                                        "receipt": null,
                                        "updated_at": "2026-11-22T10:16:01.930551Z"
                                    },
                                    {
                                        "recipient": "northshire-police",
                                        "agreement": "northshire-safeguarding-isa",
                                        "channel": "https",
                                        "state": "delivered",
                                        "attempts": 1,
                                        "next_attempt_at": null,
                                        "last_error": null,
                                        "delivered_at": "2026-11-22T10:15:31.004512Z",
                                        "receipt": {
                                            "receipt_id": "0193a7c5-0a1b-7c2d-8e3f-4a5b6c7d8e9f",
                                            "sha256": "3b5d3c7d207e37dceeedd301e35e2e58f3a8c9f4e1b2a7d6c5e4f3a2b1c0d9e8",
                                            "received_at": "2026-11-22T10:15:30.998120Z"
                                        },
                                        "updated_at": "2026-11-22T10:15:31.004512Z"
                                    }
                                ]
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "No accepted transfer with this id was sent by the caller's organisation.",
                    codes: &[(
                        Code::Api(ProblemCode::TransferNotFound),
                        "the id is unknown, not a UUID, or belongs to another sender; `field` \
                            is `id`",
                    )],
                },
                Problems {
                    intro: "The gateway could not read the transfer's status. The cause is logged \
                        for the operators, never returned.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is unavailable; try again shortly.",
                    codes: &[(
                        Code::Api(ProblemCode::Unavailable),
                        "the store could not run the lookup, as when the gateway is shutting \
                            down (`detail`: \"The gateway is shutting down. Try again \
                            shortly.\"). A `Retry-After` header says when to retry; \
                            `transfer_id` is the transfer asked about",
                    )],
                },
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::HeadersTooLarge,
            ],
        },
        Operation {
            method: "post",
            path: "/v1/transfers/{id}/rationale",
            caller: CallerKind::Organisation,
            id: "addRationale",
            tag: "transfers",
            summary: "Add the rationale of an urgent transfer",
            description: "In an emergency the share comes first and the rationale after: an urgent \
                transfer (`urgency.level` `urgent`) accepted without a `justification` has its \
                rationale to follow, and its sender adds it here, once. The gateway appends a \
                `rationale_added` record to the transfer log, under the transfer's id, and the \
                transfer no longer counts as having its rationale to follow. The accepted record \
                itself is never changed. The answer is 200 only once the record is durably \
                stored.\n\n**Caller:** an organisation, the transfer's sender. To any other \
                organisation the transfer does not exist (404 `transfer_not_found`, answered \
                before the body is read). A peer gateway's certificate is answered 403 \
                `not_an_organisation`.",
            parameters: json!([
                {
                    "name": "id",
                    "in": "path",
                    "required": true,
                    "description": "The transfer id from the 202 answer. An id that is not a UUID is \
                        answered 404 `transfer_not_found`.",
                    "schema": {
                        "type": "string",
                        "format": "uuid"
                    }
                }
            ]),
            request_body: json!({
                "required": true,
                "content": {
                    "application/json": {
                        "schema": {
                            "$ref": "#/components/schemas/Rationale"
                        }
                    }
                }
            }),
            answers: json!({
                "200": {
                    "description": "Recorded.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/RationaleRecorded"
                            },
                            "example": {
                                "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d",
                                "status": "rationale_recorded",
                                "recorded_at": "2026-11-22T13:40:12.004518Z"
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "The request is malformed. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::MalformedRequest),
                        "the body is not valid JSON, or the request ended before the end of \
                            its body",
                    )],
                },
                Problems {
                    intro: "No accepted transfer with this id was sent by the caller's organisation.",
                    codes: &[(
                        Code::Api(ProblemCode::TransferNotFound),
                        "the id is unknown, not a UUID, belongs to another sender, or is a \
                            refused or rejected submission; `field` is `id`",
                    )],
                },
                Problems {
                    intro: "The body made no progress for longer than the gateway's idle timeout \
                        (`limits.idle_timeout_secs`) and was abandoned. Nothing was recorded.",
                    codes: &[(Code::Api(ProblemCode::RequestTimeout), "the body stalled")],
                },
                Problems {
                    intro: "The transfer's rationale is already recorded. Nothing was recorded; a \
                        record is never overwritten.",
                    codes: &[(
                        Code::Api(ProblemCode::RationaleAlreadyRecorded),
                        "the urgent transfer was sent with its justification, or its \
                            rationale was added since; `field` is `id`",
                    )],
                },
                Problems {
                    intro: "Too large. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::BodyTooLarge),
                        "the body is larger than the envelope limit \
                            (`limits.max_envelope_bytes`, 64 KiB in the shipped configuration); \
                            `detail` states the limit",
                    )],
                },
                Problems {
                    intro: "The body is not JSON. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::UnsupportedMediaType),
                        "the Content-Type is missing or is not `application/json` (or another \
                            `+json` type)",
                    )],
                },
                Problems {
                    intro: "The body is not a valid rationale, or the transfer was not urgent. \
                        Nothing was recorded.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::InvalidRationale),
                            "fields are missing or invalid; `errors` lists every one (`field` is \
                            the first entry of `errors`)",
                        ),
                        (
                            Code::Api(ProblemCode::TransferNotUrgent),
                            "the transfer was routine, so its justification was required, and \
                            recorded, when it was sent; `field` is `id`",
                        ),
                    ],
                },
                Problems {
                    intro: "The gateway could not record the rationale. The cause is logged for the \
                        operators, never returned.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is unavailable. Nothing was recorded; try again later.",
                    codes: &[(
                        Code::Api(ProblemCode::Unavailable),
                        "the gateway is shutting down and its store no longer accepts writes. \
                            A `Retry-After` header says when to retry",
                    )],
                },
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::HeadersTooLarge,
                Shared::InsufficientStorage,
            ],
        },
        Operation {
            method: "post",
            path: "/v1/decisions",
            caller: CallerKind::Organisation,
            id: "recordDecision",
            tag: "decisions",
            summary: "Record a decision not to share",
            description: "Records a practitioner's decision not to share, with its reasons, the \
                organisations sharing with was considered, and the request it answers: a \
                `decision_declined` record in the transfer log, filed under a new decision id, \
                under the deciding organisation, under each recipient considered and under the \
                hashes of its subject references (so that a subject access request finds it). \
                There is no payload, and nothing is sent to anyone. The answer is 201 only once \
                the record is durably stored. Invalid requests are not recorded (no decision was \
                recorded; correct it and send it again).\n\n**Caller:** an organisation, which \
                is the decider. A peer gateway's certificate is answered 403 \
                `not_an_organisation` before the body is read (nothing is recorded).",
            parameters: json!([
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": false,
                    "description": "Makes a retry safe. 1 to 255 visible ASCII characters (else 400 \
                        `invalid_idempotency_key`). Keys are per organisation, shared with `POST \
                        /v1/transfers`. A request with the same key and the same body (byte for \
                        byte) as an earlier recorded decision from the same organisation gets \
                        the first answer again (201, the same decision id), with the header \
                        `Idempotent-Replayed: true`, and nothing new is recorded. The same key \
                        with a different body, or a key already used for a transfer, is 422 \
                        `idempotency_key_reused`. Requests that were not recorded are not \
                        remembered.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": "^[!-~]+$"
                    }
                }
            ]),
            request_body: json!({
                "required": true,
                "content": {
                    "application/json": {
                        "schema": {
                            "$ref": "#/components/schemas/Decision"
                        }
                    }
                }
            }),
            answers: json!({
                "201": {
                    "description": "Recorded. A replay of an earlier recorded request with the same \
                        Idempotency-Key and body returns the first answer with \
                        `Idempotent-Replayed: true`.",
                    "headers": {
                        "Location": {
                            "$ref": "#/components/headers/DecisionLocation"
                        },
                        "Idempotent-Replayed": {
                            "$ref": "#/components/headers/IdempotentReplayed"
                        }
                    },
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/Declined"
                            },
                            "example": {
                                "decision_id": "0193a7c6-2b3c-7d4e-9f5a-6b7c8d9e0f1a",
                                "status": "declined",
                                "recorded_at": "2026-11-22T10:20:05.412233Z",
                                "recipients": ["northshire-police"],
                                "decision_url": "/v1/decisions/0193a7c6-2b3c-7d4e-9f5a-6b7c8d9e0f1a"
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "The request is malformed. Nothing was recorded.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::MalformedRequest),
                            "the body is not valid JSON, or the request ended before the end of \
                            its body",
                        ),
                        (
                            Code::Api(ProblemCode::InvalidIdempotencyKey),
                            "the Idempotency-Key header is not 1 to 255 visible ASCII characters; \
                            `field` is `Idempotency-Key`",
                        ),
                    ],
                },
                Problems {
                    intro: "The body made no progress for longer than the gateway's idle timeout \
                        (`limits.idle_timeout_secs`) and was abandoned. Nothing was recorded.",
                    codes: &[(Code::Api(ProblemCode::RequestTimeout), "the body stalled")],
                },
                Problems {
                    intro: "Too large. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::BodyTooLarge),
                        "the body is larger than the envelope limit \
                            (`limits.max_envelope_bytes`, 64 KiB in the shipped configuration); \
                            `detail` states the limit",
                    )],
                },
                Problems {
                    intro: "The body is not JSON. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::UnsupportedMediaType),
                        "the Content-Type is missing or is not `application/json` (or another \
                            `+json` type)",
                    )],
                },
                Problems {
                    intro: "The body is JSON but not a valid decision, or the Idempotency-Key was \
                        reused. Nothing was recorded.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::InvalidDecision),
                            "fields are missing or invalid; `errors` lists every one (`field` is \
                            the first entry of `errors`)",
                        ),
                        (
                            Code::Api(ProblemCode::IdempotencyKeyReused),
                            "this organisation already used the Idempotency-Key for a different \
                            request; `field` is `Idempotency-Key`",
                        ),
                    ],
                },
                Problems {
                    intro: "The gateway could not record the decision. The cause is logged for the \
                        operators, never returned.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is unavailable. Nothing was recorded; try again later.",
                    codes: &[(
                        Code::Api(ProblemCode::Unavailable),
                        "the gateway is shutting down and its store no longer accepts writes. \
                            A `Retry-After` header says when to retry (with the same \
                            Idempotency-Key)",
                    )],
                },
            ],
            problem_extras: json!({
                "422": {
                    "content": {
                        "application/problem+json": {
                            "example": {
                                "type": "urn:postern:problem:invalid_decision",
                                "title": "Invalid decision",
                                "status": 422,
                                "detail": "The decision has 2 problems: `recipients[0]` is not an \
                                    organisation registered with this gateway; `reasons` is \
                                    required: why sharing was decided against",
                                "code": "invalid_decision",
                                "field": "recipients[0]",
                                "errors": [
                                    {
                                        "code": "invalid_value",
                                        "field": "recipients[0]",
                                        "message": "`recipients[0]` is not an organisation registered \
                                            with this gateway"
                                    },
                                    {
                                        "code": "missing_field",
                                        "field": "reasons",
                                        "message": "`reasons` is required: why sharing was decided \
                                            against"
                                    }
                                ]
                            }
                        }
                    }
                }
            }),
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::HeadersTooLarge,
                Shared::InsufficientStorage,
            ],
        },
        Operation {
            method: "get",
            path: "/v1/decisions/{id}",
            caller: CallerKind::Organisation,
            id: "getDecision",
            tag: "decisions",
            summary: "A decision not to share, as recorded",
            description: "The `decision_declined` record of a decision not to share, as the transfer log \
                holds it. Only the organisation that decided may read it: to any other \
                organisation it does not exist (404 `decision_not_found`).\n\n**Caller:** an \
                organisation, the decider. A peer gateway's certificate is answered 403 \
                `not_an_organisation`.",
            parameters: json!([
                {
                    "name": "id",
                    "in": "path",
                    "required": true,
                    "description": "The decision id from the 201 answer (`decision_id`, or the `Location` \
                        header). An id that is not a UUID is answered 404 `decision_not_found`.",
                    "schema": {
                        "type": "string",
                        "format": "uuid"
                    }
                }
            ]),
            request_body: json!(null),
            answers: json!({
                "200": {
                    "description": "The recorded decision.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/DeclinedRecord"
                            },
                            "example": {
                                "kind": "decision_declined",
                                "decision_id": "0193a7c6-2b3c-7d4e-9f5a-6b7c8d9e0f1a",
                                "at": "2026-11-22T10:20:05.412233Z",
                                "sender": {
                                    "org": "northshire-cc",
                                    "certificate": "sha256:5f1c0b4e8e3a0d4a6f6a1f0e2c9b7d3a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b"
                                },
                                "recipients": ["northshire-police"],
                                "purpose": "child-protection-s47",
                                "reasons": "Sharing the strategy notes now would alert the household to \
                                    the enquiry; the police will be told at the strategy meeting \
                                    on Friday.",
                                "practitioner": {
                                    "name": "Sam Patel",
                                    "role": "Social worker",
                                    "contact": "sam.patel@northshire.gov.example"
                                },
                                "request": {
                                    "reference": "REQ-2026-0042",
                                    "requested": "Strategy discussion notes"
                                },
                                "data_categories": ["personal", "special_category"],
                                "subject_ref_hashes": [
                                    "8d2f0c6b1a9e4f3d7c5b2a1e0f9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d",
                                    "1b3d5f7a9c2e4f6a8b0d1c3e5f7a9b2d4f6a8c0e1b3d5f7a9c2e4f6a8b0d1c3e"
                                ]
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "No decision with this id was recorded by the caller's organisation.",
                    codes: &[(
                        Code::Api(ProblemCode::DecisionNotFound),
                        "the id is unknown, not a UUID, or belongs to another organisation's \
                            decision (or to a transfer); `field` is `id`",
                    )],
                },
                Problems {
                    intro: "The gateway could not read the decision. The cause is logged for the \
                        operators, never returned.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is unavailable; try again shortly.",
                    codes: &[(
                        Code::Api(ProblemCode::Unavailable),
                        "the store could not run the lookup, as when the gateway is shutting \
                            down. A `Retry-After` header says when to retry",
                    )],
                },
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::HeadersTooLarge,
            ],
        },
        Operation {
            method: "post",
            path: "/v1/inbound",
            caller: CallerKind::PeerGateway,
            id: "deliverInbound",
            tag: "inbound",
            summary: "Deliver a transfer to one of this gateway's organisations",
            description: "A peer gateway delivers one transfer for one organisation this gateway serves. \
                The transfer was accepted, decided on and recorded by the sending gateway; here \
                it is stored in the recipient organisation's inbox as it arrives, still sealed \
                (the envelope and payload are sealed to the recipient's own age keys, so this \
                gateway cannot open them), and the recipient downloads and acknowledges it \
                through `/v1/inbox`. Only the `meta` part is read in clear.\n\nThis is a \
                contract: an agency can implement it to receive from Postern gateways, or use it \
                to deliver to one, without running Postern. Postern's delivery worker uses it \
                for recipients whose channel is `https` (see *What a sending Postern sends* \
                below).\n\n**Caller:** a peer gateway registered with this gateway (its \
                `peers`), delivering for one of the organisations its registration lists \
                (`senders`). An organisation's certificate is answered 403 `not_a_peer` before \
                anything is read.\n\n**The request** is `multipart/form-data` with exactly these \
                parts, in this order, and nothing after them:\n\n1. `meta` (JSON, schema \
                `InboundMeta`, at most 64 KiB): what travels in clear: the transfer id, the \
                recipient, the sending organisation and its name, the purpose, the normalised \
                marking and the date after which the recipient must destroy it. Nothing about \
                the person it concerns. It is checked before anything else is read, in this \
                order, and the first check that fails is the answer:\n   - not a valid \
                `InboundMeta` (not JSON, a member missing, unknown or of the wrong form): 422 \
                `invalid_inbound`, `field` `meta`;\n   - the caller's certificate no longer \
                identifies a registered peer gateway (the registry was reloaded since the \
                connection was made): 403 `not_a_peer`;\n   - `sender` is not one of the \
                organisations the peer is registered to deliver for (its `senders`): 403 \
                `sender_not_permitted`, `field` `meta.sender`;\n   - `recipient` does not \
                receive through this gateway's inbox (it is not a registered organisation here, \
                or its endpoint's channel is neither `inbox` nor `https`: an `email` recipient, \
                or one without an endpoint, is refused): 422 `recipient_not_here`, `field` \
                `meta.recipient`;\n   - `marking` is not a protective marking under this \
                gateway's scheme (empty, unknown, or with a descriptor this gateway does not \
                know): 422 `invalid_inbound`, `field` `meta.marking`;\n   - `marking` is SECRET \
                or TOP SECRET: 403 `marking_above_gateway`; above the recipient's clearance \
                here: 403 `marking_above_clearance`; above the ceiling of the recipient's \
                channel here (its endpoint's `max_marking`): 403 `marking_above_channel`; \
                `field` `meta.marking` each time. A receiving gateway is the last place that can \
                refuse what its organisation must not hold;\n   - `purpose` is not a purpose \
                configured at this gateway, unless the peer's registration takes purposes as \
                given (`purposes_as_given = true` in `peers.toml`; off by default): 403 \
                `unknown_purpose`, `field` `meta.purpose`;\n   - `retain_until` is not a date \
                (YYYY-MM-DD), is not in the future, or is further ahead than this gateway holds \
                deliveries for (`limits.inbound_max_retain_days`, 3650 days in the shipped \
                configuration): 422 `invalid_inbound`, `field` `meta.retain_until`;\n   - this \
                transfer is already held for this recipient and the repeat describes it \
                differently (another `sender`, `purpose`, `marking` or `retain_until`, or \
                another peer bringing it; `sender_name` may differ): 409 `inbound_conflict`, \
                `field` `meta`.\n\n   In each case the envelope and payload are not read and \
                nothing is kept. Every refusal after `meta` is read (all of the above but an \
                invalid `meta`) is recorded in this gateway's transfer log as an \
                `inbound_refused` record: the peer and its certificate, what `meta` said, the \
                rule and the code.\n2. `envelope` (at most 1 MiB, else 413 `payload_too_large`): \
                the envelope for the recipient, a `RecipientEnvelope` as JSON, sealed with age \
                (binary format) to the recipient's age recipients.\n3. `payload`: the payload, \
                sealed with age (binary format) to the recipient's age recipients, streamed. Its \
                bytes are stored exactly as received, and digested (SHA-256) as they arrive. A \
                payload larger than this gateway accepts is 413 `payload_too_large`; one that \
                stops arriving for longer than the idle timeout, 408 `request_timeout`; one that \
                cannot be read to its end (the body ends early, the connection fails), 400 \
                `malformed_request`; a part after it, 400 `unexpected_part`. In each case \
                `field` is `payload` and nothing is kept.\n\nThe parts' Content-Type and file \
                name are not used (Postern sends `application/json` for `meta` and \
                `application/octet-stream` for the others). A missing part, a part out of order \
                or a part with any other name is 400 `unexpected_part`.\n\n**Idempotency.** \
                Delivery is at least once, so the same delivery may arrive again (after a \
                timeout, a lost answer or a restart). Deliveries are identified by \
                (`transfer_id`, `recipient`): the first is stored and answered 201; a repeat \
                that describes the delivery as the first did is read to its end but stored only \
                once (the inbox keeps the first delivery's bytes), and is answered 200 with the \
                first receipt's `receipt_id` and `received_at` but the `sha256` of the payload \
                bytes in *this* request, so that the sender can check that what it has just sent \
                arrived intact. A repeat that describes it differently is refused with 409 \
                `inbound_conflict` and recorded; it is never answered with the first \
                receipt.\n\n**What a sending Postern sends.** An implementation receiving from \
                Postern must accept:\n\n- HTTP/1.1 (never HTTP/2; no ALPN protocol is offered) \
                over TLS 1.2 or 1.3, one `POST` per delivery, on connections kept alive and \
                reused.\n- A request body sent with `Transfer-Encoding: chunked` and no \
                `Content-Length`: the payload is resealed for the recipient as it is sent, so \
                its length is not known in advance.\n- The sending gateway's client certificate: \
                the one its configuration names in `tls.client_certificate` (with \
                `tls.client_private_key`), or, when those are empty, its server certificate \
                (`tls.certificate`), which must then also allow TLS client authentication \
                (extended key usage `clientAuth`, as the gateway certificates `postern pki` \
                issues do). The receiving side must trust the CA that issued it and recognise it \
                as the peer's. In turn the sender verifies the receiving endpoint's certificate, \
                for the host name in the endpoint URL, against the CA file configured for that \
                endpoint (never the system roots).\n- A time limit: each attempt, from \
                connecting until the whole answer has been read, may take \
                `delivery.attempt_timeout_secs` (120 s in the shipped configuration) plus the \
                time the payload takes to send at `delivery.attempt_min_rate_kib` (1024 KiB/s in \
                the shipped configuration) for the payload's size as submitted: a 2 GiB payload \
                gets 120 s + 2048 s. An attempt that has not finished by then is abandoned (the \
                connection is closed) and counts as a temporary failure, so it is retried; the \
                retry is a repeat. Answer as soon as the body has ended and the delivery is \
                stored.\n\n**How a sending Postern treats the answer:**\n\n- 200 or 201 with a \
                `Receipt` whose `sha256` equals the SHA-256 of the sealed payload bytes it sent: \
                delivered. The receipt is recorded and shown to the sender \
                (`RecipientStatus.receipt`). Nothing else counts as delivered.\n- 200 or 201 \
                without a valid `Receipt`, or with a different `sha256`: a temporary failure.\n- \
                408, 429, 5xx, or any other 2xx or 3xx (for example 202, or a redirect, which is \
                not followed): a temporary failure, retried with exponential backoff until the \
                delivery's lifetime ends (5 days in the shipped configuration); then the \
                delivery is dead.\n- Any other 4xx: a permanent failure. The delivery is dead at \
                once, with the status and the problem's `code` (if the body has one) as the \
                reason.\n- A connection failure or an attempt that runs out of time is \
                temporary; a TLS certificate failure (the endpoint's certificate does not verify \
                against its CA, or the endpoint refuses the sender's certificate) is permanent.",
            parameters: json!([]),
            request_body: json!({
                "required": true,
                "description": "Exactly three parts, in order: `meta` (JSON), `envelope` (the sealed \
                    envelope) and `payload` (the sealed payload).",
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["meta", "envelope", "payload"],
                            "properties": {
                                "meta": {
                                    "$ref": "#/components/schemas/InboundMeta"
                                },
                                "envelope": {
                                    "type": "string",
                                    "format": "binary",
                                    "maxLength": 1048576,
                                    "description": "The `RecipientEnvelope` JSON, sealed with age (binary \
                                        format, not armoured) to the recipient's age recipients. \
                                        Stored as received; this gateway cannot open it. At most \
                                        1 MiB (else 413 `payload_too_large`)."
                                },
                                "payload": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "The payload, sealed with age (binary format) to the \
                                        recipient's age recipients, streamed. Stored as \
                                        received. The receipt's `sha256` is the SHA-256 of \
                                        exactly these bytes."
                                }
                            }
                        },
                        "encoding": {
                            "meta": {
                                "contentType": "application/json"
                            },
                            "envelope": {
                                "contentType": "application/octet-stream"
                            },
                            "payload": {
                                "contentType": "application/octet-stream"
                            }
                        }
                    }
                }
            }),
            answers: json!({
                "200": {
                    "description": "A repeat: this transfer already reached this recipient here. Nothing new \
                        was stored. The receipt is the first delivery's (`receipt_id`, \
                        `received_at`), with the `sha256` of the payload bytes in this request.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/Receipt"
                            },
                            "example": {
                                "receipt_id": "0193a7c5-0a1b-7c2d-8e3f-4a5b6c7d8e9f",
                                "sha256": "3b5d3c7d207e37dceeedd301e35e2e58f3a8c9f4e1b2a7d6c5e4f3a2b1c0d9e8",
                                "received_at": "2026-11-22T10:15:30.998120Z"
                            }
                        }
                    }
                },
                "201": {
                    "description": "Stored in the recipient's inbox, durably, and recorded \
                        (`inbox_received`).",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/Receipt"
                            },
                            "example": {
                                "receipt_id": "0193a7c5-0a1b-7c2d-8e3f-4a5b6c7d8e9f",
                                "sha256": "3b5d3c7d207e37dceeedd301e35e2e58f3a8c9f4e1b2a7d6c5e4f3a2b1c0d9e8",
                                "received_at": "2026-11-22T10:15:30.998120Z"
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "The request could not be read. Nothing was kept. A sending Postern \
                        treats this as permanent.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::MalformedRequest),
                            "the multipart body could not be read before the payload, or the \
                            `meta` or `envelope` part could not be read to its end (no `field`); \
                            or the payload could not be read to its end, as when the body ends \
                            early or the connection fails (`field` is `payload`)",
                        ),
                        (
                            Code::Api(ProblemCode::UnexpectedPart),
                            "the parts are not `meta`, `envelope` and `payload` in that order: a \
                            part is missing, out of order or has any other name (no `field`); or \
                            a part follows `payload` (`field` is `payload`)",
                        ),
                    ],
                },
                Problems {
                    intro: "The caller may not make this delivery, or this gateway will not hold it. \
                        Nothing was kept. An organisation's certificate is not recorded; every \
                        other refusal here is recorded (`inbound_refused`). A sending Postern \
                        treats this as permanent.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::NotAPeer),
                            "the client certificate is an organisation's (organisations submit to \
                            `POST /v1/transfers`), answered before anything is read; or it no \
                            longer identifies a registered peer gateway (the registry was \
                            reloaded since the connection was made), answered once `meta` is \
                            read",
                        ),
                        (
                            Code::Api(ProblemCode::SenderNotPermitted),
                            "the peer gateway is not registered to deliver for `meta.sender` (its \
                            `senders` here do not list it); `field` is `meta.sender`. This \
                            gateway's operators must add the sender to the peer's entry",
                        ),
                        (
                            Code::Refused(Rule::MarkingWithinGateway),
                            "`meta.marking` is SECRET or TOP SECRET; `field` is `meta.marking`",
                        ),
                        (
                            Code::Refused(Rule::MarkingWithinClearance),
                            "`meta.marking` is above the recipient's clearance at this gateway; \
                            `field` is `meta.marking`",
                        ),
                        (
                            Code::Refused(Rule::MarkingWithinChannel),
                            "`meta.marking` is above the ceiling of the recipient's channel at \
                            this gateway; `field` is `meta.marking`",
                        ),
                        (
                            Code::Refused(Rule::PurposeKnown),
                            "`meta.purpose` is not configured at this gateway and the peer's \
                            registration does not take purposes as given; `field` is \
                            `meta.purpose`",
                        ),
                    ],
                },
                Problems {
                    intro: "The payload stopped arriving for longer than this gateway's idle timeout \
                        (`limits.idle_timeout_secs`, 60 seconds in the shipped configuration). \
                        Nothing was kept. A sending Postern retries.",
                    codes: &[(
                        Code::Api(ProblemCode::RequestTimeout),
                        "the payload, or the end of the body after it, stalled; `field` is \
                            `payload`",
                    )],
                },
                Problems {
                    intro: "This transfer is already held here for this recipient, and this repeat \
                        describes it differently: another `sender`, `purpose`, `marking` or \
                        `retain_until`, or another peer gateway bringing it (`sender_name` may \
                        differ). Nothing was kept, the first delivery stays as it was, and the \
                        refusal is recorded (`inbound_refused`). A sending Postern treats this \
                        as permanent.",
                    codes: &[(
                        Code::Api(ProblemCode::InboundConflict),
                        "a repeat of a delivery already held whose description differs from \
                            the first; `field` is `meta`, and `detail` names the members that \
                            differ",
                    )],
                },
                Problems {
                    intro: "A part is larger than this gateway accepts. Nothing was kept. A sending \
                        Postern treats this as permanent.",
                    codes: &[(
                        Code::Api(ProblemCode::PayloadTooLarge),
                        "the `meta` part is larger than 64 KiB or the `envelope` part larger \
                            than 1 MiB (no `field`); or the `payload` part is larger than this \
                            gateway's payload limit (`limits.max_payload_bytes`, 2 GiB in the \
                            shipped configuration) plus 1 MiB for age's framing (`field` is \
                            `payload`)",
                    )],
                },
                Problems {
                    intro: "The request is not `multipart/form-data` with a boundary. Nothing was \
                        read.",
                    codes: &[(
                        Code::Api(ProblemCode::UnsupportedMediaType),
                        "the Content-Type is missing or is not multipart with a boundary",
                    )],
                },
                Problems {
                    intro: "The `meta` part cannot be accepted. The envelope and payload were not \
                        read; nothing was kept; a valid `meta` refused here is recorded \
                        (`inbound_refused`). A sending Postern treats this as permanent.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::InvalidInbound),
                            "`meta` is not a valid `InboundMeta`: not JSON, a member missing, a \
                            member `InboundMeta` does not define, or a member of the wrong form \
                            (`transfer_id` not a UUID, `recipient` or `sender` not an \
                            organisation id); `field` is `meta`. Or `marking` is not a \
                            protective marking under this gateway's scheme; `field` is \
                            `meta.marking`. Or `retain_until` is not a date (YYYY-MM-DD), not in \
                            the future, or further ahead than `limits.inbound_max_retain_days`; \
                            `field` is `meta.retain_until`",
                        ),
                        (
                            Code::Api(ProblemCode::RecipientNotHere),
                            "`recipient` does not receive through this gateway's inbox: it is not \
                            a registered organisation of this gateway, or its endpoint's channel \
                            is `email`, or it has no endpoint (only organisations whose channel \
                            is `inbox` or `https` are served here); `field` is `meta.recipient`",
                        ),
                    ],
                },
                Problems {
                    intro: "The gateway could not store the delivery. Nothing was kept; the cause is \
                        logged for the operators, never returned. A sending Postern retries.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is shutting down, or busy. Nothing was kept. A sending \
                        Postern retries.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::Unavailable),
                            "the gateway is shutting down and its store no longer accepts writes, \
                            so the delivery was not stored. A `Retry-After` header says when to \
                            retry",
                        ),
                        (
                            Code::Api(ProblemCode::Busy),
                            "the gateway is receiving as many uploads as its memory cap allows \
                            (`limits.upload_memory_bytes`) and none finished within \
                            `limits.upload_memory_wait_secs`; nothing of the request was read or \
                            kept, and it is not recorded. Retry after `Retry-After` seconds",
                        ),
                    ],
                },
            ],
            problem_extras: json!({
                "403": {
                    "content": {
                        "application/problem+json": {
                            "example": {
                                "type": "urn:postern:problem:sender_not_permitted",
                                "title": "Sender not permitted",
                                "status": 403,
                                "detail": "Your gateway is not registered to deliver for \
                                    `westshire-cc`; ask this gateway's operators to add it to \
                                    your peer entry's `senders`.",
                                "code": "sender_not_permitted",
                                "field": "meta.sender"
                            }
                        }
                    }
                },
                "422": {
                    "content": {
                        "application/problem+json": {
                            "example": {
                                "type": "urn:postern:problem:recipient_not_here",
                                "title": "Recipient not served here",
                                "status": 422,
                                "detail": "`westshire-police` does not receive through this gateway's \
                                    inbox.",
                                "code": "recipient_not_here",
                                "field": "meta.recipient"
                            }
                        }
                    }
                }
            }),
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::HeadersTooLarge,
                Shared::InsufficientStorage,
            ],
        },
        Operation {
            method: "get",
            path: "/v1/inbox",
            caller: CallerKind::Organisation,
            id: "listInbox",
            tag: "inbox",
            summary: "List the caller's inbox",
            description: "What was delivered here for the calling organisation (by peer gateways, and by \
                this gateway's own delivery worker for organisations whose channel is `inbox`), \
                oldest first. By default only the items not yet acknowledged; with `all=true`, \
                acknowledged items too (their payload is gone).\n\n**Caller:** an organisation: \
                the inbox is its own. A peer gateway's certificate is answered 403 \
                `not_an_organisation`.",
            parameters: json!([
                {
                    "name": "all",
                    "in": "query",
                    "required": false,
                    "description": "`true` to include acknowledged items. `true` or `false` only: any other \
                        value is answered 400 by the HTTP framework, with a plain-text body \
                        rather than a problem document.",
                    "schema": {
                        "type": "boolean",
                        "default": false
                    }
                }
            ]),
            request_body: json!(null),
            answers: json!({
                "200": {
                    "description": "The caller's inbox items.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/InboxList"
                            },
                            "example": {
                                "items": [
                                    {
                                        "id": "0193a7c5-0a1b-7c2d-8e3f-4a5b6c7d8e9f",
                                        "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d",
                                        "sender": "northshire-cc",
                                        "sender_name": "Northshire County Council Children's Services",
                                        "purpose": "child-protection-s47",
                                        "marking": "OFFICIAL-SENSITIVE PERSONAL",
                                        "retain_until": "2027-11-22",
                                        "received_at": "2026-11-22T10:15:30.998120Z",
                                        "payload_size": 48421,
                                        "payload_sha256": "3b5d3c7d207e37dceeedd301e35e2e58f3a8c9f4e1b2a7d6c5e4f3a2b1c0d9e8",
                                        "acknowledged_at": null
                                    }
                                ]
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "The query string is not valid (`all` is neither `true` nor `false`), or \
                        the request's head is not valid HTTP. Nothing was read.",
                    codes: &[(
                        Code::Api(ProblemCode::MalformedRequest),
                        "the query string or the request head cannot be read; `field` is \
                            `all` for the query string",
                    )],
                },
                Problems {
                    intro: "The gateway could not read the inbox. The cause is logged for the \
                        operators, never returned.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is shutting down; try again shortly.",
                    codes: &[(
                        Code::Api(ProblemCode::Unavailable),
                        "the store could not run the lookup, as when the gateway is shutting \
                            down. A `Retry-After` header says when to retry",
                    )],
                },
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::HeadersTooLarge,
            ],
        },
        Operation {
            method: "get",
            path: "/v1/inbox/{id}",
            caller: CallerKind::Organisation,
            id: "getInboxItem",
            tag: "inbox",
            summary: "One inbox item, with its sealed envelope",
            description: "The item and its envelope as delivered: a `RecipientEnvelope` (the whole record \
                of who, why, what and on what basis, with the subject references in clear) \
                sealed with age to the organisation's age recipients, base64-encoded. Available \
                after acknowledgement too.\n\n**Caller:** an organisation: the item must be \
                addressed to it. A peer gateway's certificate is answered 403 \
                `not_an_organisation`.",
            parameters: json!([
                {
                    "$ref": "#/components/parameters/InboxItemId"
                }
            ]),
            request_body: json!(null),
            answers: json!({
                "200": {
                    "description": "The item and its sealed envelope.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/InboxEntry"
                            },
                            "example": {
                                "id": "0193a7c5-0a1b-7c2d-8e3f-4a5b6c7d8e9f",
                                "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d",
                                "sender": "northshire-cc",
                                "sender_name": "Northshire County Council Children's Services",
                                "purpose": "child-protection-s47",
                                "marking": "OFFICIAL-SENSITIVE PERSONAL",
                                "retain_until": "2027-11-22",
                                "received_at": "2026-11-22T10:15:30.998120Z",
                                "payload_size": 48421,
                                "payload_sha256": "3b5d3c7d207e37dceeedd301e35e2e58f3a8c9f4e1b2a7d6c5e4f3a2b1c0d9e8",
                                "acknowledged_at": null,
                                "envelope_age_base64": "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSAuLi4K"
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "The gateway could not read the item. The cause is logged for the \
                        operators, never returned.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is shutting down; try again shortly.",
                    codes: &[(
                        Code::Api(ProblemCode::Unavailable),
                        "the store could not run the lookup, as when the gateway is shutting \
                            down. A `Retry-After` header says when to retry",
                    )],
                },
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::InboxItemNotFound,
                Shared::HeadersTooLarge,
            ],
        },
        Operation {
            method: "get",
            path: "/v1/inbox/{id}/payload",
            caller: CallerKind::Organisation,
            id: "getInboxPayload",
            tag: "inbox",
            summary: "Download an inbox item's sealed payload",
            description: "Streams the payload exactly as delivered: an age file (binary format) sealed to \
                the organisation's age recipients, `payload_size` bytes with SHA-256 \
                `payload_sha256`. Decrypt it with the organisation's age identity (e.g. `age \
                --decrypt -i key.txt`). Once the item is acknowledged the payload is deleted \
                (410 `payload_gone`).\n\n**Caller:** an organisation: the item must be addressed \
                to it. A peer gateway's certificate is answered 403 `not_an_organisation`.",
            parameters: json!([
                {
                    "$ref": "#/components/parameters/InboxItemId"
                }
            ]),
            request_body: json!(null),
            answers: json!({
                "200": {
                    "description": "The sealed payload (an age file), streamed.",
                    "content": {
                        "application/octet-stream": {
                            "schema": {
                                "type": "string",
                                "format": "binary",
                                "description": "An age file."
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "The item was acknowledged and its payload deleted. The item and its \
                        envelope remain (`GET /v1/inbox/{id}`).",
                    codes: &[(
                        Code::Api(ProblemCode::PayloadGone),
                        "the payload was deleted when the item was acknowledged",
                    )],
                },
                Problems {
                    intro: "The gateway could not read the payload (for example, its file is \
                        missing). The cause is logged for the operators, never returned.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is shutting down; try again shortly.",
                    codes: &[(
                        Code::Api(ProblemCode::Unavailable),
                        "the store could not run the lookup, as when the gateway is shutting \
                            down. A `Retry-After` header says when to retry",
                    )],
                },
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::InboxItemNotFound,
                Shared::HeadersTooLarge,
            ],
        },
        Operation {
            method: "post",
            path: "/v1/inbox/{id}/ack",
            caller: CallerKind::Organisation,
            id: "acknowledgeInboxItem",
            tag: "inbox",
            summary: "Acknowledge an inbox item",
            description: "Says that the organisation has the item: its sealed payload is deleted (download \
                and check it first), the item leaves the default listing, and the \
                acknowledgement is recorded in the transfer log (`inbox_acknowledged`). The \
                item's metadata and sealed envelope remain. Acknowledging again is harmless and \
                answers with the first acknowledgement's time. No request body.\n\n**Caller:** \
                an organisation: the item must be addressed to it. A peer gateway's certificate \
                is answered 403 `not_an_organisation`.",
            parameters: json!([
                {
                    "$ref": "#/components/parameters/InboxItemId"
                }
            ]),
            request_body: json!(null),
            answers: json!({
                "200": {
                    "description": "Acknowledged (now or earlier).",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": "#/components/schemas/Acknowledged"
                            },
                            "example": {
                                "id": "0193a7c5-0a1b-7c2d-8e3f-4a5b6c7d8e9f",
                                "acknowledged_at": "2026-11-22T11:02:44.310775Z"
                            }
                        }
                    }
                }
            }),
            problems: &[
                Problems {
                    intro: "The gateway could not record the acknowledgement. The cause is logged \
                        for the operators, never returned.",
                    codes: &[(
                        Code::Api(ProblemCode::InternalError),
                        "an internal failure (storage)",
                    )],
                },
                Problems {
                    intro: "The gateway is shutting down; try again shortly.",
                    codes: &[(
                        Code::Api(ProblemCode::Unavailable),
                        "the gateway is shutting down and its store no longer accepts writes: \
                            the item was not acknowledged and its payload is kept. A \
                            `Retry-After` header says when to retry",
                    )],
                },
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::InboxItemNotFound,
                Shared::HeadersTooLarge,
                Shared::InsufficientStorage,
            ],
        },
    ]
}

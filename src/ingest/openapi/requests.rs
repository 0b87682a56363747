//! The operations on requests for information, as the OpenAPI document describes them: making
//! one, following them (both parties), and withdrawing one. Answering and declining are not
//! operations of their own: a share or a decision not to share names the request. And the
//! other half of closing the loop: a recipient's feedback on a transfer.

use serde_json::{Value, json};

use super::prose::Shared;
use super::{CallerKind, Code, Operation, Problems};
use crate::domain::policy::Rule;
use crate::ingest::problem::ProblemCode;

const ID: &str = "0193a7c6-2b3c-7d4e-9f5a-6b7c8d9e0f1a";

/// The request id in a path.
fn id_parameter() -> Value {
    json!([{
        "name": "id",
        "in": "path",
        "required": true,
        "description": "The request id from the 201 answer (`request_id`, or the `Location` \
            header). An id that is not a UUID is answered 404 `request_not_found`.",
        "schema": { "type": "string", "format": "uuid" }
    }])
}

const MALFORMED: Problems = Problems {
    intro: "The request is malformed. Nothing was recorded.",
    codes: &[(
        Code::Api(ProblemCode::MalformedRequest),
        "the body is not valid JSON, or the request ended before the end of its body",
    )],
};

const STALLED: Problems = Problems {
    intro: "The body made no progress for longer than the gateway's idle timeout \
        (`limits.idle_timeout_secs`) and was abandoned. Nothing was recorded.",
    codes: &[(Code::Api(ProblemCode::RequestTimeout), "the body stalled")],
};

const TOO_LARGE: Problems = Problems {
    intro: "Too large. Nothing was recorded.",
    codes: &[(
        Code::Api(ProblemCode::BodyTooLarge),
        "the body is larger than the envelope limit (`limits.max_envelope_bytes`); `detail` \
        states the limit",
    )],
};

const NOT_JSON: Problems = Problems {
    intro: "The body is not JSON. Nothing was recorded.",
    codes: &[(
        Code::Api(ProblemCode::UnsupportedMediaType),
        "the Content-Type is missing or is not `application/json` (or another `+json` type)",
    )],
};

const INTERNAL: Problems = Problems {
    intro: "The gateway could not complete the operation. The cause is logged for the \
        operators, never returned.",
    codes: &[(
        Code::Api(ProblemCode::InternalError),
        "an internal failure (storage)",
    )],
};

const UNAVAILABLE: Problems = Problems {
    intro: "The gateway is unavailable. Nothing was recorded; try again later.",
    codes: &[(
        Code::Api(ProblemCode::Unavailable),
        "the gateway is shutting down and its store no longer accepts work. A `Retry-After` \
        header says when to retry",
    )],
};

const NOT_FOUND: Problems = Problems {
    intro: "No such request for this organisation.",
    codes: &[(
        Code::Api(ProblemCode::RequestNotFound),
        "the id is unknown, not a UUID, or names a request the caller's organisation neither \
        made nor was asked; `field` is `id`",
    )],
};

pub(super) fn operations() -> Vec<Operation> {
    vec![
        Operation {
            method: "post",
            path: "/v1/requests",
            caller: CallerKind::Organisation,
            id: "makeRequest",
            tag: "requests",
            summary: "Ask another organisation for information",
            description: "Makes a request for information, in writing, to another \
                organisation (the holder): what is requested, why, who it is about, for which \
                purpose and on which lawful basis. Policy decides it as it would a share between \
                the two (an agreement in force between them that permits the purpose and the \
                basis; the requester must have a delivery endpoint, since the answer comes back \
                as a share). A refusal is answered 403 with the rule and recorded \
                (`request_refused`, filed under the `request_id` the answer gives).\n\n\
                A request made is recorded (`request_made`) and its clock starts: it is due by \
                the end of the fifteenth working day (`requests.answer_within_working_days`, or \
                the agreement's own `answer_within_working_days`) after the day it was received, \
                a day in the United Kingdom, skipping weekends and the bank holidays of the \
                configured calendar; an urgent request is due `requests.urgent_answer_within_hours` \
                (24) hours after it was received. The holder answers it by sharing a transfer \
                whose envelope names it (`request.request_id`, `request.answer` `in_full` or \
                `in_part`), or declines it by recording a decision not to share that names it. \
                The subject references are kept as keyed hashes in the transfer log, and sealed \
                for the holder to read while the request is open.\n\n**Caller:** an \
                organisation, which is the requester. A peer gateway's certificate is answered 403 \
                `not_an_organisation` before the body is read (nothing is recorded).",
            parameters: json!([{
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "Makes a retry safe, as on `POST /v1/decisions`: the same key and \
                    body get the first answer again (201, or the recorded 403), with \
                    `Idempotent-Replayed: true`; the same key with another body is 422 \
                    `idempotency_key_reused`.",
                "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" }
            }]),
            request_body: json!({
                "required": true,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/InformationRequest" } } }
            }),
            answers: json!({
                "201": {
                    "description": "Made, recorded and durable; the clock has started.",
                    "headers": {
                        "Location": { "description": "`/v1/requests/{id}`.", "schema": { "type": "string" } },
                        "Idempotent-Replayed": { "$ref": "#/components/headers/IdempotentReplayed" }
                    },
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/RequestMade" },
                        "example": {
                            "request_id": ID,
                            "status": "open",
                            "received_at": "2026-12-03T10:20:05.412233Z",
                            "holder": "northshire-cc",
                            "agreement": "northshire-safeguarding-isp",
                            "due_at": "2026-12-24T23:59:59Z",
                            "due_date": "2026-12-24",
                            "request_url": format!("/v1/requests/{ID}")
                        }
                    } }
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
                            "the Idempotency-Key header is not 1 to 255 visible ASCII \
                            characters; `field` is `Idempotency-Key`",
                        ),
                    ],
                },
                Problems {
                    intro: "Refused by policy: the two organisations may not exchange for this \
                        purpose on this basis. Recorded (`request_refused`); `request_id` is \
                        the id it is recorded under. `field` is `holder`, `purpose` or \
                        `lawful_basis` where the rule concerns one. The same status with code \
                        `not_an_organisation` (not a policy refusal, and not recorded) answers a \
                        peer gateway that calls this operation.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::NotAnOrganisation),
                            "the client certificate is a peer gateway's; nothing was read or \
                            recorded",
                        ),
                        (
                            Code::Refused(Rule::SenderRegistered),
                            "the requester is not a registered organisation",
                        ),
                        (
                            Code::Refused(Rule::PurposeKnown),
                            "`purpose` is not a configured purpose",
                        ),
                        (
                            Code::Refused(Rule::LawfulBasisFitsPurpose),
                            "`lawful_basis` is not one the purpose allows",
                        ),
                        (
                            Code::Refused(Rule::RecipientRegistered),
                            "`holder` is not a registered organisation",
                        ),
                        (
                            Code::Refused(Rule::RecipientHasEndpoint),
                            "the requester has no delivery endpoint, so no answer could reach \
                            it (no `field`)",
                        ),
                        (
                            Code::Refused(Rule::AgreementExists),
                            "the two are not parties to a common agreement",
                        ),
                        (
                            Code::Refused(Rule::AgreementInForce),
                            "their agreement is not in force today",
                        ),
                        (
                            Code::Refused(Rule::PurposeInAgreement),
                            "the agreement does not permit the purpose",
                        ),
                        (
                            Code::Refused(Rule::LawfulBasisInAgreement),
                            "the agreement does not permit the lawful basis",
                        ),
                    ],
                },
                STALLED,
                TOO_LARGE,
                NOT_JSON,
                Problems {
                    intro: "The body is JSON but not a valid request, or the Idempotency-Key was \
                        reused. Nothing was recorded.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::InvalidInfoRequest),
                            "fields are missing or invalid; `errors` lists every one (`field` \
                            is the first entry of `errors`)",
                        ),
                        (
                            Code::Api(ProblemCode::IdempotencyKeyReused),
                            "this organisation already used the Idempotency-Key for a \
                            different request; `field` is `Idempotency-Key`",
                        ),
                    ],
                },
                INTERNAL,
                UNAVAILABLE,
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::HeadersTooLarge,
                Shared::InsufficientStorage,
            ],
        },
        Operation {
            method: "get",
            path: "/v1/requests",
            caller: CallerKind::Organisation,
            id: "listRequests",
            tag: "requests",
            summary: "The requests an organisation was asked, or made",
            description: "The caller's requests for information, newest first (at most 1000): \
                by default those it was asked (`side=received`), or those it made \
                (`side=made`); with `open=true`, only those not yet answered in full, declined \
                or withdrawn. Each has its status at the moment asked: `overdue` when open or \
                partly answered after its due instant.\n\n**Caller:** an organisation. A peer \
                gateway's certificate is answered 403 `not_an_organisation`.",
            parameters: json!([
                {
                    "name": "side",
                    "in": "query",
                    "required": false,
                    "description": "`received` (the default) or `made`.",
                    "schema": { "type": "string", "enum": ["received", "made"] }
                },
                {
                    "name": "open",
                    "in": "query",
                    "required": false,
                    "description": "`true`: only the requests still to be answered.",
                    "schema": { "type": "string", "enum": ["true", "false"] }
                }
            ]),
            request_body: json!(null),
            answers: json!({
                "200": {
                    "description": "The requests.",
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/RequestList" },
                        "example": { "requests": [{
                            "request_id": ID,
                            "status": "overdue",
                            "requester": "northshire-police",
                            "holder": "northshire-cc",
                            "purpose": "child-protection-s47",
                            "urgency": "routine",
                            "received_at": "2026-12-03T10:20:05.412233Z",
                            "due_at": "2026-12-24T23:59:59Z",
                            "due_date": "2026-12-24",
                            "request_url": format!("/v1/requests/{ID}")
                        }] }
                    } }
                }
            }),
            problems: &[
                Problems {
                    intro: "The query is not understood.",
                    codes: &[(
                        Code::Api(ProblemCode::MalformedRequest),
                        "`side` or `open` has another value, or the query has another \
                        member; `field` names it",
                    )],
                },
                INTERNAL,
                UNAVAILABLE,
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
            path: "/v1/requests/{id}",
            caller: CallerKind::Organisation,
            id: "getRequest",
            tag: "requests",
            summary: "A request for information, and what answered it",
            description: "The request as both its organisations see it: what was asked and \
                why, its clock and status, and the shares that answered it (each a transfer id \
                the holder follows at `/v1/transfers/{id}`, whose status names the request back) \
                or the decision that declined it. The subject references are shown while the \
                request is open; once it is closed only their keyed hashes are kept. To any \
                third organisation the request does not exist.\n\n**Caller:** an organisation, \
                the requester or the holder. A peer gateway's certificate is answered 403 \
                `not_an_organisation`.",
            parameters: id_parameter(),
            request_body: json!(null),
            answers: json!({
                "200": {
                    "description": "The request.",
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/RequestView" },
                        "example": {
                            "request_id": ID,
                            "status": "partly_answered",
                            "requester": "northshire-police",
                            "holder": "northshire-cc",
                            "purpose": "child-protection-s47",
                            "lawful_basis": "public_task",
                            "requested": "Any social care involvement with the family since 2024.",
                            "grounds": "A strategy discussion is planned after a disclosure at school.",
                            "urgency": "routine",
                            "practitioner": {
                                "name": "DC Lee",
                                "role": "Detective constable",
                                "contact": "lee@police.example"
                            },
                            "subject_refs": ["nhs:9434765919"],
                            "agreement": "northshire-safeguarding-isp",
                            "received_at": "2026-12-03T10:20:05.412233Z",
                            "due_at": "2026-12-24T23:59:59Z",
                            "due_date": "2026-12-24",
                            "first_answer_at": "2026-12-08T14:02:11.004512Z",
                            "answers": [{
                                "id": "0193a7d0-1c2d-7e3f-8a4b-5c6d7e8f9a0b",
                                "kind": "answer",
                                "answer": "in_part",
                                "at": "2026-12-08T14:02:11.004512Z"
                            }]
                        }
                    } }
                }
            }),
            problems: &[NOT_FOUND, INTERNAL, UNAVAILABLE],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::HeadersTooLarge,
            ],
        },
        Operation {
            method: "post",
            path: "/v1/requests/{id}/withdraw",
            caller: CallerKind::Organisation,
            id: "withdrawRequest",
            tag: "requests",
            summary: "Withdraw a request",
            description: "The requester withdraws a request it made that is still open (or \
                partly answered), with an optional reason (`{\"reason\": \"...\"}`, or no \
                body). Recorded (`request_withdrawn`); the holder sees it withdrawn and its \
                clock stops.\n\n**Caller:** an organisation, the requester. A peer gateway's \
                certificate is answered 403 `not_an_organisation`.",
            parameters: id_parameter(),
            request_body: json!({
                "required": false,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/RawWithdrawal" } } }
            }),
            answers: json!({
                "200": {
                    "description": "Withdrawn, recorded and durable.",
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/RequestWithdrawn" },
                        "example": {
                            "request_id": ID,
                            "status": "withdrawn",
                            "withdrawn_at": "2026-12-04T09:00:00.000000Z"
                        }
                    } }
                }
            }),
            problems: &[
                MALFORMED,
                Problems {
                    intro: "Only the requester, an organisation, may withdraw a request. \
                        Nothing was recorded.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::NotTheRequester),
                            "the caller is the holder; it declines a request by recording a \
                            decision not to share that names it. `field` is `id`",
                        ),
                        (
                            Code::Api(ProblemCode::NotAnOrganisation),
                            "the client certificate is a peer gateway's",
                        ),
                    ],
                },
                NOT_FOUND,
                Problems {
                    intro: "The request is closed.",
                    codes: &[(
                        Code::Api(ProblemCode::RequestClosed),
                        "it was answered in full, declined or withdrawn already; `field` is `id`",
                    )],
                },
                STALLED,
                TOO_LARGE,
                NOT_JSON,
                Problems {
                    intro: "The body is JSON but not a withdrawal. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::InvalidInfoRequest),
                        "the body has a member other than `reason`, or the reason is too long; \
                        `errors` says which",
                    )],
                },
                INTERNAL,
                UNAVAILABLE,
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::HeadersTooLarge,
                Shared::InsufficientStorage,
            ],
        },
        Operation {
            method: "post",
            path: "/v1/requests/{id}/clarification",
            caller: CallerKind::Organisation,
            id: "clarifyRequest",
            tag: "requests",
            summary: "Ask for, or give, a clarification of a request",
            description: "From the holder: what it needs clarified before it can answer. From \
                the requester: the clarification. In turn: one question awaits one answer. \
                While a clarification is awaited the request's status is \
                `awaiting_clarification` and its clock stops, and the clarification restarts \
                it in full from the day it is received (`[requests] clarification = \
                \"restarts\"`, the default, as for Freedom of Information requests); with \
                `\"continues\"` the clock runs on regardless. Each is recorded \
                (`request_clarification_asked`, `request_clarified`) and listed in the \
                request's `clarifications`.\n\n**Caller:** an organisation, the holder or the \
                requester. A peer gateway's certificate is answered 403 `not_an_organisation`.",
            parameters: id_parameter(),
            request_body: json!({
                "required": true,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ClarificationBody" } } }
            }),
            answers: json!({
                "200": {
                    "description": "Recorded and durable.",
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/ClarificationRecorded" },
                        "example": {
                            "request_id": ID,
                            "kind": "asked",
                            "status": "awaiting_clarification",
                            "due_at": "2026-12-24T23:59:59Z",
                            "due_date": "2026-12-24"
                        }
                    } }
                }
            }),
            problems: &[
                Problems {
                    intro: "The request is malformed. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::MalformedRequest),
                        "the body is not JSON of the form `{\"text\": \"...\"}`",
                    )],
                },
                NOT_FOUND,
                Problems {
                    intro: "Not now. Nothing was recorded.",
                    codes: &[
                        (
                            Code::Api(ProblemCode::RequestClosed),
                            "the request was answered in full, declined or withdrawn; `field` is \
                            `id`",
                        ),
                        (
                            Code::Api(ProblemCode::ClarificationOutOfTurn),
                            "the holder asked while a clarification is awaited, or the requester \
                            answered when none was asked; `field` is `id`",
                        ),
                    ],
                },
                STALLED,
                TOO_LARGE,
                NOT_JSON,
                Problems {
                    intro: "The text is missing or too long. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::InvalidInfoRequest),
                        "`text` is blank or longer than 4000 characters; `field` is `text`",
                    )],
                },
                INTERNAL,
                UNAVAILABLE,
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
            path: "/v1/transfers/{id}/feedback",
            caller: CallerKind::Organisation,
            id: "giveFeedback",
            tag: "transfers",
            summary: "Tell the sender what became of a transfer",
            description: "A recipient of a transfer tells its sender what became of it: \
                `received_and_read`, or acted on: `referral_accepted`, `assessment_started`, \
                `no_further_action`, with an optional short comment. Recorded in the transfer \
                log (`feedback_given`, under the transfer); the sender sees it in the transfer's \
                status (`feedback`) and on its page, and the report counts the share of \
                transfers with feedback by recipient. A recipient may give feedback more than \
                once (read first, acted on later).\n\n**Caller:** an organisation the transfer \
                was delivered to. A peer gateway's certificate is answered 403 \
                `not_an_organisation`.",
            parameters: json!([{
                "name": "id",
                "in": "path",
                "required": true,
                "description": "The transfer id (in the envelope the recipient received). An id \
                    that is not a UUID is answered 404 `transfer_not_found`.",
                "schema": { "type": "string", "format": "uuid" }
            }]),
            request_body: json!({
                "required": true,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Feedback" } } }
            }),
            answers: json!({
                "201": {
                    "description": "Recorded and durable.",
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/FeedbackRecorded" },
                        "example": {
                            "transfer_id": ID,
                            "status": "assessment_started",
                            "recorded_at": "2026-12-04T11:30:00.000000Z"
                        }
                    } }
                }
            }),
            problems: &[
                MALFORMED,
                Problems {
                    intro: "Not a transfer delivered to the caller.",
                    codes: &[(
                        Code::Api(ProblemCode::TransferNotFound),
                        "the id is unknown, not a UUID, or names a transfer not (yet) \
                        delivered to the caller's organisation; `field` is `id`",
                    )],
                },
                STALLED,
                TOO_LARGE,
                NOT_JSON,
                Problems {
                    intro: "The body is JSON but not valid feedback. Nothing was recorded.",
                    codes: &[(
                        Code::Api(ProblemCode::InvalidFeedback),
                        "`status` is missing or not one of the four, or `comment` is longer \
                        than 500 characters; `errors` lists every problem",
                    )],
                },
                INTERNAL,
                UNAVAILABLE,
            ],
            problem_extras: Value::Null,
            shared: &[
                Shared::CertificateNoLongerAccepted,
                Shared::NotAnOrganisation,
                Shared::HeadersTooLarge,
                Shared::InsufficientStorage,
            ],
        },
    ]
}

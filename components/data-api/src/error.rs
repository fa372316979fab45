//! API errors and how they become JSON responses: `{"error": "<message>", "code": "<code>"}`.
//!
//! Every error carries a [`RefusalCode`] (`wattlet_survey`), the one list of machine-readable
//! codes that clients branch on; the code also sets the HTTP status, so a code always arrives
//! with the same status.

use serde_json::json;
use wattlet_survey::RefusalCode;

use crate::http::{Response, json_response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A refusal: the code says why (and sets the status), the message says it to people.
    #[error("{message}")]
    Refused { code: RefusalCode, message: String },
    /// A batch refused for some of its items, each with its own refusal (`refused`: JSON
    /// objects naming the item); nothing of the batch was stored. The answer carries the first
    /// item's code and message, and the list.
    #[error("{message}")]
    RefusedItems {
        code: RefusalCode,
        message: String,
        refused: Vec<serde_json::Value>,
    },
    /// 405: the path exists, the method does not (answered with `allow`).
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// 500 `internal`: the database failed (details are logged, not returned).
    #[error("database error: {0}")]
    Database(String),
    /// 500 `internal`: something the component itself needs is missing (e.g. the admin token
    /// variable).
    #[error("{0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn refused(code: RefusalCode, message: impl Into<String>) -> Self {
        ApiError::Refused {
            code,
            message: message.into(),
        }
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::refused(RefusalCode::NotFound, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::refused(RefusalCode::Conflict, message)
    }

    pub fn code(&self) -> RefusalCode {
        match self {
            ApiError::Refused { code, .. } | ApiError::RefusedItems { code, .. } => *code,
            ApiError::MethodNotAllowed { .. } => RefusalCode::MethodNotAllowed,
            ApiError::Database(_) | ApiError::Internal(_) => RefusalCode::Internal,
        }
    }

    pub fn into_response(self) -> Response {
        let code = self.code();
        let message = match &self {
            ApiError::Database(detail) => {
                eprintln!("wattlet-data-api: database error: {detail}");
                "internal database error".to_owned()
            }
            ApiError::Internal(detail) => {
                eprintln!("wattlet-data-api: {detail}");
                detail.clone()
            }
            other => other.to_string(),
        };
        let mut body = json!({ "error": message, "code": code.as_str() });
        if let ApiError::RefusedItems { refused, .. } = &self {
            body["refused"] = json!(refused);
        }
        let mut response = json_response(code.status(), &body);
        match &self {
            ApiError::MethodNotAllowed { allow } => response.set_header("allow", allow),
            _ if matches!(code, RefusalCode::InvalidToken | RefusalCode::TokenRevoked) => {
                response.set_header("www-authenticate", "Bearer realm=\"wattlet\"")
            }
            _ => {}
        }
        response
    }
}

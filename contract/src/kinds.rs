//! The closed sets of names that travel between crates: what a model does, where a training
//! run is, what a reviewer decided about an image, and where a model version stands in the
//! registry. Each is a Rust enum serialised as its lower-case name (the same text the
//! database stores and the JSON carries), so a typo is a compile error rather than a row no
//! query finds.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Declares a unit enum named by lower-case strings, with `as_str`, `ALL`, `Display`,
/// `FromStr`, and (features) `sqlx` TEXT encoding and `utoipa::ToSchema`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($kind:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in SQL and sent in JSON and URLs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(Error::UnknownName {
                        kind: $kind,
                        value: s.to_string(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        #[cfg(feature = "sql")]
        crate::kinds::sql_text!($name);
    };
}

/// `sqlx` support through the `Any` driver (the api's pools): the value is stored as TEXT.
/// (`#[derive(sqlx::Type)]` implements only the concrete drivers, not `Any`.)
#[cfg(feature = "sql")]
macro_rules! sql_text {
    ($name:ident) => {
        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <str as sqlx::Type<sqlx::Any>>::type_info()
            }

            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <str as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer,
            ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}
#[cfg(feature = "sql")]
pub(crate) use sql_text;

named_enum! {
    /// What a model does.
    Task("task") {
        /// Image → probabilities over the manifest's `labels`.
        Classify = "classify",
        /// Image or text → L2-normalised embedding in a shared space.
        Rank = "rank",
        /// A title, an image, or both → probabilities over the manifest's `labels`.
        Product = "product",
        /// Image → boxes, each with one of the manifest's `labels` and a score.
        Detect = "detect",
    }
}

named_enum! {
    /// Where a training run is. `Queued` and `Running` move on; the other three are final.
    RunStatus("run status") {
        /// Waiting for a worker.
        Queued = "queued",
        /// Claimed by a worker, which renews its lease while it trains.
        Running = "running",
        /// Finished; a candidate model was registered.
        Succeeded = "succeeded",
        /// Finished with an error; the champion is untouched.
        Failed = "failed",
        /// Stopped by an admin.
        Cancelled = "cancelled",
    }
}

impl RunStatus {
    /// Finished one way or another: no worker will touch the run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

named_enum! {
    /// A reviewer's decision about an image (uploads by admins are approved at once).
    ImageStatus("image status") {
        /// Uploaded by a non-admin, waiting for review; never trained on.
        Pending = "pending",
        /// Part of the training data from the next snapshot on.
        Approved = "approved",
        /// Kept for the record, never trained on.
        Rejected = "rejected",
    }
}

named_enum! {
    /// Where a model version stands in the registry.
    Stage("stage") {
        /// Registered, not served (the gate said no, or it waits for a manual promotion).
        Candidate = "candidate",
        /// The version clients download; at most one per task.
        Champion = "champion",
        /// A former champion, kept for rollback.
        Archived = "archived",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for t in Task::ALL {
            assert_eq!(t.as_str().parse::<Task>().ok(), Some(*t));
            assert_eq!(
                serde_json::to_string(t).ok(),
                Some(format!("\"{}\"", t.as_str()))
            );
        }
        for s in RunStatus::ALL {
            assert_eq!(s.to_string().parse::<RunStatus>().ok(), Some(*s));
        }
        for s in ImageStatus::ALL {
            assert_eq!(s.to_string().parse::<ImageStatus>().ok(), Some(*s));
        }
        for s in Stage::ALL {
            assert_eq!(s.to_string().parse::<Stage>().ok(), Some(*s));
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_expected_list() {
        let err = "Classify".parse::<Task>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown task \"Classify\" (expected one of: classify, rank, product, detect)")
        );
        assert!(serde_json::from_str::<Stage>("\"retired\"").is_err());
    }

    #[test]
    fn terminal_statuses() {
        let done: Vec<_> = RunStatus::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(done, ["succeeded", "failed", "cancelled"]);
    }
}

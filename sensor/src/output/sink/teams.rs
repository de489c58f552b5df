//! `teams` output: a Microsoft Teams Workflows webhook on the HTTP sink ([`super::api`]), with
//! the same settings as Slack ([`ChatConfig`]); the message is an Adaptive Card
//! ([`crate::format::chat::teams`]).

pub use super::slack::ChatConfig;

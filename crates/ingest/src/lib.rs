//! Webhook ingest: receive GitLab's deliveries on one endpoint per installed hook, prove each
//! came from that hook, commit it to a durable inbox before answering, then apply it to the
//! tenant's data in the background.

pub mod apply;
mod processor;
mod receive;
pub mod verify;

pub use processor::{ProcessorConfig, run_processor};
pub use receive::{
    BODY_READ_TIMEOUT, IngestState, MAX_BODY_BYTES, MAX_BODY_BYTES_IN_FLIGHT, MAX_DEDUP_KEY_LEN, ParsedDelivery, parse_delivery, presented,
    router,
};

//! A plugin whose connector panics in `read`: the host must get an error value, keep
//! running, and report it. Everything else about it works.

use acdlink_connector_api::{
    sdk::{Connector, OpenContext},
    CheckReport, ConnectorError, Discovery, Manifest, ReadBatch, ReadMode, ReadRequest, StreamKind,
};

pub struct Panicky;

impl Connector for Panicky {
    type Settings = serde::de::IgnoredAny;

    fn manifest() -> Manifest {
        Manifest::new("panicky", "Panics in read", "acdlink tests", "1.0.0")
            .stream(StreamKind::PHONELINK_INTERVALS, ReadMode::WINDOWED)
    }

    fn open(
        _settings: serde::de::IgnoredAny,
        _context: &OpenContext,
    ) -> Result<Self, ConnectorError> {
        Ok(Panicky)
    }

    fn check(&mut self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport {
            message: "fine until you read".into(),
        })
    }

    fn discover(&mut self) -> Result<Discovery, ConnectorError> {
        Ok(Discovery::default())
    }

    fn read(&mut self, _request: &ReadRequest) -> Result<ReadBatch, ConnectorError> {
        panic!("deliberate panic in read")
    }
}

acdlink_connector_api::export_connector!(Panicky);

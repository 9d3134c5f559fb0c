//! The demo connector as a plugin library: the whole of what a vendor's cdylib crate needs.

acdlink_connector_api::export_connector!(acdlink_connector_demo::DemoConnector);

//! A plugin whose module initialisation panics: the host must report it and go on.

use acdlink_connector_api::ConnectorModuleRef;

/// Panics instead of returning the root module.
#[abi_stable::export_root_module]
pub fn root_module() -> ConnectorModuleRef {
    panic!("deliberate panic in module initialisation")
}
